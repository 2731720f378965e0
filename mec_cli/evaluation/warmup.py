"""Compile every numba kernel signature that ``mec eval`` uses, once per machine, so no user run waits for numba.

``make setup`` runs ``python -m mec_cli.evaluation.warmup``. It writes a small generated dataset to a temporary
folder and evaluates it along every path a ``mec eval`` takes: results files read whole and in pieces (the
scanner's 4 MB pieces on the cores), with boxes, RLE masks (string and list counts) and polygons, with and without
boxes, empty and malformed; the LVIS and COCO protocols; bbox, segm and boundary; Fixed AP; ``--analysis``; group
files; and checkpoint evaluation's in-memory path (``MECMetric``: several modes side by side, stage weights). numba
compiles each kernel for the argument types it meets and saves it in
:func:`mec_cli.evaluation.kernel_cache.cache_dir`; the next process loads it from there. Two processes share the
work (the results reader, the evaluator), then a third runs everything end to end and catches what they left.
Last, :mod:`mec_cli.evaluation.aot` runs the same paths again, notes every kernel call, and compiles those
signatures ahead of time into an extension module that ``mec eval`` then uses without numba
(:mod:`mec_cli.evaluation.compiled`); where it cannot be built (no C compiler), the kernels run by numba's JIT.

When the kernels of this version are already compiled for this CPU (:func:`kernel_cache.ready`), it says so and
compiles nothing, without importing numba: ``make setup`` stays a no-op when nothing changed. Either way it then
byte-compiles the package where it lies (:func:`compile_bytecode`), as pip does for an installed package.

    python -m mec_cli.evaluation.warmup            # compile what is missing (nothing, when ready)
    python -m mec_cli.evaluation.warmup --check    # exit 0 when ready, 1 when not; compiles nothing
    python -m mec_cli.evaluation.warmup --force    # run every path again (numba loads what it has)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from mec_cli.errors import MecError
from mec_cli.evaluation import kernel_cache

PARTS = ("reader", "evaluator", "all")  # the first two side by side, then "all" alone


def say(msg: str) -> None:
    print(f"[mec setup] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ the generated data


def _rect(h: int, w: int, x: int, y: int, bw: int, bh: int, cut: int = 0):
    """An (h, w) uint8 mask: a rectangle, with a notch of ``cut`` pixels (so boundaries are not all straight)."""
    import numpy as np  # noqa: PLC0415  (not on the --check path)

    m = np.zeros((h, w), np.uint8)
    m[y:y + bh, x:x + bw] = 1
    if cut:
        m[y:y + cut, x:x + cut] = 0
    return m


def _rle(mask, as_list: bool = False) -> Dict:
    """A mask as a results file holds it: compressed counts as a str, or uncompressed counts as a list."""
    import numpy as np  # noqa: PLC0415  (not on the --check path)
    import pycocotools.mask as mask_utils  # noqa: PLC0415  (not on the --check path)

    if as_list:  # runs of 0s and 1s in column-major order, starting with 0s
        flat = mask.reshape(-1, order="F").astype(np.int64)
        change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))  # where a run starts, and the end
        return {"size": list(mask.shape), "counts": np.diff(np.r_[0, change]).tolist()}
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def make_dataset(root: Path, seed: int = 0) -> Dict[str, Path]:
    """The warm-up's files in ``root``: LVIS and COCO annotations, a groups file, and results files of every kind.
    Returns their paths by name."""
    import numpy as np  # noqa: PLC0415  (not on the --check path)

    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"c{c}", "frequency": "rcf"[c % 3]} for c in range(1, 7)]
    sizes = [(48, 64), (64, 48), (40, 40), (56, 72), (48, 64), (32, 48), (64, 64), (40, 56)]
    images, anns, objects = [], [], []
    for i, (h, w) in enumerate(sizes, start=1):
        present = sorted((rng.choice(6, 3, replace=False) + 1).tolist()) if i != 6 else []  # image 6: no objects
        images.append({"id": i, "height": h, "width": w,
                       "neg_category_ids": [c for c in range(1, 7) if c not in present][:2],
                       "not_exhaustive_category_ids": present[:1] if i % 3 == 0 else []})
        for k, c in enumerate(present):
            bw, bh = int(rng.integers(6, w // 2)), int(rng.integers(6, h // 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            kind = (i + k) % 3
            if kind == 0:  # a polygon
                seg = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
            else:  # an RLE, compressed or not
                seg = _rle(_rect(h, w, x, y, bw, bh, cut=2), as_list=kind == 2)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": [x, y, bw, bh],
                         "area": float(bw * bh), "segmentation": seg, "iscrowd": 0})
            objects.append((i, int(c), x, y, bw, bh, h, w))
    coco_anns = [dict(a) for a in anns]
    h, w = sizes[0]
    coco_anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0,
                      "segmentation": _rle(_rect(h, w, 0, 0, 20, 20), as_list=True), "iscrowd": 1})
    lvis = {"images": images, "annotations": anns, "categories": cats}
    coco = {"images": [{k: v for k, v in im.items() if "category_ids" not in k} for im in images],
            "annotations": coco_anns, "categories": [{"id": c["id"], "name": c["name"]} for c in cats]}
    # detections: jittered copies of every object (its own category and another), clutter, two-decimal scores
    dets = []
    for i, c, x, y, bw, bh, h, w in objects:
        for j in range(4):
            dx, dy = int(rng.integers(-2, 3)), int(rng.integers(-2, 3))
            x0, y0 = min(max(0, x + dx), w - 2), min(max(0, y + dy), h - 2)
            bw2, bh2 = max(1, min(bw + j - 1, w - x0)), max(1, min(bh - j + 1, h - y0))
            dets.append((i, c if j < 3 else c % 6 + 1, x0, y0, bw2, bh2, h, w))
    for i, (h, w) in enumerate(sizes, start=1):
        for _ in range(3):
            bw, bh = int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2))
            dets.append((i, int(rng.integers(1, 7)), int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh)), bw,
                         bh, h, w))
    scores = np.round(rng.random(len(dets)), 2).tolist()
    full, no_box, polygons, list_counts = [], [], [], []
    for (i, c, x, y, bw, bh, h, w), s in zip(dets, scores):
        mask = _rect(h, w, x, y, bw, bh, cut=1)
        box = [float(x), float(y), float(bw), float(bh)]
        full.append({"image_id": i, "category_id": c, "bbox": box, "score": s, "segmentation": _rle(mask)})
        no_box.append({"image_id": i, "category_id": c, "score": s, "segmentation": _rle(mask)})
        polygons.append({"image_id": i, "category_id": c, "bbox": box, "score": s,
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
        list_counts.append({"image_id": i, "category_id": c, "score": s, "segmentation": _rle(mask, as_list=True)})
    # numbers that the scanner leaves to Python (a subnormal, 25 digits), escapes, unknown keys
    full[0]["score"] = 5e-324
    full[1]["bbox"][0] = 1.2345678901234567890123456
    full[2]["extra"] = {"note": "a \"quoted\" \\ value", "list": [1, 2.5, None, True]}
    groups = {"schema": "mec.groups/1", "source": "warm-up", "source_sha256": "", "count_by": "instances",
              "bins": [2], "category_group": {str(c["id"]): int(c["id"] > 3) for c in cats},
              "groups": [{"index": 0, "name": "few", "lower": 0, "upper": 2, "category_ids": [1, 2, 3]},
                         {"index": 1, "name": "many", "lower": 2, "upper": None, "category_ids": [4, 5, 6]}]}
    files = {"lvis": lvis, "coco": coco, "groups": groups, "full": full, "no_box": no_box, "polygons": polygons,
             "list_counts": list_counts, "boxes": [{k: r[k] for k in ("image_id", "category_id", "bbox", "score")}
                                                   for r in full], "empty": []}
    paths = {}
    for name, obj in files.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(obj, indent=None if name not in ("boxes",) else 1))
    paths["truncated"] = root / "truncated.json"
    paths["truncated"].write_text(paths["full"].read_text()[:-40])
    paths["no_score"] = root / "no_score.json"
    paths["no_score"].write_text(json.dumps(files["boxes"][:5] + [{"image_id": 1, "category_id": 1, "bbox": box}]))
    return paths


# ------------------------------------------------------------------------------------------ the paths of mec eval


@contextmanager
def _pieces(piece_bytes: Optional[int]):
    """Results files read in pieces of ``piece_bytes`` (a large file's path, on small files), or whole (None)."""
    from mec_cli.evaluation import jsonscan  # noqa: PLC0415  (not on the --check path)

    saved = jsonscan.PIECE_BYTES
    jsonscan.PIECE_BYTES = piece_bytes or 1 << 62
    try:
        yield
    finally:
        jsonscan.PIECE_BYTES = saved


def exercise_reader(paths: Dict[str, Path]) -> int:
    """Every results file read whole and in pieces, valid or not; returns how many reads."""
    from mec_cli.evaluation.jsonscan import read_results_file, scan_results  # noqa: PLC0415  (not on the --check path)

    reads = 0
    for piece_bytes in (None, 1024):
        with _pieces(piece_bytes):
            for name in ("full", "no_box", "polygons", "list_counts", "boxes", "empty", "truncated", "no_score"):
                try:
                    read_results_file(paths[name])
                except MecError:
                    pass
                reads += 1
    for text in (b"", b"{}", b"[1]", b'[{"image_id": 1}', b"[]"):
        try:
            scan_results(text)
        except MecError:
            pass
        reads += 1
    return reads


def _records(paths: Dict[str, Path]) -> List[Dict]:
    """What MECMetric collects from a model: per image and mode, arrays (masks as RLEs with bytes counts)."""
    import numpy as np  # noqa: PLC0415  (not on the --check path)

    dets = json.loads(paths["full"].read_text())
    out = []
    for mode, shift in (("mean_probs", 0.0), ("dynamic", 0.1), ("stage1", 0.2)):
        for img in range(1, 9):
            rows = [d for d in dets if d["image_id"] == img]
            rec = {"mode": mode, "image_id": np.full(len(rows), img),
                   "category_id": np.array([d["category_id"] for d in rows], np.int64),
                   "bbox": np.array([d["bbox"] for d in rows], np.float64).reshape(-1, 4),
                   "score": np.clip(np.array([d["score"] for d in rows], np.float64) - shift, 0, 1),
                   "segm": [{"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode()}
                            for d in rows]}
            if mode == "dynamic":
                rec["stage_weights"] = np.full((len(rows), 3), 1 / 3)
            out.append(rec)
    return out


def exercise_evaluator(paths: Dict[str, Path]) -> int:
    """Checkpoint evaluation's path (MECMetric's arrays, several modes side by side) for both protocols, every iou
    type, Fixed AP and the analyses; returns how many evaluations."""
    from mec_cli.evaluation.api import evaluate_mode_arrays  # noqa: PLC0415  (not on the --check path)

    records = _records(paths)
    runs = 0
    for protocol in ("lvis", "coco"):
        ann = str(paths[protocol])
        for iou_types, fixed, analysis in ((["bbox", "segm", "boundary"], 50, True), (["bbox"], None, False)):
            evaluate_mode_arrays(records, ann, iou_types, protocol, str(paths["groups"]), fixed, analysis, 0.02)
            evaluate_mode_arrays([r for r in records if r["mode"] == "stage1"], ann, iou_types, protocol, None, fixed,
                                 analysis, 0.05)
            runs += 2
    return runs


def exercise_all(paths: Dict[str, Path]) -> int:
    """``mec eval --results`` (the library call behind it) on every results file, both protocols, whole and in
    pieces, every iou type the file allows, with and without Fixed AP, analyses and groups; then the reader's and
    the evaluator's paths. Returns how many runs."""
    from mec_cli.evaluation.api import evaluate_results_file  # noqa: PLC0415  (not on the --check path)

    runs = exercise_reader(paths) + exercise_evaluator(paths) + exercise_per_image(paths)
    cases = [("full", ["bbox", "segm", "boundary"]), ("full", None), ("boxes", ["bbox"]),
             ("no_box", ["segm", "boundary", "bbox"]), ("polygons", ["bbox", "segm", "boundary"]),
             ("list_counts", ["segm", "boundary"]), ("empty", None)]
    for piece_bytes in (None, 1024):
        with _pieces(piece_bytes):
            for protocol in ("lvis", "coco"):
                for name, iou_types in cases:
                    for fixed, analysis, groups in ((None, False, None), (40, True, str(paths["groups"]))):
                        try:
                            evaluate_results_file(paths[name], paths[protocol], iou_types, protocol, groups, fixed,
                                                  analysis, 0.02)
                        except MecError:
                            pass
                        runs += 1
                for name in ("truncated", "no_score"):
                    try:
                        evaluate_results_file(paths[name], paths[protocol], None, protocol)
                    except MecError:
                        pass
                    runs += 1
    return runs


def exercise_per_image(paths: Dict[str, Path]) -> int:
    """--per-image records, several --results (shards), --partial then --merge, and the paired bootstrap of
    ``mec report compare --ci``, for every iou type; returns how many runs."""
    from mec_cli.evaluation.api import evaluate_results_file  # noqa: PLC0415  (not on the --check path)
    from mec_cli.evaluation.bootstrap import compare_documents  # noqa: PLC0415
    from mec_cli.evaluation.partial import evaluate_partial_files, write_partial  # noqa: PLC0415

    runs = 0
    dets = json.loads(paths["full"].read_text())
    folder = paths["full"].parent
    shards = []
    for k in range(2):  # each image's detections in one shard
        shard = folder / f"shard{k}.json"
        shard.write_text(json.dumps([d for d in dets if d["image_id"] % 2 == k]))
        shards.append(shard)
    rescored = folder / "rescored.json"
    rescored.write_text(json.dumps([dict(d, score=round(d["score"] * 0.9 + 0.05 * (i % 3), 4))
                                    for i, d in enumerate(dets)]))
    types = ["bbox", "segm", "boundary"]
    for protocol in ("lvis", "coco"):
        ann, groups = paths[protocol], str(paths["groups"])
        a = evaluate_results_file(paths["full"], ann, types, protocol, groups, per_image=True)
        b = evaluate_results_file(rescored, ann, types, protocol, groups, per_image=True)
        evaluate_results_file(shards, ann, types, protocol, groups, per_image=True)
        parts = []
        for k, shard in enumerate(shards):
            parts.append(folder / f"part{k}.npz")
            write_partial(shard, ann, parts[-1], types, protocol, groups)
        evaluate_partial_files(parts, per_image=True)
        for iou_type in ("bbox", "segm"):
            compare_documents(a, "results", b, "results", iou_type, resamples=4)
        runs += 6
    return runs


EXERCISES: Dict[str, Callable[[Dict[str, Path]], int]] = {
    "reader": exercise_reader, "evaluator": exercise_evaluator, "all": exercise_all}


@contextmanager
def compile_log():
    """A list that receives every kernel signature numba compiles (not those it loads from the cache) meanwhile."""
    from numba.core import event  # noqa: PLC0415  (not on the --check path)

    compiled: List[str] = []

    class Log(event.Listener):
        def on_start(self, ev):
            d = ev.data["dispatcher"]
            compiled.append(f"{d.py_func.__module__}.{d.py_func.__qualname__}{tuple(ev.data['args'])}")

        def on_end(self, ev):
            pass

    log = Log()
    event.register("numba:compile", log)
    try:
        yield compiled
    finally:
        event.unregister("numba:compile", log)


def run_part(part: str, out: Optional[Path] = None) -> Dict:
    """One part (:data:`PARTS`) in this process, on fresh data; returns what it compiled and how long it took."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mec-warmup-") as tmp:
        paths = make_dataset(Path(tmp))
        with compile_log() as compiled:
            runs = EXERCISES[part](paths)
    result = {"part": part, "runs": runs, "compiled": compiled, "seconds": round(time.perf_counter() - t0, 1)}
    if out is not None:
        out.write_text(json.dumps(result))
    return result


JIT_ENV = {"MEC_KERNELS": "jit"}  # the parts fill numba's cache even where an ahead-of-time build exists


def _spawn(part: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mec_cli.evaluation.warmup", "--part", part, "--json", str(out)],
                            env=dict(os.environ, **JIT_ENV))


def build_aot() -> Dict:
    """The ahead-of-time build of the kernels (:mod:`mec_cli.evaluation.aot`), in a process of its own; what it made,
    or why it could not (the kernels then run by numba's JIT, as compiled above)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "mec_cli.evaluation.aot"], env=dict(os.environ, **JIT_ENV),
                         capture_output=True, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    if res.returncode != 0 or not kernel_cache.aot_ready():
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        return {"built": False, "seconds": seconds, "reason": lines[-1] if lines else f"exit code {res.returncode}"}
    summary = json.loads(res.stdout.splitlines()[0])
    return {"built": True, "seconds": seconds, "folder": str(kernel_cache.aot_dir()), "exports": summary["exports"],
            "left_to_jit": summary["left_to_jit"]}


def warm_up(parallel: Optional[bool] = None) -> Dict:
    """Compile every kernel signature of ``mec eval`` into the cache (module docstring); write the marker."""
    t0 = time.perf_counter()
    folder = kernel_cache.cache_dir()
    writable = kernel_cache.writable(folder)
    if writable:
        say(f"compiling the evaluation kernels into {folder} (once per machine and version; a few minutes)")
    else:  # numba falls back to its own caches (beside the sources, or ~/.cache/numba), keyed by their path
        say(f"warning: cannot write the kernel cache {folder} (set NUMBA_CACHE_DIR to a writable folder); "
            "compiling the evaluation kernels into numba's own cache instead")
    parallel = (os.cpu_count() or 1) > 1 if parallel is None else parallel
    with tempfile.TemporaryDirectory(prefix="mec-warmup-") as tmp:
        outs = {p: Path(tmp) / f"{p}.json" for p in PARTS}
        if parallel:
            procs = {p: _spawn(p, outs[p]) for p in PARTS[:2]}
            failed = [p for p, proc in procs.items() if proc.wait() != 0]
        else:
            failed = [p for p in PARTS[:2] if _spawn(p, outs[p]).wait() != 0]
        if failed:
            raise SystemExit(f"[mec setup] error: the kernel warm-up's {failed[0]} part failed (above)")
        if _spawn("all", outs["all"]).wait() != 0:
            raise SystemExit("[mec setup] error: the kernel warm-up's last part failed (above)")
        parts = [json.loads(outs[p].read_text()) for p in PARTS]
    # our kernels' signatures (numba compiles some of its own functions with them)
    compiled = sum(name.startswith("mec_cli.") for p in parts for name in p["compiled"])
    say(f"compiled {compiled} signatures of the evaluation kernels for numba's JIT in "
        f"{time.perf_counter() - t0:.0f} s; now the ahead-of-time build (no numba needed to run it)")
    aot = build_aot() if writable else {"built": False, "reason": "the kernel cache cannot be written"}
    if aot["built"]:
        say(f"built {aot['exports']} kernel signatures ahead of time in {aot['seconds']:.0f} s into {aot['folder']}")
    else:
        say(f"warning: no ahead-of-time build of the kernels ({aot['reason']}); `mec eval` runs them by numba's JIT "
            "(0.6 s more a run)")
    record = {"key": kernel_cache.cache_key(), "cpu": kernel_cache.cpu_id(), "python": sys.version.split()[0],
              "seconds": round(time.perf_counter() - t0, 1), "compiled_signatures": compiled,
              "parts": [{k: p[k] for k in ("part", "runs", "seconds")} | {"compiled": len(p["compiled"])}
                        for p in parts],
              "late": parts[-1]["compiled"], "aot": aot, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if writable:
        kernel_cache.marker().write_text(json.dumps(record, indent=2) + "\n")
    removed = kernel_cache.prune() if writable else []
    say(f"the evaluation kernels are ready ({record['seconds']:.0f} s)"
        + (f"; removed {len(removed)} unused older cache folders" if removed else ""))
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mec_cli.evaluation.warmup", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 0 when the kernels are compiled here, else 1")
    ap.add_argument("--force", action="store_true", help="run every path even when the kernels are compiled")
    ap.add_argument("--serial", action="store_true", help="one part at a time (default: two side by side)")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # one part, in this process
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.part:
        run_part(args.part, args.json)
        return 0
    ready = kernel_cache.ready()
    if args.check:
        aot = "with" if kernel_cache.aot_ready() else "without"
        say(f"evaluation kernels {'compiled' if ready else 'NOT compiled'} for this machine in "
            f"{kernel_cache.cache_dir()} ({aot} the ahead-of-time build)")
        return 0 if ready else 1
    if ready and not args.force:
        say(f"evaluation kernels already compiled for this machine ({kernel_cache.cache_dir()})")
    else:
        warm_up(parallel=not args.serial)
    compile_bytecode()
    return 0


def compile_bytecode(package: Path = Path(__file__).resolve().parents[1]) -> bool:
    """Byte-compile the package's modules where they lie, as pip does for an installed package, so that the first
    ``mec eval`` of a fresh clone does not (33 modules, 0.1 to 0.2 s of CPU); up-to-date files are skipped. Not where
    bytecode is not wanted (``PYTHONDONTWRITEBYTECODE``) or cannot be written (a read-only tree: quietly)."""
    if sys.dont_write_bytecode:
        return False
    import compileall  # noqa: PLC0415  (set-up only)

    return bool(compileall.compile_dir(str(package), quiet=2))


if __name__ == "__main__":
    sys.exit(main())
