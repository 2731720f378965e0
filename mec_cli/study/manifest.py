"""The study directory's one manifest, ``DIR/study.json`` (schema ``mec.study/1``).

It holds the study (its runs and reports, as resolved), the options every run got, and for every run: its
settings, the `mec train` and `mec eval` commands it is equivalent to, its resolved config, and for each stage
(``train``, ``eval``) the status, attempts, start and end times, wall time, the checkpoint or metrics file and the
last error. Paths inside are relative to the study directory, so that the directory can be moved.

Whoever changes it (the study command, a run's process, a Slurm array task on another node) does so under an
exclusive lock on ``DIR/.study.lock`` and writes it atomically: a reader never sees half a file, and two writers
never lose each other's change. A stage being run holds a lock of its own on ``runs/<name>/.busy`` for as long as it
runs, so that a stage whose process has gone (killed, or its machine lost) is told from one still running.

Stage statuses: ``pending`` (never started), ``running``, ``interrupted`` (stopped by a signal, with a checkpoint:
the next run resumes it), ``failed`` (retried only with ``retry_failed``), ``done``.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from mec_cli.errors import MecError
from mec_cli.io import check_input, read_json, write_json_atomic

SCHEMA = "mec.study/1"
MANIFEST = "study.json"
LOCK = ".study.lock"
BUSY = ".busy"
STAGES = ("train", "eval")
STATUSES = ("pending", "running", "interrupted", "failed", "done")


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def manifest_path(study_dir) -> Path:
    return Path(study_dir) / MANIFEST


@contextlib.contextmanager
def locked(study_dir) -> Iterator[None]:
    """Hold the manifest's lock (exclusive, waiting for it) for the block."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    with open(study_dir / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest(study_dir) -> Dict[str, Any]:
    """The manifest of ``study_dir``; one MecError when there is none or it is not a study manifest."""
    path = manifest_path(study_dir)
    if not path.is_file():
        if not Path(study_dir).is_dir():
            raise MecError("is not a study directory" if os.path.lexists(study_dir) else "no such study directory",
                           study_dir)
        if os.path.lexists(path):  # a FIFO, a device, a folder: never opened
            check_input(path, "study manifest")
        raise MecError(f"no {MANIFEST} here: not a study directory (make one with `mec study run SPEC --out DIR`)",
                       study_dir)
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("runs"), list):
        raise MecError(f"not a study manifest (schema {SCHEMA})", path)
    check_manifest(doc, path)
    return doc


