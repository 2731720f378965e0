"""A long fuzz pass over the `mec` command line with hostile inputs, as a new user (or a careless script) would try
them (issue 20). Every case runs `mec` in its own process, as a shell does, and must hold the README's promise:

* no hang: every case ends within its time limit (a FIFO is never opened for reading, nor waited on for writing);
* no traceback: exit 0, or exit 2 with exactly one ``error:`` line, or 130/143 after SIGINT/SIGTERM;
* nothing replaced that must not be: every file in the case's folder and the shared inputs that is not one of the
  case's outputs keeps its bytes, and every device, FIFO and socket stays what it was (no rename over one);
* no temporary file left, and an output either as it was or complete (JSON that parses, PNG that starts as one);
* cases that name plain nonsense (a FIFO as input, an RLE whose runs overflow its size, ...) are refused, and cases
  that are valid (a pipe with a reader, a private /dev/null) succeed.

Classes: ``outputs`` (every command x every kind of output path), ``inputs`` (every reader x every kind of input
path and broken file), ``content`` (annotation, results, metrics and groups files mutated field by field, RLE
counts mutated character by character), ``checkpoints``, ``options`` (every option of every command with hostile
values), ``signals`` (SIGINT/SIGTERM at a random moment of every long command) and ``resume`` (SIGKILL during
checkpoint saves, then ``--resume``). Devices are private nodes made with mknod (as root) in the case's folder,
never the machine's own /dev/null, so a regression cannot damage the machine.

    PYTHONPATH=. .venv/bin/python benchmarks/fuzz_cli.py --cases 700 --seed 0 --workers 2 \\
        --out benchmarks/results/fuzz_cli.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
MEC = [sys.executable, "-m", "mec_cli.cli"]
OK, ERROR, EITHER = "ok", "error", "either"


@dataclass
class Case:
    cls: str
    name: str
    argv: List[str]
    expect: str = EITHER
    outputs: List[str] = field(default_factory=list)  # paths (relative to the case folder) the command may write
    setup: Optional[Callable[[Path], None]] = None
    timeout: float = 180.0
    signal: Optional[tuple] = None  # (signal number, delay in seconds)
    reader: Optional[str] = None  # a FIFO (relative path) to read from while the command runs
    then: Optional[Callable[[Path, dict], Optional[str]]] = None  # an extra check: a failure message or None
    allow_log: bool = False  # a start-up failure after mmengine logged (train) may print more than one line


# ---- the shared inputs ---------------------------------------------------------------------------------------------
def build_common(root: Path) -> Dict[str, Path]:
    """Valid inputs every case starts from: a synthetic dataset, results files, groups, a trained tiny model and its
    metrics, a COCO-style file for build-coco-lt."""
    import numpy as np
    import pycocotools.mask as mask_utils

    from mec_cli.data.profiles import load_profile
    from mec_cli.data.synth import SynthConfig, make_synthetic_dataset, synthetic_coco_annotations

    c = {"root": root}
    data = root / "sd"
    if not (data / "annotations" / "lvis_v1_val.json").exists():
        make_synthetic_dataset(SynthConfig(out=data, seed=0, train_images=120, val_images=30, image_size=128,
                                           max_count=300, min_count=3))
    c["data"], c["ann"] = data, data / "annotations/lvis_v1_val.json"
    c["train_ann"] = data / "annotations/lvis_v1_train.json"
    gt = json.loads(c["ann"].read_text())
    rng = np.random.default_rng(0)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    box, segm, nobox = [], [], []
    for k, a in enumerate(gt["annotations"]):
        for j in range(3):
            b = [float(v) for v in np.asarray(a["bbox"]) + rng.normal(0, 2, 4) * (j > 0)]
            b[2], b[3] = abs(b[2]) + 1, abs(b[3]) + 1
            rec = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": b,
                   "score": round(float(rng.random()), 4)}
            box.append(rec)
            h, w = sizes[a["image_id"]]
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))
            seg = {"size": [h, w], "counts": rle["counts"].decode()}
            segm.append({**rec, "segmentation": seg})
            nobox.append({k2: v for k2, v in rec.items() if k2 != "bbox"} | {"segmentation": seg})
    for name, recs in (("dets_box", box), ("dets_segm", segm), ("dets_nobox", nobox)):
        c[name] = root / f"{name}.json"
        c[name].write_text(json.dumps(recs))
    coco = synthetic_coco_annotations(3000, load_profile("coco2017")["categories"], seed=1, scale=0.02)
    c["coco"] = root / "coco.json"
    c["coco"].write_text(json.dumps(coco))
    big = synthetic_coco_annotations(40000, load_profile("coco2017")["categories"], seed=2, scale=0.3)
    c["coco_big"] = root / "coco_big.json"
    c["coco_big"].write_text(json.dumps(big))
    c["groups"] = root / "groups.json"
    _run_ok(["groups", str(c["train_ann"]), "--out", str(c["groups"])], root)
    c["metrics"] = root / "metrics.json"
    _run_ok(["eval", "--results", str(c["dets_segm"]), "--ann", str(c["ann"]), "--groups", str(c["groups"]),
             "--iou-type", "bbox,segm", "--analysis", "--out", str(c["metrics"])], root)
    run = root / "run"
    if not (run / "iter_6.pth").exists():
        shutil.rmtree(run, ignore_errors=True)
        _run_ok(["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(data), "--work-dir", str(run),
                 "--max-iters", "6", "--seed", "0", "--cfg-options", "default_hooks.checkpoint.interval=3",
                 "log_level=WARNING"], root, timeout=1800)
    c["run"], c["ckpt"], c["ckpt3"] = run, run / "iter_6.pth", run / "iter_3.pth"
    c["metrics_ckpt"] = root / "metrics_ckpt.json"
    if not c["metrics_ckpt"].exists():
        _run_ok(["eval", "--checkpoint", str(c["ckpt"]), "--recipe", "tiny", "--data-root", str(data), "--per-stage",
                 "--analysis", "--out", str(c["metrics_ckpt"])], root, timeout=1800)
    return c


def _run_ok(argv, cwd, timeout=600):
    done = subprocess.run(MEC + argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"set-up failed: mec {' '.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


# ---- kinds of paths ------------------------------------------------------------------------------------------------
def make_special(path: Path, kind: str) -> None:
    """Make ``path`` a FIFO, a socket, a folder or a private character device (null: 1,3; full: 1,7; zero: 1,5)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "dir":
        path.mkdir()
    elif kind in ("null", "full", "zero"):
        minor = {"null": 3, "full": 7, "zero": 5}[kind]
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    else:
        raise ValueError(kind)


