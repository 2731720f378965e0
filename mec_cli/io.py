"""Small I/O helpers shared by every command: what a path names, reading inputs, atomic writes, hashing, JSON.

The rules every command follows, in one place:

* **Inputs** are read only from regular files (symlinks followed): a directory, a FIFO, a device or a socket is one
  :class:`~mec_cli.errors.MecError` naming it, found by ``stat`` without opening it, so nothing blocks
  (:func:`check_input`, :func:`read_input_bytes`). Text inputs must be UTF-8; the first invalid byte is named by its
  offset (:func:`utf8_error`).
* **Outputs** that do not exist or are regular files are written to a temporary file beside them and renamed over
  them only when the whole command succeeded (a symlink's target is replaced, the link kept). An output that exists
  and is not a regular file is never renamed over: a character device (``/dev/null``) or a pipe is written in place,
  a path naming one of this process's open descriptors (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``) is
  written through that descriptor at its current position, and a directory, a block device or a socket is refused
  (:func:`output_target`). :func:`check_outputs` applies these rules, and refuses an output that is one of the
  inputs, before any work starts.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from mec_cli.errors import MecError

PathLike = Union[str, Path]

# ---- what a path names ---------------------------------------------------------------------------------------------
_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR = re.compile(r"^/(?:dev/fd|proc/self/fd|proc/thread-self/fd|proc/(\d+)/fd)/(\d+)$")


def descriptor_of(path: PathLike) -> Optional[int]:
    """The file descriptor of this process that ``path`` names (``/dev/stdout``, ``/dev/fd/3``, ``/proc/self/fd/1``,
    ``/proc/<this pid>/fd/N``), or None for any other path."""
    text = os.path.abspath(str(path))
    if text in _STD_STREAMS:
        return _STD_STREAMS[text]
    m = _DESCRIPTOR.match(text)
    if m is None or (m.group(1) is not None and int(m.group(1)) != os.getpid()):
        return None
    return int(m.group(2))


def names_stdout(path: Optional[PathLike]) -> bool:
    """Whether ``path`` names this process's standard output (``/dev/stdout``, ``/dev/fd/1``, ...)."""
    return path is not None and descriptor_of(path) == 1


_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
_KIND_TEXT = {"directory": "a directory", "FIFO": "a FIFO (named pipe)", "device": "a character device",
              "block device": "a block device", "socket": "a socket", "other": "not a regular file"}


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "other")


def _stat_or_error(path: Path, fd: Optional[int] = None) -> Optional[os.stat_result]:
    """``stat`` of ``path`` (following symlinks; of ``fd`` when given), None when it does not exist; other failures
    are a MecError."""
    try:
        return os.fstat(fd) if fd is not None else os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if fd is not None:
            raise MecError(f"names file descriptor {fd}, which is not open", path) from None
        return None
    except PermissionError:
        raise MecError("cannot reach it: permission denied", path) from None
    except OSError as e:
        if fd is not None and e.errno == errno.EBADF:
            raise MecError(f"names file descriptor {fd}, which is not open", path) from None
        raise MecError(f"cannot reach it ({e.strerror or e})", path) from None


# ---- inputs ------------------------------------------------------------------------------------------------------
def check_input(path: PathLike, what: str = "file", missing: Optional[str] = None) -> Path:
    """``path`` as a :class:`Path` when it is an existing regular file (symlinks followed) that mec may read; one
    MecError otherwise (``missing``: the message for a path that does not exist, default "<what> not found").

    Nothing is opened: a FIFO, a device or a socket is refused by its ``stat``, so no reader ever blocks on one.
    """
    path = Path(path)
    st = _stat_or_error(path)
    if st is None:
        if str(path) == "-":
            raise MecError(f"reading standard input is not supported here: give the {what} as a file path", path)
        raise MecError(missing or f"{what} not found", path)
    kind = _kind(st.st_mode)
    if kind == "directory":
        raise MecError(f"is a directory, not a {what}", path)
    if kind != "file":
        raise MecError(f"is {_KIND_TEXT[kind]}, not a regular file: mec reads a {what} only from a regular file", path)
    return path


def utf8_error(raw: bytes) -> Optional[int]:
    """The offset of the first byte of ``raw`` that is not valid UTF-8 (as Python's strict decoder finds it), or
    None. ASCII is recognised at memory speed; other text is decoded in pieces of 16 MiB (no copy of the whole)."""
    if raw.isascii():
        return None
    step, n, pos = 1 << 24, len(raw), 0
    while pos < n:
        end = min(n, pos + step)
        for _ in range(3):  # never split a sequence: back off past at most 3 continuation bytes
            if end < n and 0x80 <= raw[end] <= 0xBF:
                end -= 1
        piece = raw[pos:end]
        if not piece.isascii():
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as e:
                return pos + e.start
        pos = end
    return None