def _inside(rel: str) -> bool:
    """Whether the relative path ``rel`` stays inside the study directory."""
    p = Path(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


def check_manifest(doc: Dict[str, Any], path) -> None:
    """The manifest's fields have the types every reader expects (the study, its options, each run and stage), and
    every path in it stays inside the study directory: one MecError naming the first field that does not, so that a
    damaged or hand-edited manifest is one line, never a traceback (or a write outside the directory)."""
    def bad(where: str, want: str):
        raise MecError(f"not a valid study manifest: {where} must be {want}", path)

    def is_text(v) -> bool:
        return isinstance(v, str) and bool(v)

    study = doc.get("study")
    if not isinstance(study, dict):
        bad("study", "an object")
    for key in ("name", "description"):
        if not isinstance(study.get(key), str):
            bad(f"study.{key}", "a string")
    if not isinstance(study.get("seeds"), list) or not all(type(s) is int for s in study["seeds"]):
        bad("study.seeds", "a list of integers")
    reports = study.get("reports", [])
    if not isinstance(reports, list) or not all(
            isinstance(r, dict) and is_text(r.get("kind")) and isinstance(r.get("labels"), list)
            and all(isinstance(label, str) for label in r["labels"]) for r in reports):
        bad("study.reports", "a list of objects with a kind and a list of labels")
    if not isinstance(doc.get("options"), dict):
        bad("options", "an object")
    for key in ("report", "slurm"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            bad(key, "an object or null")
    report = doc.get("report") or {}
    if report.get("index") is not None and not (isinstance(report["index"], str) and _inside(report["index"])):
        bad("report.index", "a path inside the study directory")
    names = set()
    for i, run in enumerate(doc["runs"]):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            bad(where, "an object")
        for key in ("name", "label", "recipe", "work_dir"):
            if not is_text(run.get(key)):
                bad(f"{where}.{key}", "a non-empty string")
        if run["name"] in names:
            bad(f"{where}.name", f"unique ({run['name']!r} is named twice)")
        names.add(run["name"])
        if not _inside(run["work_dir"]):
            bad(f"{where}.work_dir", "a folder inside the study directory")
        if type(run.get("seed")) is not int:
            bad(f"{where}.seed", "an integer")
        for key in ("settings", "key"):
            if not isinstance(run.get(key, {}), dict):
                bad(f"{where}.{key}", "an object")
        for stage in STAGES:
            entry = run.get(stage)
            if not isinstance(entry, dict):
                bad(f"{where}.{stage}", "an object")
            if entry.get("status") not in STATUSES:
                bad(f"{where}.{stage}.status", f"one of {', '.join(STATUSES)}")
            if type(entry.get("attempts", 0)) is not int:
                bad(f"{where}.{stage}.attempts", "an integer")
            wall = entry.get("wall_s")
            if wall is not None and (type(wall) not in (int, float) or not math.isfinite(wall) or wall < 0):
                bad(f"{where}.{stage}.wall_s", "a number of seconds")
            for key in ("command", "started", "ended", "error", "checkpoint", "metrics"):
                if entry.get(key) is not None and not isinstance(entry[key], str):
                    bad(f"{where}.{stage}.{key}", "a string or null")
            for key in ("checkpoint", "metrics"):
                if entry.get(key) is not None and not _inside(entry[key]):
                    bad(f"{where}.{stage}.{key}", "a path inside the study directory")


def write_manifest(study_dir, doc: Dict[str, Any]) -> None:
    doc["updated"] = now()
    write_json_atomic(manifest_path(study_dir), doc)


def update(study_dir, change: Callable[[Dict[str, Any]], Any]) -> Any:
    """Read the manifest, apply ``change`` to it and write it back, all under the lock; returns what ``change``
    returned."""
    with locked(study_dir):
        doc = read_manifest(study_dir)
        result = change(doc)
        write_manifest(study_dir, doc)
        return result


def find_run(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    for run in doc["runs"]:
        if run["name"] == name:
            return run
    raise MecError(f"the study has no run {name!r} (its runs: {', '.join(r['name'] for r in doc['runs'])})")


def set_stage(study_dir, name: str, stage: str, **fields) -> Dict[str, Any]:
    """Update one stage of one run (``fields`` replace the stage's fields); returns the stage as written."""
    def change(doc):
        entry = find_run(doc, name)[stage]
        entry.update(fields)
        return dict(entry)

    return update(study_dir, change)


def new_stage(command: str) -> Dict[str, Any]:
    return {"status": "pending", "command": command, "attempts": 0, "started": None, "ended": None, "wall_s": 0.0,
            "error": None}


# ---- the lock a running stage holds ---------------------------------------------------------------------------
def busy_path(study_dir, work_dir: str) -> Path:
    return Path(study_dir) / work_dir / BUSY


@contextlib.contextmanager
def hold_busy(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock while a stage runs; a MecError when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            who = f.read().strip() or "another process"
            raise MecError(f"is being run by {who}: wait for it, or stop that process", path.parent) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {os.uname().nodename}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def is_busy(path: Path) -> bool:
    """Whether a process holds ``path``'s lock now (a stage is running there)."""
    if not path.is_file():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def effective_status(study_dir, run: Dict[str, Any], stage: str) -> str:
    """A stage's status as it stands: 'running' whose process is gone (killed without a word, its node lost) reads
    'interrupted', which the next run resumes."""
    status = run[stage]["status"]
    if status == "running" and not is_busy(busy_path(study_dir, run["work_dir"])):
        return "interrupted"
    return status


def counts(study_dir, doc: Dict[str, Any]) -> Dict[str, Dict[str, int]]:
    out: Dict[str, Dict[str, int]] = {s: {k: 0 for k in STATUSES} for s in STAGES}
    for run in doc["runs"]:
        for stage in STAGES:
            out[stage][effective_status(study_dir, run, stage)] += 1
    return out


def run_names(doc: Dict[str, Any], names: Optional[List[str]] = None) -> List[str]:
    return [r["name"] for r in doc["runs"] if names is None or r["name"] in names]