BROKEN = {  # kinds of broken input files: name -> bytes
    "empty": b"",
    "whitespace": b"   \n\t ",
    "random": None,  # filled per case
    "truncated": b'{"images": [{"id": 1, "width": 4',
    "nested": b"[" * 200000,
    "bom": b"\xef\xbb\xbf" + b'{"images": [], "annotations": [], "categories": []}',
    "utf16": '{"images": [], "annotations": [], "categories": []}'.encode("utf-16"),
    "invalid_utf8": b'{"images": [], "annotations": [], "categories": [{"id": 1, "name": "caf\xe9"}]}',
    "lone_surrogate": b'{"images": [], "annotations": [], "categories": [{"id": 1, "name": "\\udc80"}]}',
    "nan": b'{"images": [], "annotations": [], "categories": [{"id": NaN, "name": "x"}]}',
    "huge_int": b'{"images": [], "annotations": [], "categories": [{"id": ' + b"9" * 5000 + b', "name": "x"}]}',
    "top_list": b"[1, 2, 3]",
    "top_string": b'"hello"',
    "python": b"model = dict(type='x')\n",
    "binary_zip": b"PK\x03\x04" + b"\x00" * 64,
}


# ---- case generators -------------------------------------------------------------------------------------------
def output_cases(c, rnd) -> List[Case]:
    cmds = {
        "eval": (["eval", "--results", str(c["dets_box"]), "--ann", str(c["ann"]), "--out", "OUT"], "json"),
        "groups": (["groups", str(c["train_ann"]), "--out", "OUT"], "json"),
        "build-coco-lt": (["build-coco-lt", "--coco-ann", str(c["coco"]), "--keep-top", "3", "--out", "OUT"], "json"),
        "report-table": (["report", "ablation", str(c["metrics_ckpt"]), "--format", "md", "--out", "OUT"], "text"),
        "report-stages": (["report", "stages", str(c["metrics_ckpt"]), "--out", "OUT"], "figure"),
        "report-errors": (["report", "errors", str(c["metrics"]), "--out", "OUT"], "figure"),
        "report-distribution": (["report", "distribution", "lvis_v1", "--out", "OUT"], "figure"),
        "report-csv": (["report", "weights", str(c["metrics_ckpt"]), "--out", "fig.png", "--csv", "OUT"], "text"),
        "synth": (["synth", "--train-images", "2", "--val-images", "2", "--image-size", "64", "--out", "OUT"], "dir"),
        "train-work-dir": (["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]), "--work-dir",
                            "OUT", "--dry-run"], "dir"),
    }
    kinds = ["new", "existing", "symlink", "dangling_symlink", "dir", "fifo_no_reader", "fifo_reader", "null", "full",
             "zero", "socket", "under_file", "stdout", "stderr", "closed_fd", "equals_input", "hardlink_input",
             "long_name", "newline_name", "sibling_is_input", "nested_new_dirs"]
    cases = []
    for cmd, (argv, what) in cmds.items():
        for kind in kinds:
            cases.append(_output_case(c, cmd, argv, what, kind))
    return cases


