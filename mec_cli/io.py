"""Small I/O helpers shared by every command: atomic writes, hashing, JSON loading."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

from mec_cli.errors import MecError

PathLike = Union[str, Path]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A failure therefore never leaves a half-written file and never replaces a good one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, obj: Any, indent: Union[int, None] = 2) -> Path:
    """Write ``obj`` as JSON atomically. ``indent=None`` writes compact JSON (large annotation files)."""
    sep = (",", ":") if indent is None else (",", ": ")
    return write_text_atomic(path, json.dumps(obj, indent=indent, separators=sep) + "\n")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: PathLike) -> Any:
    """Load a JSON file, turning a missing file or malformed JSON into a one-line :class:`MecError`."""
    path = Path(path)
    if not path.is_file():
        raise MecError("file not found", path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MecError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    except UnicodeDecodeError:
        raise MecError("not a UTF-8 JSON file", path) from None
