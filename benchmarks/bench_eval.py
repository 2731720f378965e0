"""Evaluation speed and memory against lvis-api on a synthetic LVIS-v1-scale set.

Workload: the 1,203 LVIS v1 categories drawn with their training frequencies (mec_cli's lvis_v1 profile),
N images (default 5,000) with about 12 annotations each, LVIS federated fields, and 300 detections per
image (jittered ground truth plus clutter, two-decimal scores so ties occur). Each measurement runs in
a fresh subprocess so its peak RSS is its own.

    .venv/bin/python benchmarks/bench_eval.py --images 5000 --out benchmarks/results/eval.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_workload(root: Path, num_images: int, dets_per_image: int, seed: int = 0) -> None:
    from mec_cli.data.profiles import load_profile

    rng = np.random.default_rng(seed)
    cats = load_profile("lvis_v1")["categories"]
    ids = np.array([c["id"] for c in cats])
    weight = np.array([c["instance_count"] for c in cats], dtype=float)
    weight /= weight.sum()
    images, anns, dets = [], [], []
    aid = 1
    for i in range(1, num_images + 1):
        n = int(rng.integers(3, 22))
        present = rng.choice(ids, size=n, p=weight)
        absent = np.setdiff1d(rng.choice(ids, size=12), present)
        images.append({"id": i, "width": 640, "height": 480, "neg_category_ids": absent[:8].tolist(),
                       "not_exhaustive_category_ids": sorted(set(present[rng.random(n) < 0.1].tolist()))})
        for c in present:
            w, h = rng.uniform(8, 250, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            anns.append({"id": aid, "image_id": i, "category_id": int(c), "bbox": [x, y, w, h], "area": float(w * h),
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            aid += 1
            for _ in range(3):  # a few near-duplicates per object
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                dets.append({"image_id": i, "category_id": int(c), "bbox": [x + j[0], y + j[1], abs(w + j[2]) + 1, abs(h + j[3]) + 1],
                             "score": round(float(rng.random()), 2)})
        pool = np.concatenate([present, absent[:8], rng.choice(ids, 5)])
        for _ in range(dets_per_image - 3 * n):
            w, h = rng.uniform(4, 200, 2)
            dets.append({"image_id": i, "category_id": int(rng.choice(pool)), "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 440)),
                                                                                      float(w), float(h)],
                         "score": round(float(rng.random()), 2)})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c["id"], "name": c["name"], "frequency": c["frequency"]} for c in cats]}
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "dets.json").write_text(json.dumps(dets))


def _measure(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints a JSON dict. Add its peak RSS (MiB)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


LVIS_API = """
import json, time, resource
from mec_cli.compat import patch_lvis_numpy
patch_lvis_numpy()
from lvis import LVIS, LVISEval, LVISResults
t0 = time.time()
gt = LVIS('{root}/gt.json')
dt = LVISResults(gt, '{root}/dets.json')
t1 = time.time()
ev = LVISEval(gt, dt, 'bbox'); ev.run()
t2 = time.time()
print(json.dumps({{'load_s': t1 - t0, 'eval_s': t2 - t1, 'total_s': t2 - t0, 'metrics': dict(ev.results),
                  'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

OURS = """
import json, time, resource
import numpy as np
t0 = time.time()
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.summary import summarize
from mec_cli.io import read_json
evaluate(GroundTruth({{'images': [{{'id': 1, 'neg_category_ids': [], 'not_exhaustive_category_ids': []}}], 'annotations': [],
                      'categories': [{{'id': 1, 'name': 'a'}}]}}), Detections(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 4))))
t_jit = time.time()
data = read_json('{root}/gt.json')
gt = GroundTruth(data, 'lvis')
dets = Detections.from_records(read_json('{root}/dets.json'))
t1 = time.time()
metrics = summarize(evaluate(gt, dets, 'bbox'), gt.frequency, per_category=False)
t2 = time.time()
# eleven modes of a 3-stage model: the same detections with different scores, one ground-truth index
rng = np.random.default_rng(0)
t3 = time.time()
for k in range(11):
    d = Detections(dets.image_id, dets.category_id, np.round(np.clip(dets.score + rng.normal(0, 0.05, len(dets)), 0, 1), 2), dets.bbox)
    summarize(evaluate(gt, d, 'bbox'), gt.frequency, per_category=False)
t4 = time.time()
print(json.dumps({{'import_and_jit_s': t_jit - t0, 'load_s': t1 - t_jit, 'eval_s': t2 - t1, 'total_s': t2 - t_jit,
                  'eleven_modes_s': t4 - t3, 'metrics': metrics,
                  'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=300)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--skip-lvis-api", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.time()
        make_workload(root, args.images, args.dets)
        print(f"workload: {args.images} images x {args.dets} detections ({time.time() - t:.0f} s to make)", flush=True)
        ours = _measure(OURS.format(root=root))
        print(f"mec: load {ours['load_s']:.1f} s, evaluate {ours['eval_s']:.1f} s, 11 modes {ours['eleven_modes_s']:.1f} s, "
              f"peak {ours['peak_rss_mib']:.0f} MiB", flush=True)
        ref = None if args.skip_lvis_api else _measure(LVIS_API.format(root=root))
        if ref:
            print(f"lvis-api: load {ref['load_s']:.1f} s, evaluate {ref['eval_s']:.1f} s, peak {ref['peak_rss_mib']:.0f} MiB")
            diffs = {k: abs(ref["metrics"][k] - ours["metrics"][k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")}
            print("max |AP difference|:", max(diffs.values()))
            print(f"speed-up, one mode (load + evaluate): {ref['total_s'] / ours['total_s']:.1f}x; "
                  f"evaluation only: {ref['eval_s'] / ours['eval_s']:.1f}x; 11 modes vs one lvis-api run: "
                  f"{ours['eleven_modes_s']:.1f} s vs {ref['total_s']:.1f} s")
    result = {"images": args.images, "dets_per_image": args.dets, "mec": ours, "lvis_api": ref}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