def _output_case(c, cmd, argv, what, kind) -> Case:
    suffix = {"json": ".json", "text": ".md" if cmd == "report-table" else ".csv", "figure": ".png", "dir": ""}[what]
    out = f"out{suffix}"
    setup, expect, outputs, reader = None, OK, [out], None
    if what == "figure" and kind in ("new", "existing", "symlink", "nested_new_dirs"):
        outputs.append(out.replace(".png", ".svg"))
    if cmd == "report-csv":
        outputs += ["fig.png", "fig.svg"]
    if cmd == "build-coco-lt":
        outputs.append(out.replace(".json", ".manifest.json"))
    if kind == "existing":
        def setup(d, out=out, what=what):
            (d / out).mkdir() if what == "dir" else (d / out).write_text("previous\n")
    elif kind == "symlink":
        target = f"target{suffix}"
        outputs.append(target)

        def setup(d, out=out, target=target, what=what):
            (d / target).mkdir() if what == "dir" else (d / target).write_text("previous\n")
            (d / out).symlink_to(d / target)
    elif kind == "dangling_symlink":
        outputs.append(f"nowhere{suffix}")

        def setup(d, out=out, suffix=suffix):
            (d / out).symlink_to(d / f"nowhere{suffix}")
        expect = EITHER
    elif kind in ("dir", "fifo_no_reader", "fifo_reader", "null", "full", "zero", "socket"):
        special = {"fifo_no_reader": "fifo", "fifo_reader": "fifo"}.get(kind, kind)

        def setup(d, out=out, special=special):
            make_special(d / out, special)
        if kind == "fifo_reader":
            reader = out
        ok_kinds = ("null", "zero", "fifo_reader") + (("dir",) if what == "dir" else ())
        expect = OK if kind in ok_kinds else ERROR
        if what == "dir" and kind in ("null", "zero", "fifo_reader"):
            expect, reader = ERROR, None  # a folder output cannot be a device
        if what == "dir" and kind == "dir":
            expect = OK
    elif kind == "under_file":
        out = "afile/out" + suffix
        outputs = [out]

        def setup(d):
            (d / "afile").write_text("x")
        expect = ERROR
    elif kind in ("stdout", "stderr"):
        out = f"/dev/{kind}"
        outputs = []
        expect = ERROR if what == "dir" else OK
    elif kind == "closed_fd":
        out, outputs, expect = "/dev/fd/9", [], ERROR
    elif kind in ("equals_input", "hardlink_input"):
        inputs = [a for a in argv if a.startswith(str(c["root"])) and Path(a).is_file()]
        if not inputs:  # distribution reads a profile, synth and train read no file that could be overwritten
            out, outputs, expect = "plain" + suffix, ["plain" + suffix] + outputs[1:], EITHER
        else:
            src = Path(inputs[0])
            copy_name = "input_copy" + src.suffix
            argv = [copy_name if a == str(src) else a for a in argv]

            def setup(d, src=src, copy_name=copy_name, kind=kind, out=out):
                shutil.copy(src, d / copy_name)
                if kind == "hardlink_input":
                    os.link(d / copy_name, d / out)
            out = copy_name if kind == "equals_input" else out
            outputs = [o for o in outputs if o != copy_name]
            expect = ERROR
            if what == "figure" and kind == "equals_input":  # in.json as a figure path writes in.png and in.svg
                outputs, expect = ["input_copy.png", "input_copy.svg"], OK
    elif kind == "long_name":
        out = "x" * 300 + suffix
        outputs, expect = [], ERROR
    elif kind == "newline_name":
        out = "new\nline" + suffix
        outputs = [out] + outputs[1:]
    elif kind == "sibling_is_input":
        if what != "figure" or cmd == "report-distribution":
            out, outputs, expect = "plain" + suffix, ["plain" + suffix] + outputs[1:], EITHER
        else:
            src = Path(next(a for a in argv if a.startswith(str(c["root"]))))
            argv = [str(Path("fig_in.svg")) if a == str(src) else a for a in argv]

            def setup(d, src=src):
                shutil.copy(src, d / "fig_in.svg")
            out, outputs, expect = "fig_in.png", ["fig_in.png"], ERROR
    elif kind == "nested_new_dirs":
        out = "a/b/c/out" + suffix
        outputs = [out, out.replace(".png", ".svg"), "a"] + outputs[1:]
    argv = [out if a == "OUT" else a for a in argv]
    return Case("outputs", f"{cmd}:{kind}", argv, expect, outputs, setup, reader=reader)


READERS = {
    "groups-ann": lambda c, p: ["groups", p, "--out", "g.json"],
    "coco-lt-coco": lambda c, p: ["build-coco-lt", "--coco-ann", p, "--out", "lt.json"],
    "coco-lt-lvis": lambda c, p: ["build-coco-lt", "--coco-ann", str(c["coco"]), "--lvis-ann", p, "--out", "lt.json"],
    "eval-results": lambda c, p: ["eval", "--results", p, "--ann", str(c["ann"]), "--out", "m.json"],
    "eval-ann": lambda c, p: ["eval", "--results", str(c["dets_box"]), "--ann", p, "--out", "m.json"],
    "eval-groups": lambda c, p: ["eval", "--results", str(c["dets_box"]), "--ann", str(c["ann"]), "--groups", p],
    "report-run": lambda c, p: ["report", "ablation", p],
    "report-distribution": lambda c, p: ["report", "distribution", p, "--out", "d.png"],
    "eval-checkpoint": lambda c, p: ["eval", "--checkpoint", p, "--recipe", "tiny", "--data-root", str(c["data"]),
                                     "--max-images", "2"],  # a model trained 6 iterations keeps many boxes: slow
    "train-config": lambda c, p: ["train", "--config", p, "--gpus", "0", "--dry-run"],
    "eval-config": lambda c, p: ["eval", "--checkpoint", str(c["ckpt"]), "--config", p],
    "train-pretrained": lambda c, p: ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]),
                                      "--pretrained", p, "--dry-run"],
    "train-resume": lambda c, p: ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]),
                                  "--work-dir", "w", "--resume", p, "--dry-run"],
    "train-groups": lambda c, p: ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]),
                                  "--groups", p, "--dry-run"],
}


def input_cases(c, rnd) -> List[Case]:
    kinds = ["missing", "dir", "fifo", "socket", "null", "zero", "dash", "symlink_loop", *BROKEN]
    cases = []
    for reader, argv_of in READERS.items():
        for kind in kinds:
            name = "in.json" if not reader.endswith("config") else "in.py"
            if reader in ("eval-checkpoint", "train-pretrained", "train-resume"):
                name = "in.pth"
            path = "-" if kind == "dash" else name

            def setup(d, kind=kind, name=name, seed=rnd.random()):
                p = d / name
                if kind in ("dir", "fifo", "socket", "null", "zero"):
                    make_special(p, kind)
                elif kind == "symlink_loop":
                    p.symlink_to(p)
                elif kind in BROKEN:
                    data = BROKEN[kind]
                    p.write_bytes(data if data is not None else random.Random(seed).randbytes(3000))
            expect = ERROR
            if reader.endswith("config") and kind == "python":
                expect = ERROR  # a config without a model
            cases.append(Case("inputs", f"{reader}:{kind}", argv_of(c, path), expect,
                              outputs=["g.json", "lt.json", "lt.manifest.json", "m.json", "d.png", "d.svg", "w"],
                              setup=setup))
    return cases


ANN_FIELDS = [("images", 0, "id"), ("images", 1, "width"), ("images", 0, "height"), ("images", 0, "neg_category_ids"),
              ("images", 0, "not_exhaustive_category_ids"), ("categories", 0, "id"), ("categories", 1, "name"),
              ("categories", 0, "frequency"), ("annotations", 0, "id"), ("annotations", 0, "image_id"),
              ("annotations", 1, "category_id"), ("annotations", 0, "bbox"), ("annotations", 1, "area"),
              ("annotations", 0, "iscrowd"), ("annotations", 1, "segmentation")]
