"""`mec eval --results` against every evaluator installed, each in its own process, from JSON files to metrics.

Workload: an LVIS-v1-style ground truth (the 1,203 LVIS v1 categories drawn with their training frequencies,
about 12 objects per image, federated fields) and a results file with ``--dets`` detections per image (three
jittered copies of each object plus clutter of present, negative and a few other categories; two-decimal
scores, so ties occur), written as Python's json writes it. Every evaluator reads the same two files:

* ``mec eval --results ... --iou-type bbox --out m.json`` (the CLI a user runs);
* lvis-api 0.5.3 (``LVIS``, ``LVISResults``, ``LVISEval``), the reference;
* faster-coco-eval (``lvis_style=True``), hotcoco (``LVISEval``), ultrafast-pycocotools (``lvis_style=True``) and
  vernier (``CocoDataset.from_lvis_json``, ``evaluate_bbox_grid(parity_mode='strict', max_dets_per_image=300)``,
  ``accumulate([300]).summarize_lvis``, on every core), when installed
  (``pip install -c constraints.txt -e '.[bench]'``).

mec runs as a fresh install does (``bench_first_run.py``): a copy of this tree imported through PYTHONPATH, with its
own kernel cache, filled once by the set-up's warm-up (timed apart, it is set-up: numba's JIT cache and the
ahead-of-time build of the kernels). ``mec (first run)`` is the first ``mec eval`` of a new copy of the tree after
the set-up's step ran in it, as a user's first run after ``git clone`` and ``make setup`` (the kernels are compiled for
this machine already, so the step compiles only the package's bytecode, as pip does on an install); ``mec`` is the
runs after it (warm).
``--jit`` adds ``mec (numba JIT)``: warm runs with ``MEC_KERNELS=jit``, the kernels by numba's JIT from its cache
instead of the ahead-of-time build (mec before the build existed, and any install where it could not be made). Each
run is a fresh process; its wall time, CPU time (user + system) and peak RSS (``ru_maxrss`` of that child alone, from
``wait4``) are recorded.
Evaluators under 20 s run ``--repeat`` times in interleaved rounds: the median, the smallest and the largest of each
are reported. AP, AP50, AP75, APs, APm, APl, APr, APc, APf are compared with lvis-api's (or, where lvis-api is
skipped, with mec's).

``--modes`` also times the 11 scoring modes of a 3-stage model evaluated from one ground-truth index in one
process (the same detections with perturbed scores), against one hotcoco run of one mode.
``--fixed-ap`` adds mec's Fixed AP on the same file; ``--dets-per-image 600`` makes a Fixed-AP-sized file.

    .venv/bin/python benchmarks/bench_eval.py --images 5000 --dets 300 --modes --out benchmarks/results/eval.json
    .venv/bin/python benchmarks/bench_eval.py --images 19809 --dets 300 --skip lvis-api \
        --out benchmarks/results/eval_lvis.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def _ground_truth(num_images: int, rng: np.random.Generator):
    """Images, annotations (columns) and categories of an LVIS-v1-style ground truth."""
    from mec_cli.data.profiles import load_profile

    cats = load_profile("lvis_v1")["categories"]
    ids = np.array([c["id"] for c in cats])
    weight = np.array([c["instance_count"] for c in cats], dtype=float)
    weight /= weight.sum()
    per_image = rng.integers(3, 22, num_images)
    img_of = np.repeat(np.arange(1, num_images + 1), per_image)
    n = len(img_of)
    cat_of = rng.choice(ids, size=n, p=weight)
    wh = rng.uniform(8, 250, (n, 2))
    xy = rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh)
    images = []
    starts = np.r_[0, np.cumsum(per_image)]
    for i in range(num_images):
        present = np.unique(cat_of[starts[i]:starts[i + 1]])
        absent = np.setdiff1d(rng.choice(ids, size=12), present)
        nel = present[rng.random(len(present)) < 0.1]
        images.append({"id": i + 1, "width": 640, "height": 480, "neg_category_ids": absent[:8].tolist(),
                       "not_exhaustive_category_ids": nel.tolist()})
    return images, (img_of, cat_of, xy, wh), cats, ids


def make_workload(root: Path, num_images: int, dets_per_image: int, seed: int = 0) -> int:
    """Write ``root/gt.json`` and ``root/dets.json``; return the number of detections."""
    rng = np.random.default_rng(seed)
    images, (img_of, cat_of, xy, wh), cats, ids = _ground_truth(num_images, rng)
    anns = [{"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": [float(x), float(y), float(w), float(h)],
             "area": float(w * h),
             "segmentation": [[float(x), float(y), float(x + w), float(y), float(x + w), float(y + h), float(x),
                               float(y + h)]]}
            for k, (i, c, (x, y), (w, h)) in enumerate(zip(img_of.tolist(), cat_of.tolist(), xy.tolist(), wh.tolist()))]
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c["id"], "name": c["name"], "frequency": c["frequency"]} for c in cats]}
    (root / "gt.json").write_text(json.dumps(gt))
    # detections: three jittered copies of each object, then clutter up to dets_per_image per image
    starts = np.r_[0, np.cumsum(np.bincount(img_of, minlength=num_images + 1)[1:])]
    total = 0
    with open(root / "dets.json", "w") as f:
        f.write("[")
        first = True
        for lo in range(0, num_images, 500):
            rows = []
            for i in range(lo, min(num_images, lo + 500)):
                s, e = starts[i], starts[i + 1]
                obj = np.repeat(np.arange(s, e), 3)
                jitter = rng.normal(0, 0.1, (len(obj), 4)) * np.c_[wh[obj], wh[obj]]
                boxes = np.c_[xy[obj] + jitter[:, :2], np.abs(wh[obj] + jitter[:, 2:]) + 1]
                cats_i = cat_of[obj]
                clutter = max(0, dets_per_image - len(obj))
                pool = np.concatenate([cat_of[s:e], images[i]["neg_category_ids"], rng.choice(ids, 5)])
                cw = rng.uniform(4, 200, (clutter, 2))
                boxes = np.r_[boxes, np.c_[rng.uniform(0, 600, clutter), rng.uniform(0, 440, clutter), cw]]
                cats_i = np.r_[cats_i, rng.choice(pool, clutter)]
                scores = np.round(rng.random(len(cats_i)), 2)
                for c, b, sc in zip(cats_i.tolist(), boxes.tolist(), scores.tolist()):
                    rows.append(json.dumps({"image_id": i + 1, "category_id": c, "bbox": b, "score": sc}))
            total += len(rows)
            if rows:
                f.write(("" if first else ", ") + ", ".join(rows))
                first = False
        f.write("]")
    return total


SNIPPETS = {
    "lvis-api": """
