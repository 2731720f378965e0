"""Boundary AP speed and memory on the 5,000-image benchmark set with masks, and agreement with faster-coco-eval.

Workload: bench_eval.py's set (5,000 images of 640 x 480, the 1,203 LVIS v1 categories drawn with their
training frequencies, about 12 objects per image, LVIS federated fields, 300 detections per image), with
masks: every ground truth and every detection is the ellipse inscribed in its box (a 24-gon), ground truths as
polygons, detections as compressed RLE strings, as a model's results file holds them.

Measured in fresh processes (each its own peak RSS): `mec eval --iou-type boundary` end to end, as a user runs
it; then, in one process, loading once and evaluating mask AP, Boundary AP, and Boundary AP again (a second mode:
ground-truth boundaries cached). ``--reference-images N`` also evaluates an N-image slice with faster-coco-eval's
``iouType='boundary'`` (lvis_style) and compares every metric.

    .venv/bin/python benchmarks/bench_boundary.py --images 5000 --reference-images 300 \
        --out benchmarks/results/boundary.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_eval import make_workload  # noqa: E402


def _ellipse(box, n: int = 24) -> list:
    x, y, w, h = box
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[x + w / 2 + w / 2 * np.cos(t), y + h / 2 + h / 2 * np.sin(t)].ravel().round(2).tolist()


def add_masks(root: Path) -> None:
    """gt_masks.json (ellipse polygons) and dets_masks.json (ellipse RLEs, with the boxes) from bench_eval's files."""
    import pycocotools.mask as mask_utils

    gt = json.loads((root / "gt.json").read_text())
    size = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    for a in gt["annotations"]:
        a["segmentation"] = [_ellipse(a["bbox"])]
    (root / "gt_masks.json").write_text(json.dumps(gt))
    dets = json.loads((root / "dets.json").read_text())
    by_img: dict = {}
    for d in dets:
        by_img.setdefault(d["image_id"], []).append(d)
    with open(root / "dets_masks.json", "w") as f:
        f.write("[")
        first = True
        for img, rows in by_img.items():
            h, w = size[img]
            rles = mask_utils.frPyObjects([_ellipse(d["bbox"]) for d in rows], h, w)
            out = []
            for d, r in zip(rows, rles):
                d["segmentation"] = {"size": [h, w], "counts": r["counts"].decode()}
                out.append(json.dumps(d))
            f.write(("" if first else ", ") + ", ".join(out))
            first = False
        f.write("]")


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