BAD_VALUES = [None, "1", [1, 2], {"x": 1}, 2**70, -(2**70), True, 1.5, float("nan"), float("inf"), [], "", -1, 0,
              [[1, 2, 3]], {"size": [1, 1], "counts": "~~"}, "\u00e9\udc80"]
RESULT_FIELDS = ["image_id", "category_id", "score", "bbox", "segmentation"]


def _rle_mutations(counts: str, rnd) -> List:
    alphabet = [chr(c) for c in range(48, 112)]
    out = []
    for _ in range(3):
        s = list(counts)
        for _ in range(rnd.randint(1, 3)):
            op = rnd.randrange(4)
            if op == 0 and s:
                s[rnd.randrange(len(s))] = rnd.choice(alphabet)
            elif op == 1:
                s.insert(rnd.randrange(len(s) + 1), rnd.choice(alphabet))
            elif op == 2 and s:
                del s[rnd.randrange(len(s))]
            else:
                s.insert(rnd.randrange(len(s) + 1), rnd.choice("~\x7f !{|}\\\"é\n"))
        out.append("".join(s))
    return out + [counts + "1" * 50, counts[: len(counts) // 2], "", "0" * 7 + "1", "P" * 30]


def content_cases(c, rnd) -> List[Case]:
    cases = []
    gt = json.loads(c["ann"].read_text())
    small = {"images": gt["images"][:3], "categories": gt["categories"],
             "annotations": [a for a in gt["annotations"] if a["image_id"] in {im["id"] for im in gt["images"][:3]}]}
    ids = {im["id"] for im in small["images"]}
    segm = [r for r in json.loads(c["dets_segm"].read_text()) if r["image_id"] in ids]
    nobox = [r for r in json.loads(c["dets_nobox"].read_text()) if r["image_id"] in ids]

    def write(name, obj):
        def setup(d):
            (d / name).write_text(json.dumps(obj, allow_nan=True))
        return setup

    def both(*setups):
        def setup(d):
            for s in setups:
                s(d)
        return setup

    # 1. annotation files, field by field, for each reader
    for _ in range(70):
        section, idx, key = rnd.choice(ANN_FIELDS)
        value = rnd.choice(BAD_VALUES)
        doc = copy.deepcopy(small)
        doc[section][idx][key] = value
        reader = rnd.choice(["groups", "coco-lt", "eval", "eval-segm", "eval-boundary"])
        argv = {"groups": ["groups", "ann.json", "--out", "o.json"],
                "coco-lt": ["build-coco-lt", "--coco-ann", "ann.json", "--keep-top", "1", "--out", "o.json"],
                "eval": ["eval", "--results", "res.json", "--ann", "ann.json", "--iou-type", "bbox", "--out", "o.json"],
                "eval-segm": ["eval", "--results", "res.json", "--ann", "ann.json", "--iou-type", "segm", "--out",
                              "o.json"],
                "eval-boundary": ["eval", "--results", "res.json", "--ann", "ann.json", "--iou-type", "boundary",
                                  "--out", "o.json"]}[reader]
        cases.append(Case("content", f"annotations:{reader}:{section}.{key}={value!r}"[:120], argv, EITHER,
                          ["o.json", "o.manifest.json"], both(write("ann.json", doc), write("res.json", segm))))
    # 2. results records, field by field
    for _ in range(50):
        key, value = rnd.choice(RESULT_FIELDS), rnd.choice(BAD_VALUES)
        recs = copy.deepcopy(segm)
        recs[rnd.randrange(len(recs))][key] = value
        iou = rnd.choice(["bbox", "segm", "boundary"])
        cases.append(Case("content", f"results:{iou}:{key}={value!r}"[:120],
                          ["eval", "--results", "res.json", "--ann", str(c["ann"]), "--iou-type", iou, "--out",
                           "o.json"], EITHER, ["o.json"], write("res.json", recs)))
    # 3. RLE counts, character by character, in results (with and without boxes) and in annotations
    for _ in range(18):
        recs = copy.deepcopy(rnd.choice([segm, nobox]))
        i = rnd.randrange(len(recs))
        for mutated in _rle_mutations(recs[i]["segmentation"]["counts"], rnd):
            r2 = copy.deepcopy(recs)
            r2[i]["segmentation"]["counts"] = mutated
            iou = rnd.choice(["segm", "boundary", "bbox"] if "bbox" not in r2[i] else ["segm", "boundary"])
            cases.append(Case("content", f"rle:{iou}:{mutated[:30]!r}",
                              ["eval", "--results", "res.json", "--ann", str(c["ann"]), "--iou-type", iou, "--out",
                               "o.json"], EITHER, ["o.json"], write("res.json", r2), timeout=120))
    for extreme in ([0, 30000], [30000], [], [0], [1] * 5000, [2**40, 1], [4096], [0, 4096, 0]):
        for where in ("results", "annotations"):
            recs, doc = copy.deepcopy(segm), copy.deepcopy(small)
            seg = {"size": [128, 128], "counts": extreme}
            if where == "results":
                recs[0]["segmentation"] = seg
            else:
                doc["annotations"][0]["segmentation"] = seg
            valid = sum(extreme) == 128 * 128
            cases.append(Case("content", f"rle-list:{where}:{str(extreme)[:30]}",
                              ["eval", "--results", "res.json", "--ann", "ann.json", "--iou-type", "segm", "--out",
                               "o.json"], EITHER if valid else ERROR, ["o.json"],
                              both(write("res.json", recs), write("ann.json", doc)), timeout=120))
    for size in ([64, 64], [0, 0], [128, 2**40], [2**31, 2**31], [1, 16384]):
        recs = copy.deepcopy(segm)
        recs[0]["segmentation"]["size"] = size
        cases.append(Case("content", f"rle-size:{size}", ["eval", "--results", "res.json", "--ann", str(c["ann"]),
                                                            "--iou-type", "segm"], ERROR, [], write("res.json", recs)))
    for poly in ([[0, 0, 1e9, 0, 1e9, 1e9]], [[0, 0, 1, 0]], [[-1e6, -1e6, 5, 5, 9, 1]],
                 [[0, 0, 5, 5, 9, float("nan")]], [[0, 0, 5, 5, 9, 1e308 * 10]], [[0, 0, 200, 0, 200, 200, 0, 200]]):
        recs = copy.deepcopy(segm)
        recs[0]["segmentation"] = poly
        cases.append(Case("content", f"polygon:{str(poly)[:40]}",
                          ["eval", "--results", "res.json", "--ann", str(c["ann"]), "--iou-type", "segm"], EITHER, [],
                          write("res.json", recs)))
    # 4. metrics files for the reports
    metrics = json.loads(c["metrics_ckpt"].read_text())
    mutations = [
        lambda d: d.update(modes={}), lambda d: d.update(modes=[]), lambda d: d.update(schema="mec.metrics/9"),
        lambda d: d.update(iou_thresholds=[0.5]), lambda d: d["modes"].update(stagex=d["modes"]["stage1"]),
        lambda d: d["modes"]["dynamic_ga"]["segm"]["AP_per_iou"].update(APr=[0.1]),
        lambda d: d["modes"]["dynamic_ga"]["segm"].update(AP="x"), lambda d: d["run"].update(num_stages="3"),
        lambda d: d["modes"]["dynamic_ga"].update(stage_weights={"stages": 0}),
        lambda d: d["modes"]["dynamic_ga"]["segm"]["errors"].update(groupings={}),
        lambda d: d["modes"]["dynamic_ga"]["segm"]["calibration"].update(bins=-1),
        lambda d: d.update(groups={"names": "rare"}), lambda d: d["modes"].pop("stage1"),
        lambda d: d["modes"]["stage2"].pop("segm"), lambda d: d.update(recipe=None, run=None),
        lambda d: d["modes"]["dynamic_ga"]["segm"].update(AP=float("nan")),
        lambda d: d["modes"]["dynamic_ga"]["segm"].update(APr=-5), lambda d: d.pop("schema"),
    ]
    reports = [["ablation", "M"], ["compare", "M", "M"], ["stage-count", "M"], ["stages", "M", "--out", "s.png"],
               ["lambda", "M", "--out", "l.png"], ["iou-profile", "M", "--out", "p.png"],
               ["errors", "M", "--out", "e.png"], ["calibration", "M", "--out", "c.png"],
               ["weights", "M", "--out", "w.png"]]
    for k, mutate in enumerate(mutations):
        for rep in rnd.sample(reports, 3):
            doc = copy.deepcopy(metrics)
            mutate(doc)
            argv = ["report"] + [("m.json" if a == "M" else a) for a in rep]
            cases.append(Case("content", f"metrics:{rep[0]}:{k}", argv, EITHER,
                              ["s.png", "s.svg", "l.png", "l.svg", "p.png", "p.svg", "e.png", "e.svg", "c.png",
                               "c.svg", "w.png", "w.svg"], write("m.json", doc)))
    # 5. groups files
    groups = json.loads(c["groups"].read_text())
    gmut = [lambda d: d.update(bins=[100, 10]), lambda d: d.update(bins=[]), lambda d: d.update(category_group={}),
            lambda d: d["category_group"].update({"1": 9}), lambda d: d.update(groups=d["groups"][:1]),
            lambda d: d.update(schema="x"), lambda d: d["category_group"].pop("1"),
            lambda d: d.update(bins=[10, 100, 500])]
    for k, mutate in enumerate(gmut):
        doc = copy.deepcopy(groups)
        mutate(doc)
        for argv in (["eval", "--results", str(c["dets_box"]), "--ann", str(c["ann"]), "--groups", "g.json"],
                     ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]), "--groups", "g.json",
                      "--dry-run"]):
            cases.append(Case("content", f"groups:{argv[0]}:{k}", argv, EITHER, [], write("g.json", doc)))
    return cases


