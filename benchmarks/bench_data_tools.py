"""Speed and memory of `mec build-coco-lt` (COCO scale) and `mec groups` (LVIS v1 scale), as a user runs them.

Inputs are written to disk first; each command then runs in its own process (`mec ...`), and its wall
time and peak RSS (ru_maxrss of the child) are recorded.

    .venv/bin/python benchmarks/bench_data_tools.py --out benchmarks/results/data_tools.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, proc.stdout


def main() -> None:
    from mec_cli.data.profiles import load_profile
    from mec_cli.data.synth import synthetic_coco_annotations

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    mec = [str(Path(sys.executable).with_name("mec"))]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        coco = synthetic_coco_annotations(118287, load_profile("coco2017")["categories"], seed=0)
        (root / "coco.json").write_text(json.dumps(coco))
        n_ann = len(coco["annotations"])
        del coco
        wall, peak, _ = run(mec + ["build-coco-lt", "--coco-ann", str(root / "coco.json"),
                                   "--out", str(root / "lt.json")])
        manifest = json.loads((root / "lt.manifest.json").read_text())
        top = [{"name": c["name"], "achieved": c["achieved"], "target": c["target"]} for c in manifest["categories"]
               if not c["constrained"]]
        res["build_coco_lt"] = {"images": 118287, "annotations": n_ann,
                                "input_mib": os.path.getsize(root / "coco.json") / 2**20, "wall_s": wall,
                                "peak_rss_mib": peak, "top_mode": manifest["top_mode"],
                                "totals": manifest["totals"], "top_categories": top,
                                "paper": {"images": 16966, "instances": 128615}}
        tot = manifest["totals"]
        print(f"build-coco-lt: {wall:.1f} s, peak {peak:.0f} MiB; {tot['images']:,} images, "
              f"{tot['instances']:,} instances (paper: 16,966 and 128,615); constrained exact "
              f"{tot['constrained_hit_exactly']}/{tot['constrained_categories']}, over target "
              f"{tot['constrained_over_target']}; top-{len(top)} "
              f"{tot['top_achieved_sum']:,}/{tot['top_target_sum']:,}, lowest fill {100 * tot['top_min_fill']:.0f}%")
        for c in top:
            print(f"  {c['name']:>14s} {c['achieved']:>7,} / {c['target']:>7,}")
        lvis = synthetic_coco_annotations(100170, load_profile("lvis_v1")["categories"], seed=0)
        (root / "lvis.json").write_text(json.dumps(lvis))
        n_ann = len(lvis["annotations"])
        del lvis
        wall, peak, _ = run(mec + ["groups", str(root / "lvis.json"), "--out", str(root / "groups.json")])
        res["groups"] = {"images": 100170, "annotations": n_ann, "categories": 1203, "wall_s": wall,
                         "peak_rss_mib": peak}
        print(f"groups: {wall:.1f} s on {n_ann:,} annotations, peak {peak:.0f} MiB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