from mec_cli.compat import patch_lvis_numpy
patch_lvis_numpy()
from lvis import LVIS, LVISEval, LVISResults
gt = LVIS('{gt}'); ev = LVISEval(gt, LVISResults(gt, '{dets}'), 'bbox'); ev.run()
metrics = {{k: float(ev.results[k]) for k in {keys}}}
""",
    "faster-coco-eval": """
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO('{gt}')
ev = COCOeval_faster(gt, gt.loadRes('{dets}'), 'bbox', lvis_style=True, print_function=lambda *a: None)
ev.params.maxDets = [300]; ev.evaluate(); ev.accumulate(); ev.summarize()
names = dict(AP='AP_all', AP50='AP_50', AP75='AP_75', APs='AP_small', APm='AP_medium', APl='AP_large', APr='APr',
             APc='APc', APf='APf')
metrics = {{k: float(ev.stats_as_dict[v]) for k, v in names.items()}}
""",
    "hotcoco": """
from hotcoco import LVIS, LVISEval, LVISResults
gt = LVIS('{gt}'); ev = LVISEval(gt, LVISResults(gt, '{dets}'), 'bbox'); ev.run()
metrics = {{k: float(v) for k, v in ev.get_results().items() if k in {keys}}}
""",
    "ultrafast-pycocotools": """
from ultrafast_pycocotools import COCO, COCOeval
gt = COCO('{gt}'); ev = COCOeval(gt, gt.loadRes('{dets}'), 'bbox', lvis_style=True); ev.print_function = lambda *a: None
ev.evaluate(); ev.accumulate(); ev.summarize()
metrics = dict(zip({keys}, map(float, ev.stats[:9])))
""",
    "vernier": """
import os
from vernier.instance import CocoDataset, evaluate_bbox_grid
gt = CocoDataset.from_lvis_json(open('{gt}', 'rb').read())
grid = evaluate_bbox_grid(gt, open('{dets}', 'rb').read(), parity_mode='strict', max_dets_per_image=300,
                          use_cats=True, num_threads=os.cpu_count())