def checkpoint_cases(c, rnd) -> List[Case]:
    import torch

    real = c["ckpt"].read_bytes()
    kinds: Dict[str, Callable[[Path], None]] = {}

    def saved(obj):
        return lambda p: torch.save(obj, p)

    kinds.update({
        "random": lambda p: p.write_bytes(os.urandom(5000)),
        "state_dict_5": saved({"state_dict": 5}), "list": saved([1, 2]), "empty_dict": saved({}),
        "strings": saved({"state_dict": {"w": "x"}}), "meta_only": saved({"meta": {"epoch": 1}}),
        "tensor": saved(torch.zeros(3)), "none": saved(None),
        "other_model": saved({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "meta": {}}),
        "wrong_shape": lambda p: torch.save({"state_dict": {k: torch.zeros(1) for k in
                                                            list(torch.load(c["ckpt"], weights_only=False)
                                                                 ["state_dict"])[:3]}}, p),
        "appended": lambda p: p.write_bytes(real + os.urandom(100)),  # torch may still read it: either is fine
        "pickle_os_system": lambda p: p.write_bytes(b"cos\nsystem\n(S'echo pwned > pwned.txt'\ntR."),
    })
    for cut in sorted(rnd.sample(range(1, len(real)), 6)):
        kinds[f"truncated_{cut}"] = lambda p, cut=cut: p.write_bytes(real[:cut])
    cases = []
    for kind, make in kinds.items():
        for reader in ("eval-checkpoint", "train-pretrained", "train-resume"):
            def setup(d, make=make):
                make(d / "in.pth")

            def no_pwned(d, res):
                return "a pickle ran code" if (d / "pwned.txt").exists() else None
            # pretrained weights are checked as a checkpoint; whether they fit the backbone, only mmengine's loader
            # says (with warnings) once training runs, which --dry-run does not
            lenient = kind == "appended" or (reader == "train-pretrained" and kind in ("other_model", "wrong_shape"))
            cases.append(Case("checkpoints", f"{reader}:{kind}", READERS[reader](c, "in.pth"),
                              EITHER if lenient else ERROR, ["w"], setup, then=no_pwned, timeout=900))
    cases.append(Case("checkpoints", "eval-checkpoint:real", READERS["eval-checkpoint"](c, str(c["ckpt"])), OK,
                      timeout=900))
    cases.append(Case("checkpoints", "train-resume:real", READERS["train-resume"](c, str(c["ckpt"])), OK, ["w"],
                      timeout=300))
    return cases


