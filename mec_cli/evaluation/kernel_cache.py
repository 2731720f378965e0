"""Where the numba kernels of the evaluator are cached, and whether they are compiled for this machine.

Standard library only (``make setup`` asks :func:`ready` before importing numba), with one exception: the CPU's
identity comes from llvmlite, as numba's own cache key takes it.

numba's own cache sits in ``__pycache__`` beside each source file (or, where that is read-only, under
``~/.cache/numba`` keyed by the source folder's absolute path), so a clone, a copy, a new venv or a read-only
install compiles everything again on its first run (a minute or more). Ours is one folder per version of the
kernels, wherever the package lies:

    $NUMBA_CACHE_DIR/mec/<key>/    when NUMBA_CACHE_DIR is set
    $XDG_CACHE_HOME/mec/numba/<key>/    else (XDG_CACHE_HOME defaults to ~/.cache)

``<key>`` names the Python, the numba version and a hash of the contents of every module of
``mec_cli/evaluation`` that defines kernels (together: numba does not notice when a kernel that another file's
kernel calls changes). Inside, numba's own index still keys each compiled kernel by its signature and the CPU.
``mec_cli.evaluation.numba_setup`` points numba there; ``mec_cli.evaluation.warmup`` (run by ``make setup``)
compiles every kernel signature ``mec eval`` uses and then writes :func:`marker`, which says "compiled for this
CPU". When the folder cannot be written, numba's own places are used instead.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
KERNEL_FILE = re.compile(rb"^@(njit|jit|intrinsic)\b", re.M)  # a module that defines numba code
# plain-Python rules of other folders that the evaluation compiles with numba (mec_cli.evaluation.masks compiles
# data/masks.py's RLE reader): they belong to the kernels' version and to their cache folder
SHARED_SOURCES = ("data/masks.py",)
STALE_DAYS = 30  # the warm-up removes key folders unused this long
KEY = re.compile(r"^[a-z0-9_]+-[0-9]+-numba[0-9A-Za-z.+_-]+-[0-9a-f]{16}$")  # what cache_key makes


def kernel_files(folder: Path = HERE) -> List[Path]:
    """The modules of ``folder`` that define numba kernels, and numba_setup (it sets numba up for them), then the
    :data:`SHARED_SOURCES` beside ``folder`` that exist."""
    files = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "numba_setup.py" or KERNEL_FILE.search(path.read_bytes()):
            files.append(path)
    return files + [p for p in shared_sources(folder) if p.is_file()]


def shared_sources(folder: Path = HERE) -> List[Path]:
    """The files of :data:`SHARED_SOURCES`, for the kernels of ``folder`` (the package is its parent)."""
    return [folder.parent / rel for rel in SHARED_SOURCES]


def _numba_version() -> str:
    mod = sys.modules.get("numba")
    if mod is not None and hasattr(mod, "__version__"):
        return mod.__version__
    try:
        return version("numba")
    except PackageNotFoundError:
        return "none"


@lru_cache(maxsize=None)
def cache_key(folder: Path = HERE) -> str:
    """``<python>-numba<version>-<hash>``: the hash of the kernel modules' names and contents."""
    h = hashlib.sha256()
    for path in kernel_files(folder):
        data = path.read_bytes()
        h.update(path.name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return f"{sys.implementation.cache_tag}-numba{_numba_version()}-{h.hexdigest()[:16]}"


def cache_root(env: Optional[Dict[str, str]] = None) -> Path:
    """The folder that holds one key folder per version of the kernels."""
    env = os.environ if env is None else env
    if env.get("NUMBA_CACHE_DIR"):
        return Path(env["NUMBA_CACHE_DIR"]).expanduser() / "mec"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mec" / "numba"


def cache_dir() -> Path:
    """This version's cache folder (it may not exist yet)."""
    return cache_root() / cache_key()


@lru_cache(maxsize=None)
def writable(path: Path) -> bool:
    """Whether ``path`` exists or can be made, and a file can be created in it (asked once per process)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        os.utime(path)  # in use: the warm-up's clean-up keeps it
        return True
    except OSError:
        return False


@lru_cache(maxsize=None)
def cpu_id() -> str:
    """What numba's cache keys compiled code by (the target triple, the CPU's name and features; numba's
    NUMBA_CPU_NAME / NUMBA_CPU_FEATURES override them, here as there), hashed."""
    import llvmlite.binding as ll  # noqa: PLC0415  (80 ms: only where the answer is needed)

    name = os.environ.get("NUMBA_CPU_NAME") or ll.get_host_cpu_name()
    features = os.environ.get("NUMBA_CPU_FEATURES") or ll.get_host_cpu_features().flatten()
    digest = hashlib.sha256(f"{ll.get_process_triple()}|{name}|{features}".encode()).hexdigest()[:12]
    return f"{name}-{digest}"


def marker() -> Path:
    """The file the warm-up writes once every kernel signature is compiled into :func:`cache_dir` for this CPU."""
    return cache_dir() / f"ready-{cpu_id()}.json"


def ready() -> bool:
    """Whether the warm-up has compiled the kernels of this version for this CPU."""
    return marker().is_file()


def prune(days: float = STALE_DAYS) -> List[Path]:
    """Remove the key folders beside this one that no process has used for ``days``; returns them."""
    root, keep = cache_root(), cache_key()
    removed = []
    if not root.is_dir():
        return removed
    for path in root.iterdir():
        try:
            stale = (path.is_dir() and KEY.match(path.name) and path.name != keep
                     and time.time() - path.stat().st_mtime > days * 86400)
        except OSError:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