CLI = """
import json, resource, subprocess, sys, time
t = time.time()
p = subprocess.run([sys.executable, '-m', 'mec_cli.cli', 'eval', '--results', '{root}/dets_masks.json', '--ann',
                    '{root}/gt_masks.json', '--iou-type', 'boundary', '--out', '{root}/m.json'],
                   capture_output=True, text=True)
assert p.returncode == 0, p.stderr[-2000:]
print(json.dumps({{'wall_s': time.time() - t,
                   'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""

STEPS = """
import json, resource, time
t0 = time.time()
from mec_cli.evaluation.api import evaluate_results_file
evaluate_results_file('{root}/tiny_d.json', '{root}/tiny_g.json', ['boundary'])  # compile the kernels (cached on disk)
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
from mec_cli.evaluation.jsonscan import read_results_file
from mec_cli.evaluation.summary import summarize
t1 = time.time()
gt = GroundTruth.from_file('{root}/gt_masks.json', 'lvis')
arrays, buf = read_results_file('{root}/dets_masks.json')
dets = Detections.from_scan(arrays, buf, 'dets', gt.image_size)
t2 = time.time()
segm = summarize(evaluate(gt, dets, 'segm'), gt.frequency, per_category=False, iou_profile=False)
t3 = time.time()
res = evaluate(gt, dets, 'boundary')
boundary = summarize(res, gt.frequency, per_category=False, iou_profile=False)
t4 = time.time()
evaluate(gt, dets, 'boundary')
t5 = time.time()
print(json.dumps({{'import_and_jit_s': t1 - t0, 'load_s': t2 - t1, 'segm_s': t3 - t2, 'boundary_s': t4 - t3,
                   'boundary_again_s': t5 - t4, 'detections': len(dets), 'counted': int(res.num_detections),
                   'segm': segm, 'boundary': boundary,
                   'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

REFERENCE = """
import json, time
t0 = time.time()
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO('{root}/ref_g.json')
ev = COCOeval_faster(gt, gt.loadRes('{root}/ref_d_kept.json'), 'boundary', lvis_style=True,
                     print_function=lambda *a: None)
ev.params.maxDets = [300]; ev.evaluate(); ev.accumulate(); ev.summarize()
t1 = time.time()
names = dict(AP='AP_all', AP50='AP_50', AP75='AP_75', APs='AP_small', APm='AP_medium', APl='AP_large', APr='APr',
             APc='APc', APf='APf')
ref = {{k: float(ev.stats_as_dict[v]) for k, v in names.items()}}
t2 = time.time()
from mec_cli.evaluation.api import evaluate_results_file
ours = evaluate_results_file('{root}/ref_d.json', '{root}/ref_g.json', ['boundary'])['modes']['results']['boundary']
t3 = time.time()
print(json.dumps({{'faster_coco_eval_s': t1 - t0, 'mec_s': t3 - t2, 'faster_coco_eval': ref,
                   'mec': {{k: ours[k] for k in names}}}}))
"""


def _slice(root: Path, src_gt: str, src_dets: str, n: int, prefix: str) -> None:
    """The first ``n`` images of a workload; the detections also without those the federated rule drops
    (faster-coco-eval 1.8.0's lvis_style fails on an image whose detections it drops all of; it would drop them
    anyway)."""
    gt = json.loads((root / src_gt).read_text())
    gt["images"] = [im for im in gt["images"] if im["id"] <= n]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] <= n]
    dets = [d for d in json.loads((root / src_dets).read_text()) if d["image_id"] <= n]
    allowed = {(im["id"], c) for im in gt["images"] for c in im["neg_category_ids"]}
    allowed |= {(a["image_id"], a["category_id"]) for a in gt["annotations"]}
    (root / f"{prefix}_g.json").write_text(json.dumps(gt))
    (root / f"{prefix}_d.json").write_text(json.dumps(dets))
    kept = [d for d in dets if (d["image_id"], d["category_id"]) in allowed]
    (root / f"{prefix}_d_kept.json").write_text(json.dumps(kept))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=300, help="detections per image")
    ap.add_argument("--reference-images", type=int, default=0, help="also compare with faster-coco-eval on this many")
    ap.add_argument("--root", type=Path, help="keep the workload here (default: a temporary folder)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t = time.time()
        if not (root / "dets_masks.json").is_file():
            make_workload(root, args.images, args.dets)
            add_masks(root)
        print(f"workload: {args.images} images x {args.dets} detections with masks ({time.time() - t:.0f} s; "
              f"{(root / 'dets_masks.json').stat().st_size / 2**20:.0f} MiB of results)", flush=True)
        _slice(root, "gt_masks.json", "dets_masks.json", 2, "tiny")
        steps = _run(STEPS.format(root=root))
        print(f"in one process: load {steps['load_s']:.1f} s, mask AP {steps['segm_s']:.1f} s, Boundary AP "
              f"{steps['boundary_s']:.1f} s, again (ground truth cached) {steps['boundary_again_s']:.1f} s; "
              f"peak {steps['peak_rss_mib']:.0f} MiB; Boundary AP {steps['boundary']['AP']:.4f}, mask AP "
              f"{steps['segm']['AP']:.4f}", flush=True)
        cli = _run(CLI.format(root=root))
        print(f"`mec eval --iou-type boundary`: {cli['wall_s']:.1f} s, peak {cli['peak_rss_mib']:.0f} MiB", flush=True)
        ref = None
        if args.reference_images:
            _slice(root, "gt_masks.json", "dets_masks.json", args.reference_images, "ref")
            ref = _run(REFERENCE.format(root=root))
            diff = max(abs(ref["faster_coco_eval"][k] - ref["mec"][k]) for k in ref["mec"])
            print(f"{args.reference_images} images: faster-coco-eval {ref['faster_coco_eval_s']:.1f} s, mec "
                  f"{ref['mec_s']:.1f} s (both end to end); largest metric difference {diff:.2e}")
    result = {"images": args.images, "dets_per_image": args.dets, "steps": steps, "cli": cli, "reference": ref}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
