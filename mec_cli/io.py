"""Small I/O helpers shared by every command: atomic writes, hashing, JSON loading."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from mec_cli.errors import MecError

PathLike = Union[str, Path]


def _writable_dir(path: Path) -> None:
    """Make ``path``'s folder (and its parents), or say in one line why an output cannot go there."""
    if path.is_dir():
        raise MecError("is a directory, not a file to write", path)
    parent = path.parent
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise MecError(f"cannot write here: {p} is a file, not a folder", path)
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MecError(f"cannot create its folder ({e.strerror or e})", path) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MecError(f"cannot write in {parent}: permission denied", path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> Path:
    """An empty temporary file in ``path``'s folder, with the permissions a plain ``open(path, 'w')`` would give."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise MecError(f"cannot write here ({e.strerror or e})", path) from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs should be as readable as any other
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_paths(*paths: PathLike) -> Iterator[List[Path]]:
    """Yield a temporary path beside each of ``paths``; rename them all over their targets only if the block succeeds.

    Outputs that belong together (a dataset and its manifest, a figure's PNG and SVG) are thus committed together
    or not at all: a failure, an interrupt or a signal inside the block leaves every target as it was, and a
    failed rename puts back the targets already replaced. Temporary files never outlive the block.
    """
    targets = [Path(p) for p in paths]
    if len({os.path.abspath(p) for p in targets}) != len(targets):
        raise MecError(f"two outputs are the same file: {', '.join(str(p) for p in targets)}")
    for p in targets:
        _writable_dir(p)
    tmps: List[Path] = []
    try:
        for p in targets:
            tmps.append(_temp_beside(p))
        yield tmps
        try:
            _replace_all(tmps, targets)
        except OSError as e:
            raise MecError(f"cannot write ({e.strerror or e}); the previous outputs are unchanged",
                           getattr(e, "filename2", None) or targets[0]) from None
    finally:
        for t in tmps:
            if t.exists():
                t.unlink()


def _replace_all(tmps: List[Path], targets: List[Path]) -> None:
    """Rename every temporary file over its target; on any failure restore the targets already replaced."""
    backups: List[tuple] = []  # (target, backup or None when the target did not exist)
    try:
        for tmp, target in zip(tmps, targets):
            backup = None
            if len(targets) > 1 and target.exists():
                backup = _temp_beside(target)
                os.replace(target, backup)
            backups.append((target, backup))
            os.replace(tmp, target)
    except BaseException:
        for target, backup in reversed(backups):
            if backup is not None:
                os.replace(backup, target)
            elif target.exists():
                target.unlink()
        raise
    finally:
        for _, backup in backups:
            if backup is not None and backup.exists():
                backup.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A failure therefore never leaves a half-written file and never replaces a good one.
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


def check_outputs(outputs: Dict[str, Optional[PathLike]], inputs: Dict[str, Optional[PathLike]]) -> None:
    """Refuse outputs that would overwrite an input or each other, before any work starts.

    ``outputs`` and ``inputs`` map a role (the CLI passes its flag names) to a path; None entries are ignored.
    """
    seen: Dict[str, str] = {}
    for role, path in inputs.items():
        if path is not None and Path(path).exists():
            seen[os.path.realpath(path)] = f"the input {role}"
    for role, path in outputs.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise MecError(f"{role} would overwrite {seen[key]}; choose another output path", path)
        seen[key] = role
        _writable_dir(Path(path))


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj: Any, indent: Union[int, None] = 2) -> str:
    """``obj`` as JSON text; ``indent=None`` gives compact JSON (large annotation files)."""
    sep = (",", ":") if indent is None else (",", ": ")
    return json.dumps(obj, indent=indent, separators=sep) + "\n"


def write_json_atomic(path: PathLike, obj: Any, indent: Union[int, None] = 2) -> Path:
    """Write ``obj`` as JSON atomically. ``indent=None`` writes compact JSON (large annotation files)."""
    return write_text_atomic(path, json_text(obj, indent))


Writer = Callable[[Path], None]


def text_writer(text: str) -> Writer:
    return lambda tmp: tmp.write_text(text, encoding="utf-8")


def write_outputs(outputs: Dict[PathLike, Writer]) -> List[Path]:
    """Outputs that belong together, committed together or not at all.

    Each writer fills its temporary file (see :func:`atomic_paths`); only when every one has succeeded are
    they all renamed over their targets.
    """
    with atomic_paths(*outputs) as tmps:
        for tmp, writer, target in zip(tmps, outputs.values(), outputs):
            try:
                writer(tmp)
            except OSError as e:
                raise MecError(f"cannot write ({e.strerror or e}); the previous outputs are unchanged",
                               target) from None
    return [Path(p) for p in outputs]


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_json_bytes(path: PathLike) -> bytes:
    """The bytes of a JSON input file, or a one-line :class:`MecError` when it is missing, a folder or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise MecError("is a directory, not a JSON file", path)
    if not path.is_file():
        raise MecError("file not found", path)
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise MecError("is a directory, not a JSON file", path) from None
    except PermissionError:
        raise MecError("cannot read: permission denied", path) from None


def read_json(path: PathLike) -> Any:
    """Load a JSON file, turning a missing file or malformed JSON into a one-line :class:`MecError`."""
    raw = read_json_bytes(path)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise MecError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    except UnicodeDecodeError:
        raise MecError("not a UTF-8 JSON file", path) from None
    except RecursionError:
        raise MecError("JSON nested too deeply to read", path) from None