def check_utf8(raw: bytes, path: PathLike) -> None:
    """A one-line MecError naming the first byte of ``raw`` (the contents of ``path``) that is not UTF-8."""
    bad = utf8_error(raw)
    if bad is not None:
        raise MecError(f"not valid UTF-8 at byte {bad} (0x{raw[bad]:02x}): JSON files are UTF-8", path)


def read_input_bytes(path: PathLike, what: str = "file", text: bool = True, missing: Optional[str] = None) -> bytes:
    """The bytes of the input file ``path`` (:func:`check_input`'s rules); with ``text`` they must be UTF-8.

    The file is opened without blocking and checked again once open, so a path swapped for a FIFO in between
    cannot hang the read.
    """
    path = check_input(path, what, missing)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        raise MecError("cannot read: permission denied", path) from None
    except IsADirectoryError:
        raise MecError(f"is a directory, not a {what}", path) from None
    except OSError as e:
        raise MecError(f"cannot read ({e.strerror or e})", path) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise MecError(f"is not a regular file: mec reads a {what} only from a regular file", path)
        try:
            raw = f.read()
        except OSError as e:
            raise MecError(f"cannot read ({e.strerror or e})", path) from None
    if text:
        check_utf8(raw, path)
    return raw


# ---- outputs -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputTarget:
    """Where and how an output is written (see the module docstring).

    ``path``: as given (messages name it); ``real``: the file a rename replaces (symlinks followed); ``in_place``:
    written into the existing device or pipe (or through ``fd``, a descriptor of this process), never renamed over.
    """

    path: Path
    real: Path
    in_place: bool = False
    fd: Optional[int] = None
    identity: Optional[Tuple[int, int]] = None  # (st_dev, st_ino) when it exists


def output_target(path: PathLike) -> OutputTarget:
    """Classify an output path, or refuse it in one MecError: a directory, a block device, a socket, a descriptor
    that is not open, a path under a file."""
    path = Path(path)
    fd = descriptor_of(path)
    st = _stat_or_error(path, fd)
    if st is None:
        _parent_is_folder(path)
        return OutputTarget(path, Path(os.path.realpath(path)))
    kind = _kind(st.st_mode)
    identity = (st.st_dev, st.st_ino)
    if kind == "directory":
        raise MecError("is a directory, not a file to write", path)
    if fd is not None:
        return OutputTarget(path, path, True, fd, identity)
    if kind == "file":
        return OutputTarget(path, Path(os.path.realpath(path)), identity=identity)
    if kind in ("device", "FIFO"):
        return OutputTarget(path, path, True, None, identity)
    raise MecError(f"is {_KIND_TEXT[kind]}: mec writes only regular files, character devices (such as /dev/null) and "
                   "pipes", path)


def _parent_is_folder(path: Path) -> None:
    for p in path.parents:
        st = _stat_or_error(p)
        if st is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise MecError(f"cannot write here: {p} is a file, not a folder", path)
            return


