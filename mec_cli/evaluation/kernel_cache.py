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

The ahead-of-time build of the same kernels (:mod:`mec_cli.evaluation.aot`, made by the warm-up) lies beside them,
one folder per Python, version of the kernels and CPU (:func:`aot_dir`): finding it costs a hash of the kernel
modules and a read of ``/proc/cpuinfo``, no numba and no llvmlite.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
KERNEL_FILE = re.compile(rb"^@(njit|jit|intrinsic)\b", re.M)  # a module that defines numba code
# plain-Python rules of other folders that the evaluation compiles with numba (mec_cli.evaluation.masks compiles
# data/masks.py's RLE reader): they belong to the kernels' version and to their cache folder
SHARED_SOURCES = ("data/masks.py",)
STALE_DAYS = 30  # the warm-up removes key folders unused this long
KEY = re.compile(r"^[a-z0-9_]+-[0-9]+-numba[0-9A-Za-z.+_-]+-[0-9a-f]{16}$")  # what cache_key makes
AOT_KEY = re.compile(r"^[a-z0-9_]+-[0-9]+-[0-9a-f]{16}-[0-9a-f]{12}$")  # what aot_dir makes
ALWAYS = ("numba_setup.py", "compiled.py", "aot.py")  # they set numba up for the kernels or compile them
AOT_MANIFEST = "manifest.json"


def kernel_files(folder: Path = HERE) -> List[Path]:
    """The modules of ``folder`` that define numba kernels, and those that set numba up for them or compile them
    (:data:`ALWAYS`), then the :data:`SHARED_SOURCES` beside ``folder`` that exist."""
    files = []
    for path in sorted(folder.glob("*.py")):
        if path.name in ALWAYS or KERNEL_FILE.search(path.read_bytes()):
            files.append(path)
    return files + [p for p in shared_sources(folder) if p.is_file()]


def shared_sources(folder: Path = HERE) -> List[Path]:
    """The files of :data:`SHARED_SOURCES`, for the kernels of ``folder`` (the package is its parent)."""
    return [folder.parent / rel for rel in SHARED_SOURCES]


def _numba_version() -> str:
    mod = sys.modules.get("numba")
    if mod is not None and hasattr(mod, "__version__"):
        return mod.__version__
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415  (20 ms: not on the AOT path)

    try:
        return version("numba")
    except PackageNotFoundError:
        return "none"


@lru_cache(maxsize=None)
def kernels_hash(folder: Path = HERE) -> str:
    """The hash of the kernel modules' names and contents (16 hex digits)."""
    h = hashlib.sha256()
    for path in kernel_files(folder):
        data = path.read_bytes()
        h.update(path.name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def cache_key(folder: Path = HERE) -> str:
    """``<python>-numba<version>-<hash>``: the hash of the kernel modules' names and contents."""
    return f"{sys.implementation.cache_tag}-numba{_numba_version()}-{kernels_hash.__wrapped__(folder)}"


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


@lru_cache(maxsize=None)
def cpu_fingerprint() -> str:
    """This CPU's identity for the ahead-of-time build (compiled for its exact features), without llvmlite: the
    machine type and, on Linux, the first processor's vendor, family, model and feature flags in ``/proc/cpuinfo``
    (what the kernel, or a virtual machine, lets programs use). 12 hex digits."""
    text = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read(1 << 16).split("\n\n")[0]
        fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in first.splitlines()))
        text = "|".join(fields.get(k, "") for k in ("vendor_id", "cpu family", "model", "model name", "flags",
                                                     "Features", "CPU implementer", "CPU architecture", "CPU part"))
    except OSError:
        pass
    machine = os.uname().machine if hasattr(os, "uname") else sys.platform
    return hashlib.sha256(f"{machine}|{text}".encode()).hexdigest()[:12]


def aot_root(env: Optional[Dict[str, str]] = None) -> Path:
    """The folder that holds one ahead-of-time build per Python, version of the kernels and CPU."""
    return cache_root(env) / "aot"


def aot_dir() -> Path:
    """This Python's, kernels' and CPU's ahead-of-time build (it may not exist)."""
    return aot_root() / f"{sys.implementation.cache_tag}-{kernels_hash()}-{cpu_fingerprint()}"


def aot_ready() -> bool:
    """Whether the ahead-of-time build of this version of the kernels exists for this CPU."""
    return (aot_dir() / AOT_MANIFEST).is_file()


def marker() -> Path:
    """The file the warm-up writes once every kernel signature is compiled into :func:`cache_dir` for this CPU."""
    return cache_dir() / f"ready-{cpu_id()}.json"


def ready() -> bool:
    """Whether the warm-up has compiled the kernels of this version for this CPU: numba's cache, and the
    ahead-of-time build unless the warm-up found that it cannot be made here."""
    path = marker()
    if not path.is_file():
        return False
    if aot_ready():
        return True
    try:
        return json.loads(path.read_text()).get("aot", {}).get("built") is False
    except (OSError, ValueError, AttributeError):
        return False


def prune(days: float = STALE_DAYS) -> List[Path]:
    """Remove the key folders and ahead-of-time builds beside this one that no process has used for ``days``;
    returns them."""
    removed = []
    for root, keep, pattern in ((cache_root(), cache_key(), KEY), (aot_root(), aot_dir().name, AOT_KEY)):
        if not root.is_dir():
            continue
        for path in root.iterdir():
            try:
                stale = (path.is_dir() and pattern.match(path.name) and path.name != keep
                         and time.time() - path.stat().st_mtime > days * 86400)
            except OSError:
                continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