OPTION_VALUES = {
    "int": ["0", "-1", "1", "2", "99999999999999999999", "1.5", "nan", "", "x", "1e3", "-0", " 3"],
    "float": ["0", "-1", "nan", "inf", "-inf", "1e309", "1e-320", "0.5", "1", "", "x", "0x10"],
    "str": ["", " ", "nosuch", "a,,b", ",", "\u00e9", "x" * 500, "../../etc/passwd", "--", "-1", "None"],
}
OPTIONS = {  # command -> (base argv, {option: kind})
    "synth": (["synth", "--train-images", "2", "--val-images", "2", "--image-size", "64", "--out", "s"],
              {"--seed": "int", "--num-classes": "int", "--train-images": "int", "--val-images": "int",
               "--image-size": "int"}),
    "groups": (["groups", "TRAIN", "--out", "g.json"], {"--count": "str", "--bins": "str", "--profile": "str"}),
    "build-coco-lt": (["build-coco-lt", "--coco-ann", "COCO", "--out", "lt.json"],
                      {"--profile": "str", "--align": "str", "--keep-top": "int", "--seed": "int"}),
    "eval-results": (["eval", "--results", "DETS", "--ann", "ANN", "--out", "m.json"],
                     {"--iou-type": "str", "--protocol": "str", "--boundary-dilation": "float",
                      "--dets-per-class": "int", "--tau": "float", "--max-images": "int", "--modes": "str",
                      "--group-align": "str", "--gpus": "int"}),
    "eval-checkpoint": (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--data-root", "DATA", "--max-images",
                         "2"], {"--modes": "str", "--group-align": "str", "--tau": "float", "--gpus": "int",
                                "--procs": "int", "--iou-type": "str", "--protocol": "str", "--dataset": "str"}),
    "train": (["train", "--recipe", "tiny", "--gpus", "0", "--data-root", "DATA", "--dry-run"],
              {"--recipe": "str", "--dataset": "str", "--schedule": "str", "--gpus": "int", "--procs": "int",
               "--nodes": "int", "--node-rank": "int", "--master-port": "int", "--max-iters": "int", "--seed": "int",
               "--cfg-options": "str", "--cpus-per-task": "int", "--data-root": "str"}),
    "report-ablation": (["report", "ablation", "MCK"], {"--format": "str", "--grouping": "str", "--reference": "str",
                                                        "--baseline-mode": "str", "--modes": "str", "--label": "str"}),
    "report-stages": (["report", "stages", "MCK", "--out", "s.png"], {"--iou-type": "str", "--grouping": "str",
                                                                       "--baseline": "str"}),
    "report-errors": (["report", "errors", "M", "--out", "e.png"], {"--mode": "str", "--iou-type": "str",
                                                                     "--grouping": "str"}),
    "report-calibration": (["report", "calibration", "M", "--out", "c.png"], {"--modes": "str", "--iou-type": "str"}),
    "report-distribution": (["report", "distribution", "lvis_v1", "--out", "d.png"], {"--bins": "str"}),
    "demo": (["demo", "--out", "DEMOFILE"], {"--iters": "int", "--train-images": "int", "--val-images": "int"}),
    "recipes-show": (["recipes", "show", "tiny"], {"--dataset": "str", "--schedule": "str"}),
}
CFG_OPTIONS = ["model.nosuch.deep.key=1", "nosuch=1", "=1", "a", "model=1", "model.roi_head.num_stages='x'",
               "train_cfg.max_iters=2.5", "param_scheduler.9.end=1", "log_level.x=1", "log_level=WARNING",
               "default_hooks.checkpoint.interval=4", "model.backbone.depth=7"]


def option_cases(c, rnd, n: int) -> List[Case]:
    subst = {"TRAIN": str(c["train_ann"]), "COCO": str(c["coco"]), "DETS": str(c["dets_box"]), "ANN": str(c["ann"]),
             "CKPT": str(c["ckpt"]), "DATA": str(c["data"]), "M": str(c["metrics"]), "MCK": str(c["metrics_ckpt"]),
             "DEMOFILE": "demo_is_a_file"}
    cases = []
    combos = [(cmd, opt, v) for cmd, (_, opts) in OPTIONS.items() for opt, kind in opts.items()
              for v in OPTION_VALUES[kind]]
    for cmd, opt, value in rnd.sample(combos, min(n, len(combos))):
        base, _ = OPTIONS[cmd]
        argv = [subst.get(a, a) for a in base] + [opt, value]
        setup = (lambda d: (d / "demo_is_a_file").write_text("x")) if cmd == "demo" else None
        slow = cmd in ("eval-checkpoint", "train") and "--dry-run" not in argv
        cases.append(Case("options", f"{cmd}:{opt}={value[:20]!r}", argv, EITHER,
                          ["s", "g.json", "lt.json", "lt.manifest.json", "m.json", "s.png", "s.svg", "e.png", "e.svg",
                           "c.png", "c.svg", "d.png", "d.svg", "demo_is_a_file"], setup,
                          timeout=900 if slow else 300))
    for value in CFG_OPTIONS:
        argv = ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]), "--work-dir", "w",
                "--max-iters", "1", "--cfg-options", value]
        valid = value in ("log_level=WARNING", "default_hooks.checkpoint.interval=4")

        def untouched(d, res, valid=valid):
            if res["rc"] != 0 and (d / "w").exists():
                return "a failed start left the work dir behind"
            return None
        cases.append(Case("options", f"train:--cfg-options {value}", argv, OK if valid else ERROR, ["w"],
                          then=untouched, timeout=900, allow_log=value == "model.backbone.depth=7"))
    for argv, why in ((["eval", "--results", str(c["dets_box"]), "--ann", str(c["ann"]), "--tau", "1"], "no ensembles"),
                      (["eval", "--results", str(c["dets_box"]), "--ann", str(c["ann"]), "--max-images", "0"], "count"),
                      (["groups", "--profile", "lvis_v1", "--bins", "10,,100", "--out", "g.json"], "empty bin"),
                      (["report", "errors", str(c["metrics"]), "--mode", "nosuch", "--out", "e.png"], "mode"),
                      (["report", "errors", str(c["metrics"]), "--csv", "x.png", "--out", "x.png"], "same file"),
                      (["synth", "--image-size", "1099511627776", "--out", "s"], "size")):
        cases.append(Case("options", f"refused:{why}", argv, ERROR, []))
    return cases