stats = grid.accumulate([300]).summarize_lvis(gt).stats  # AP, AP50, AP75, APs, APm, APl, APr, APc, APf, AR...
metrics = dict(zip({keys}, map(float, stats[:9])))
""",
}
MODULES = {"lvis-api": "lvis", "faster-coco-eval": "faster_coco_eval", "hotcoco": "hotcoco",
           "ultrafast-pycocotools": "ultrafast_pycocotools", "vernier": "vernier"}
REPO = Path(__file__).resolve().parents[1]


def _peak(cmd, cwd=None, env=None) -> dict:
    """Wall time and peak RSS of one child process (wait4's rusage is the child's own)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:6]))} failed:\n{err[-3000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "stdout": out}


def _median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else round((values[n // 2 - 1] + values[n // 2]) / 2, 3)


def _summary(rows) -> dict:
    """Several runs of one evaluator: the median, smallest and largest wall time and peak RSS, and every run's."""
    walls, peaks, cpus = [r["wall_s"] for r in rows], [r["peak_rss_mib"] for r in rows], [r["cpu_s"] for r in rows]
    out = dict(rows[-1])
    out.update(runs=len(rows), wall_s=_median(walls), wall_min_s=min(walls), wall_max_s=max(walls), walls_s=walls,
               peak_rss_mib=_median(peaks), peak_min_mib=min(peaks), peak_max_mib=max(peaks), peaks_mib=peaks)
    out.update(cpu_s=_median(cpus), cpu_min_s=min(cpus), cpu_max_s=max(cpus), cpus_s=cpus)
    return out


def _rounds(runs: dict, times: int) -> dict:
    """Each evaluator once, then ``times - 1`` more rounds of those that took under 20 s, interleaved (every
    evaluator in each round), so that a slower or faster spell of the shared machine reaches all of them alike."""
    rows = {name: [run()] for name, run in runs.items()}
    fast = [name for name, r in rows.items() if r[0]["wall_s"] < 20]
    for _ in range(times - 1):
        for name in fast:
            rows[name].append(runs[name]())
    return {name: _summary(r) for name, r in rows.items()}


def copy_tree(dst: Path, src: Path = REPO) -> Path:
    """The files of ``src`` that a clone with its edits has (tracked, and untracked but not ignored) in ``dst``."""
    files = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (src / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
    return dst


def install_env(tree: Path, cache: Path) -> dict:
    """The environment of a fresh install of ``tree``: imported first, with its own kernel cache ``cache`` (the
    user's cache: XDG_CACHE_HOME; NUMBA_CACHE_DIR unset), bytecode written as on a user's machine."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "MEC_KERNELS")}
    env.update(PYTHONPATH=str(tree), XDG_CACHE_HOME=str(cache))
    return env


def warm_up(tree: Path, env: dict) -> float:
    """The set-up's kernel warm-up for ``tree``; its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mec_cli.evaluation.warmup"], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - start, 2)


def run_mec(root: Path, fixed: bool = False, tree: Optional[Path] = None, env: Optional[dict] = None) -> dict:
    """One ``mec eval --results`` of the workload (in ``tree`` with ``env`` when given: a fresh install)."""
    out = root / ("m_fixed.json" if fixed else "m.json")
    cmd = [sys.executable, "-m", "mec_cli.cli", "eval", "--results", str(root / "dets.json"),
           "--ann", str(root / "gt.json"), "--iou-type", "bbox", "--out", str(out)] + (["--fixed-ap"] if fixed else [])
    res = _peak(cmd, cwd=tree, env=env)
    m = json.loads(out.read_text())["modes"]["results"]["bbox"]
    res.pop("stdout")
    res["metrics"] = {k: m[k] for k in KEYS} | ({k: m[k] for k in m if k.endswith("_fixed")} if fixed else {})
    return res


def run_peer(name: str, root: Path) -> dict:
    code = SNIPPETS[name].format(gt=root / "gt.json", dets=root / "dets.json", keys=repr(KEYS)) + \
        "\nimport json\nprint('MEC-BENCH ' + json.dumps(metrics))\n"
    res = _peak([sys.executable, "-c", code])
    line = next(ln for ln in res.pop("stdout").splitlines() if ln.startswith("MEC-BENCH "))
    res["metrics"] = json.loads(line[len("MEC-BENCH "):])
    return res


MODES_CODE = """
import json, time
import numpy as np
from mec_cli.cli import _plain_pages_where_huge_ones_stall
_plain_pages_where_huge_ones_stall()
from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate_many
from mec_cli.evaluation.jsonscan import read_results_file
from mec_cli.evaluation.summary import summarize
gt = GroundTruth.from_file('{gt}')
arrays, buf = read_results_file('{dets}')
dets = Detections.from_scan(arrays, buf)
rng = np.random.default_rng(0)
modes = {{f"mode{{k}}": Detections(dets.image_id, dets.category_id,
                                 np.round(np.clip(dets.score + rng.normal(0, 0.05, len(dets)), 0, 1), 2), dets.bbox)
         for k in range(11)}}
t = time.perf_counter()
metrics = evaluate_many(gt, modes, 'bbox', then=lambda name, res: summarize(res, gt.frequency))
print('MEC-BENCH ' + json.dumps({{'eleven_modes_s': time.perf_counter() - t}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=300, help="detections per image")
    ap.add_argument("--skip", action="append", default=[], help="an evaluator not to run (repeatable)")
    ap.add_argument("--modes", action="store_true", help="also time 11 modes from one ground-truth index")
    ap.add_argument("--fixed-ap", action="store_true", help="also time mec's --fixed-ap on the same file")
    ap.add_argument("--jit", action="store_true",
                    help="also time mec with its kernels by numba's JIT (MEC_KERNELS=jit)")
    ap.add_argument("--root", type=Path, help="keep the workload here (default: a temporary folder)")
    ap.add_argument("--cache", type=Path, help="the installs' kernel cache (default: a new one in a temporary folder; "
                    "one kept from an earlier run makes the set-up's warm-up a no-op)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs of each evaluator under 20 s, in interleaved rounds (median, smallest, largest)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import importlib.util

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = args.root or tmp / "data"
        root.mkdir(parents=True, exist_ok=True)
        if not ((root / "gt.json").is_file() and (root / "dets.json").is_file()):
            t = time.time()
            n = make_workload(root, args.images, args.dets)
            mib = (root / "dets.json").stat().st_size / 2**20
            print(f"workload: {args.images:,} images, {n:,} detections ({mib:.0f} MiB), "
                  f"made in {time.time() - t:.0f} s", flush=True)
        result = {"images": args.images, "dets_per_image": args.dets, "cpu_count": os.cpu_count(),
                  "results_mib": round((root / "dets.json").stat().st_size / 2**20, 1), "evaluators": {}}
        # mec as a fresh install: a copy of the tree, set up (the kernel warm-up) into its own cache
        cache = args.cache or tmp / "cache"
        install = copy_tree(tmp / "install")
        env = install_env(install, cache)
        result["setup_warmup_s"] = warm_up(install, env)
        print(f"set-up's kernel warm-up: {result['setup_warmup_s']:.1f} s (once per machine and version)", flush=True)
        copies = iter(range(1 << 30))

        def first_run(fixed: bool = False) -> dict:
            fresh = copy_tree(tmp / f"fresh{next(copies)}")  # a new clone, then `make setup`'s step in it
            try:
                fresh_env = install_env(fresh, cache)
                warm_up(fresh, fresh_env)  # the kernels are compiled for this machine: only the package's bytecode
                return run_mec(root, fixed, fresh, fresh_env)
            finally:
                shutil.rmtree(fresh, ignore_errors=True)

        run_mec(root, tree=install, env=env)  # the install's own first run: the runs of "mec" below are warm
        runs = {"mec (first run)": first_run, "mec": lambda: run_mec(root, tree=install, env=env)}
        if args.jit:
            jit_env = dict(env, MEC_KERNELS="jit")
            run_mec(root, tree=install, env=jit_env)
            runs["mec (numba JIT)"] = lambda: run_mec(root, tree=install, env=jit_env)
        for name in SNIPPETS:
            if name in args.skip or importlib.util.find_spec(MODULES[name]) is None:
                continue
            runs[name] = lambda name=name: run_peer(name, root)
        if args.fixed_ap:
            run_mec(root, True, install, env)
            runs["mec --fixed-ap"] = lambda: run_mec(root, True, install, env)
        rows = _rounds(runs, args.repeat)
        ref_name = "lvis-api" if "lvis-api" in rows else "mec"
        ref = rows[ref_name]["metrics"]
        print(f"{'evaluator':24s} {'wall: median (min-max)':>28s} {'CPU s':>7s} "
              f"{'peak RSS MiB: median (min-max)':>32s}  runs")
        for name, row in rows.items():
            row["max_abs_diff_vs_" + ref_name] = max(abs(row["metrics"][k] - ref[k])
                                                     for k in KEYS if k in row["metrics"])
            print(f"{name:24s} {row['wall_s']:9.2f} s ({row['wall_min_s']:.2f}-{row['wall_max_s']:.2f}) "
                  f"{row['cpu_s']:7.2f} "
                  f"{row['peak_rss_mib']:12.0f} ({row['peak_min_mib']:.0f}-{row['peak_max_mib']:.0f}) "
                  f"{row['runs']:5d}   max |metric - {ref_name}| = {row['max_abs_diff_vs_' + ref_name]:.1e}",
                  flush=True)
        result["evaluators"] = rows
        if args.modes:
            code = MODES_CODE.format(gt=root / "gt.json", dets=root / "dets.json")
            times = []
            for _ in range(max(1, args.repeat)):
                res = _peak([sys.executable, "-c", code], cwd=install, env=env)
                line = next(ln for ln in res["stdout"].splitlines() if ln.startswith("MEC-BENCH "))
                times.append(json.loads(line[len("MEC-BENCH "):])["eleven_modes_s"])
            result["eleven_modes_s"] = _median(times)
            result["eleven_modes_runs_s"] = times
            print(f"11 modes from one ground-truth index: {result['eleven_modes_s']:.2f} s (median of {len(times)})",
                  flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
