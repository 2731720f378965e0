"""What the analyses cost beside `mec eval --results`, and that parts merge into the same metrics.

Workload: bench_eval.py's LVIS-style ground truth and results file (``--images`` x ``--dets``), and a second
results file of the same detections rescored (a "second run"). Each command runs in its own process (wall time
and peak RSS of that child), after one untimed run that fills numba's cache:

* ``mec eval --results`` plain, with ``--per-image`` (and the metrics file's size), with ``--analysis``;
* the results split by image into ``--shards`` files: ``mec eval --results`` of all of them at once, and
  ``--partial`` of each then ``--merge`` (the merged metrics must equal the whole file's, every number);
* ``mec report compare A B --ci`` with 1,000 resamples on the two runs' per-image records.

    .venv/bin/python benchmarks/bench_analyses.py --images 1500 --dets 300 --out benchmarks/results/analyses.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_eval import _peak, make_workload  # noqa: E402  (the benchmark beside this one)


def _mec(*args) -> dict:
    res = _peak([sys.executable, "-m", "mec_cli.cli", *map(str, args)])
    res.pop("stdout")
    return res


def _split(root: Path, shards: int) -> list:
    """The results split by image into ``shards`` files (each image's detections in one, the file's order kept)."""
    records = json.loads((root / "dets.json").read_text())
    paths = []
    for s in range(shards):
        p = root / f"part{s}.json"
        p.write_text(json.dumps([r for r in records if r["image_id"] % shards == s]))
        paths.append(p)
    rng = np.random.default_rng(1)
    for r in records:  # the second run: the same detections, rescored
        r["score"] = round(float(np.clip(r["score"] + rng.normal(0, 0.05), 0, 1)), 2)
    (root / "dets_b.json").write_text(json.dumps(records))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--dets", type=int, default=300, help="detections per image")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = make_workload(root, args.images, args.dets)
        parts = _split(root, args.shards)
        gt, dets = root / "gt.json", root / "dets.json"
        common = ["--ann", gt, "--iou-type", "bbox"]
        _mec("eval", "--results", dets, *common, "--analysis", "--per-image", "--out", root / "warm.json")  # cache
        out = {"images": args.images, "detections": n, "shards": args.shards, "cpus": __import__("os").cpu_count()}
        out["plain"] = _mec("eval", "--results", dets, *common, "--out", root / "plain.json")
        out["per_image"] = _mec("eval", "--results", dets, *common, "--per-image", "--out", root / "a.json")
        out["per_image"]["metrics_json_mib"] = round((root / "a.json").stat().st_size / 2**20, 2)
        out["plain"]["metrics_json_mib"] = round((root / "plain.json").stat().st_size / 2**20, 2)
        out["analysis"] = _mec("eval", "--results", dets, *common, "--analysis", "--out", root / "an.json")
        out["shards_at_once"] = _mec("eval", *[x for p in parts for x in ("--results", p)], *common, "--out",
                                     root / "shards.json")
        out["partial_each"] = [_mec("eval", "--results", p, *common, "--partial", root / f"p{i}.npz")
                               for i, p in enumerate(parts)]
        out["partial_mib"] = [round((root / f"p{i}.npz").stat().st_size / 2**20, 2) for i in range(len(parts))]
        out["merge"] = _mec("eval", *[x for i in range(len(parts)) for x in ("--merge", root / f"p{i}.npz")],
                            "--out", root / "merged.json")
        whole = json.loads((root / "plain.json").read_text())["modes"]
        out["shards_equal_whole"] = json.loads((root / "shards.json").read_text())["modes"] == whole
        out["merge_equals_whole"] = json.loads((root / "merged.json").read_text())["modes"] == whole
        _mec("eval", "--results", root / "dets_b.json", *common, "--per-image", "--out", root / "b.json")
        out["compare_ci_1000"] = _mec("report", "compare", root / "a.json", root / "b.json", "--ci", "--csv",
                                      root / "ci.csv")
        out["compare_ci_1000"]["AP"] = (root / "ci.csv").read_text().splitlines()[1]
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