def signal_cases(c, rnd, n: int) -> List[Case]:
    commands = {  # name: (argv, outputs, how long it runs, seconds)
        "synth": (["synth", "--train-images", "300", "--val-images", "60", "--image-size", "128", "--out", "s"],
                  ["s"], 8),
        "build-coco-lt": (["build-coco-lt", "--coco-ann", str(c["coco_big"]), "--out", "lt.json"],
                          ["lt.json", "lt.manifest.json"], 10),
        "eval-boundary": (["eval", "--results", str(c["dets_segm"]), "--ann", str(c["ann"]), "--iou-type",
                           "segm,boundary", "--analysis", "--out", "m.json"], ["m.json"], 5),
        "eval-checkpoint": (["eval", "--checkpoint", str(c["ckpt"]), "--recipe", "tiny", "--data-root",
                             str(c["data"]), "--per-stage", "--max-images", "3", "--out", "m.json"], ["m.json"], 40),
        "train": (["train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(c["data"]), "--work-dir", "w",
                   "--max-iters", "6", "--cfg-options", "default_hooks.checkpoint.interval=2"], ["w"], 40),
        "report-stages": (["report", "stages", str(c["metrics_ckpt"]), "--out", "s.png"], ["s.png", "s.svg"], 4),
        "groups-lvis": (["groups", str(c["coco_big"]), "--out", "g.json"], ["g.json"], 4),
    }
    cases = []
    names = list(commands)
    for k in range(n):
        name = names[k % len(names)]
        argv, outputs, seconds = commands[name]
        sig = rnd.choice([signal.SIGINT, signal.SIGTERM])
        delay = round(rnd.uniform(0.5, seconds), 2)
        cases.append(Case("signals", f"{name}:{signal.Signals(sig).name}@{delay}s", argv, EITHER, outputs,
                          signal=(sig, delay), timeout=900, then=_outputs_complete))
    return cases


def _outputs_complete(d: Path, res: dict) -> Optional[str]:
    """After a signal: every output is absent or complete."""
    for p in d.rglob("*"):
        if p.is_file() and p.suffix == ".json" and p.stat().st_size:
            try:
                json.loads(p.read_bytes())
            except ValueError:
                return f"{p.relative_to(d)} is not complete JSON"
        if p.is_file() and p.suffix == ".png" and not p.read_bytes().startswith(b"\x89PNG"):
            return f"{p.relative_to(d)} is not a complete PNG"
    return None


def resume_cases(c, rnd, n: int) -> List[Case]:
    """SIGKILL at a random moment of a run that saves a checkpoint every iteration, then --resume must finish it
    (or refuse in one line), never start over while a complete checkpoint exists."""
    cases = []
    for k in range(n):
        delay = round(rnd.uniform(4, 25), 1)
        argv = ["train", "--recipe", "tiny_baseline", "--gpus", "0", "--data-root", str(c["data"]), "--work-dir", "w",
                "--max-iters", "8", "--seed", "0", "--cfg-options", "default_hooks.checkpoint.interval=1",
                "log_level=WARNING", "--resume"]
        cases.append(Case("resume", f"kill@{delay}s then --resume", argv, OK, ["w"], signal=("kill-then-resume", delay),
                          timeout=1800, then=_resumed))
    return cases


def _resumed(d: Path, res: dict) -> Optional[str]:
    import torch

    from mec_cli.compat import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    last = d / "w" / "iter_8.pth"
    if not last.exists():
        return "the resumed run did not reach iteration 8"
    if torch.load(last, map_location="cpu")["meta"]["iter"] != 8:
        return "iter_8.pth does not hold iteration 8"
    before = res.get("checkpoints_before_resume") or []
    if before and "holds no checkpoint yet" in res["out"]:
        return f"resume started over although {before} were on disk"
    return None


# ---- running and judging -------------------------------------------------------------------------------------------
def snapshot(*folders: Path) -> Dict[str, tuple]:
    out = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder, followlinks=False):
            for name in dirs + files:
                p = Path(root) / name
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                key = (stat.S_IFMT(st.st_mode), st.st_size, st.st_ino)
                if stat.S_ISREG(st.st_mode) and st.st_size < (64 << 20):
                    key += (hashlib.sha256(p.read_bytes()).hexdigest(),)
                elif stat.S_ISLNK(st.st_mode):
                    key += (os.readlink(p),)
                out[str(p)] = key
    return out


def _read_fifo(path: Path, sink: list) -> None:
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            sink.append(f.read())


