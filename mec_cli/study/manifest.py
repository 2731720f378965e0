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
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from mec_cli.errors import MecError
from mec_cli.io import read_json, write_json_atomic

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
            raise MecError("no such study directory", study_dir)
        raise MecError(f"no {MANIFEST} here: not a study directory (make one with `mec study run SPEC --out DIR`)",
                       study_dir)
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("runs"), list):
        raise MecError(f"not a study manifest (schema {SCHEMA})", path)
    return doc


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