def _writable_dir(path: Path, shown: Optional[Path] = None) -> None:
    """Make ``path``'s folder (and its parents), or say in one line why an output cannot go there (naming
    ``shown``, the path as the user gave it)."""
    shown = shown or path
    if path.is_dir():
        raise MecError("is a directory, not a file to write", shown)
    _parent_is_folder(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MecError(f"cannot create its folder ({e.strerror or e})", shown) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MecError(f"cannot write in {parent}: permission denied", shown)


def check_output_dir(path: PathLike) -> Path:
    """An output folder (created when the command writes into it): refused in one MecError when it exists and is
    not a folder, lies under a file, or cannot be written."""
    path = Path(path)
    fd = descriptor_of(path)
    if fd is not None:
        raise MecError(f"names file descriptor {fd}, not a folder to write into", path)
    st = _stat_or_error(path)
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise MecError(f"is {_KIND_TEXT.get(_kind(st.st_mode), 'a file')}, not a folder to write into"
                           if _kind(st.st_mode) != "file" else "is a file, not a folder to write into", path)
        if not os.access(path, os.W_OK | os.X_OK):
            raise MecError("cannot write in this folder: permission denied", path)
        return path
    _parent_is_folder(path)
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MecError(f"cannot create it: {existing} is not writable", path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path, shown: Optional[Path] = None) -> Path:
    """An empty temporary file in ``path``'s folder, with the permissions a plain ``open(path, 'w')`` would give."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise MecError(f"cannot write here ({e.strerror or e})", shown or path) from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs should be as readable as any other
    os.close(fd)
    return Path(tmp)


def _temp_elsewhere(target: OutputTarget) -> Path:
    """A temporary file for an output written in place, in the system's temporary folder (never beside a device)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix="mec-out.", suffix=f".tmp{target.path.suffix}")
    except OSError as e:
        raise MecError(f"cannot make a temporary file for it ({e.strerror or e})", target.path) from None
    os.close(fd)
    return Path(tmp)


def _write_in_place(tmp: Path, target: OutputTarget) -> None:
    """Copy ``tmp`` into a device, a pipe or an open descriptor, without renaming anything.

    A FIFO is opened without blocking, so one that no process reads is an error at once instead of a hang."""
    if target.fd is not None:
        for stream in (sys.stdout, sys.stderr):  # what the command printed before stays before
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        try:
            out = os.dup(target.fd)
        except OSError as e:
            raise MecError(f"cannot write ({e.strerror or e})", target.path) from None
    else:
        try:
            out = os.open(target.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            if e.errno == errno.ENXIO:
                raise MecError("is a FIFO that no process is reading; nothing was written", target.path) from None
            raise MecError(f"cannot write ({e.strerror or e})", target.path) from None
        os.set_blocking(out, True)
    try:
        with open(tmp, "rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                view = memoryview(block)
                while view:
                    view = view[os.write(out, view):]
    except OSError as e:
        raise MecError(f"cannot write ({e.strerror or e})", target.path) from None
    finally:
        os.close(out)


@contextlib.contextmanager
def atomic_paths(*paths: PathLike) -> Iterator[List[Path]]:
    """Yield a temporary path for each of ``paths``; commit them all only if the block succeeds.

    Outputs that belong together (a dataset and its manifest, a figure's PNG and SVG) are thus committed together
    or not at all: a failure, an interrupt or a signal inside the block leaves every target as it was, and a
    failed rename puts back the targets already replaced. Outputs written in place (devices, pipes, descriptors:
    see the module docstring) are written first, so that a failure there (``/dev/full``) replaces nothing.
    Temporary files never outlive the block.
    """
    targets = [output_target(p) for p in paths]
    renamed = [t for t in targets if not t.in_place]
    if len({os.path.normcase(str(t.real)) for t in renamed}) != len(renamed):
        raise MecError(f"two outputs are the same file: {', '.join(str(p) for p in paths)}")
    for t in renamed:
        _writable_dir(t.real, t.path)
    tmps: List[Path] = []
    try:
        for t in targets:
            tmps.append(_temp_elsewhere(t) if t.in_place else _temp_beside(t.real, t.path))
        yield tmps
        for tmp, t in zip(tmps, targets):
            if t.in_place:
                _write_in_place(tmp, t)
        pairs = [(tmp, t) for tmp, t in zip(tmps, targets) if not t.in_place]
        try:
            _replace_all([tmp for tmp, _ in pairs], [t.real for _, t in pairs])
        except OSError as e:
            failed = getattr(e, "filename2", None)
            shown = next((t.path for _, t in pairs if str(t.real) == str(failed)), pairs[0][1].path if pairs else "")
            raise MecError(f"cannot write ({e.strerror or e}); the previous outputs are unchanged", shown) from None
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
    """Refuse, before any work starts, outputs that cannot be written (:func:`output_target`) or would overwrite an
    input or each other. Every file a command writes belongs here, the files written beside another (a figure's
    SVG, a dataset's manifest) included.

    ``outputs`` and ``inputs`` map a role (the CLI passes its flag names) to a path; None entries are ignored. A file
    is the same file when it is the same inode (hard links, symlinks, ``/dev/stdout`` redirected to it) or, for a
    path that does not exist yet, the same real path. Devices and pipes are written in place and may repeat.
    """
    seen: Dict[object, str] = {}
    for role, path in inputs.items():
        if path is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode):
                seen[(st.st_dev, st.st_ino)] = f"the input {role}"
    for role, path in outputs.items():
        if path is None:
            continue
        target = output_target(path)
        key = target.identity or os.path.normcase(str(target.real))
        if key in seen and seen[key].startswith("the input"):
            raise MecError(f"{role} would overwrite {seen[key]}; choose another output path", path)
        if target.in_place:
            continue
        if key in seen:
            raise MecError(f"{role} would overwrite {seen[key]}; choose another output path", path)
        seen[key] = role
        seen[os.path.normcase(str(target.real))] = role
        _writable_dir(target.real, target.path)


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
    """The bytes of a JSON input file (:func:`read_input_bytes`: a regular file, UTF-8), or a one-line
    :class:`MecError`."""
    return read_input_bytes(path, "JSON file", missing="file not found")


def read_json(path: PathLike) -> Any:
    """Load a JSON file, turning a missing file or malformed JSON into a one-line :class:`MecError`."""
    text = read_json_bytes(path).decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MecError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    except RecursionError:
        raise MecError("JSON nested too deeply to read", path) from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise MecError(f"malformed JSON: {e}", path) from None