def run_case(case: Case, folder: Path, common: Path) -> dict:
    folder.mkdir(parents=True)
    if case.setup:
        case.setup(folder)
    before = snapshot(folder)
    specials = {p: k[0] for p, k in before.items() if k[0] not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)}
    got: list = []
    if case.reader:
        threading.Thread(target=_read_fifo, args=(folder / case.reader, got), daemon=True).start()
    t0 = time.time()
    res = {"cls": case.cls, "name": case.name, "argv": case.argv}
    if case.signal and case.signal[0] == "kill-then-resume":
        proc = subprocess.Popen(MEC + case.argv, cwd=folder, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(case.signal[1])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        res["checkpoints_before_resume"] = sorted(p.name for p in (folder / "w").glob("iter_*.pth")) \
            if (folder / "w").exists() else []
        before = snapshot(folder)
    proc = subprocess.Popen(MEC + case.argv, cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    timer = None
    if case.signal and case.signal[0] != "kill-then-resume":
        timer = threading.Timer(case.signal[1], lambda: proc.poll() is None and proc.send_signal(case.signal[0]))
        timer.start()
    try:
        out, err = proc.communicate(timeout=case.timeout)
        res["rc"] = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        res["rc"] = "timeout"
    if timer:
        timer.cancel()
    res["wall_s"] = round(time.time() - t0, 2)
    res["out"] = (out.decode(errors="replace") + err.decode(errors="replace"))[-4000:]
    res["failures"] = judge(case, folder, before, specials, res, got)
    return res


def judge(case: Case, folder: Path, before, specials, res, got) -> List[str]:
    fails = []
    rc, text = res["rc"], res["out"]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if rc == "timeout":
        return [f"hung (no end within {case.timeout:.0f} s)"]
    if "Traceback" in text or rc not in (0, 2, 130, 143):
        fails.append(f"exit {rc} with a traceback or an unexpected code: {text[-600:]!r}")
    if rc == 2 and not case.allow_log and (len(lines) != 1 or not lines[0].startswith("error:")):
        fails.append(f"exit 2 without exactly one error line: {lines[-5:]!r}")
    if rc == 2 and case.allow_log and not (lines and lines[-1].startswith("error:")):
        fails.append(f"exit 2 without an error line last: {lines[-3:]!r}")
    if rc in (130, 143) and not case.signal:
        fails.append(f"exit {rc} without a signal")
    if case.expect == ERROR and rc == 0:
        fails.append("accepted input that must be refused")
    if case.expect == OK and rc != 0 and not case.signal:
        fails.append(f"refused a valid case: {lines[-1:]!r}")
    after = snapshot(folder)
    allowed = [str(folder / o) for o in case.outputs]
    for p, key in before.items():
        if any(p == a or p.startswith(a + os.sep) for a in allowed):
            continue
        if after.get(p) != key:
            fails.append(f"touched {Path(p).relative_to(folder)}, which is not an output")
    for p, kind in specials.items():
        if p not in after or after[p][0] != kind:
            fails.append(f"replaced the special file {Path(p).relative_to(folder)}")
    temps = [p for p in after if re.search(r"/\.[^/]*\.tmp[^/]*$", p) and p not in before]
    if temps:
        fails.append(f"left temporary files: {[Path(p).name for p in temps][:3]}")
    if rc == 0 and case.reader and not (got and got[0]):
        fails.append("nothing reached the FIFO's reader")
    if rc == 0:
        for o in case.outputs:  # a file a command says it wrote is complete
            p = folder / o
            if p.is_file() and not p.is_symlink() and p.suffix == ".json" and str(p) not in before:
                try:
                    json.loads(p.read_bytes())
                except ValueError:
                    fails.append(f"{o} is not complete JSON")
    if case.then:
        extra = case.then(folder, res)
        if extra:
            fails.append(extra)
    for dev in ("/dev/null", "/dev/full", "/dev/zero"):
        if not stat.S_ISCHR(os.stat(dev).st_mode):
            fails.append(f"THE MACHINE'S {dev} IS NO LONGER A DEVICE")
    return fails


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=700, help="about how many cases (the classes are scaled to it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="workspace (default: a temporary folder)")
    ap.add_argument("--only", default=None, help="run only the classes named (comma-separated)")
    ap.add_argument("--out", type=Path, default=None, help="write every case's result here (JSON)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the device cases make private device nodes with mknod")
    work = args.work or Path(tempfile.mkdtemp(prefix="mec-fuzz-"))
    (work / "common").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    common = build_common(work / "common")
    print(f"shared inputs ready in {time.time() - t0:.0f} s under {work}", flush=True)
    rnd = random.Random(args.seed)
    scale = args.cases / 700
    cases = (output_cases(common, rnd) + input_cases(common, rnd) + content_cases(common, rnd)
             + checkpoint_cases(common, rnd) + option_cases(common, rnd, int(150 * scale))
             + signal_cases(common, rnd, int(42 * scale)) + resume_cases(common, rnd, max(2, int(6 * scale))))
    if args.only:
        cases = [cs for cs in cases if cs.cls in args.only.split(",")]
    print(f"{len(cases)} cases", flush=True)
    shutil.rmtree(work / "cases", ignore_errors=True)
    common_before = snapshot(work / "common")
    results = []
    lock = threading.Lock()

    def one(item):
        k, case = item
        r = run_case(case, work / "cases" / f"{k:04d}", work / "common")
        with lock:
            results.append(r)
            status = "ok" if not r["failures"] else "FAIL " + "; ".join(r["failures"])[:300]
            print(f"[{len(results)}/{len(cases)}] {case.cls} {case.name!r}: rc {r['rc']}, {r['wall_s']} s: {status}",
                  flush=True)
        return r

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, enumerate(cases)))
    changed = [p for p, k in common_before.items() if snapshot(work / "common").get(p) != k]
    failed = [r for r in results if r["failures"]]
    by_class: Dict[str, List[int]] = {}
    for r in results:
        by_class.setdefault(r["cls"], [0, 0])
        by_class[r["cls"]][0] += 1
        by_class[r["cls"]][1] += not r["failures"]
    summary = {"cases": len(results), "passed": len(results) - len(failed),
               "pass_rate": round((len(results) - len(failed)) / max(1, len(results)), 4), "by_class": by_class,
               "shared_inputs_changed": changed, "wall_s": round(time.time() - t0, 1), "seed": args.seed,
               "failures": [{k: r[k] for k in ("cls", "name", "argv", "rc", "failures")} for r in failed]}
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=1))
    for r in failed:
        print(f"FAILED {r['cls']} {r['name']!r}: {'; '.join(r['failures'])[:500]}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**summary, "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
