"""Narrow compatibility steps for third-party code on today's NumPy and torch.

1. lvis 0.5.3 calls ``np.float`` in ``LVISEval.accumulate``; NumPy 1.24 removed that alias. Rather than
   put ``float`` back on the real numpy module for everyone, :func:`patch_lvis_numpy` gives the
   ``lvis.eval`` module alone a numpy proxy that also answers ``float`` (what the alias was).
2. torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine 0.10.7 calls ``torch.load`` without
   the argument, so its own checkpoints (which hold a ``HistoryBuffer`` and numpy values from the
   message hub) fail to load and ``--resume`` breaks. :func:`allow_mmengine_checkpoints` allow-lists
   exactly those classes with ``torch.serialization.add_safe_globals``; the weights-only check stays on,
   so a checkpoint that smuggles any other object is still refused.
"""
from __future__ import annotations

import builtins
import collections
import pickle
import re
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mec_cli.errors import MecError


class _NumpyWithFloat(types.ModuleType):
    """A view of numpy that also has the removed ``np.float`` alias (the builtin ``float``)."""

    float = builtins.float

    def __getattr__(self, name: str):
        return getattr(np, name)


def patch_lvis_numpy() -> None:
    """Make ``lvis.eval`` (only it) see a numpy with ``float``; a no-op where numpy still has it."""
    import lvis.eval as lvis_eval  # noqa: PLC0415  (lvis-api only where it is compared against)

    if isinstance(lvis_eval.np, _NumpyWithFloat) or "float" in vars(np):
        return
    lvis_eval.np = _NumpyWithFloat("numpy")


def mmengine_safe_globals() -> list:
    """The classes an mmengine 0.10 checkpoint pickles besides tensors and plain containers."""
    safe: list = [HistoryBuffer, np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct, scalar  # noqa: PLC0415  (numpy >= 2, else below)
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # noqa: PLC0415
    safe += [_reconstruct, scalar]
    # numpy dtypes pickle as their concrete classes (Float64DType, Int64DType, ...).
    safe += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool", "uint8")]
    return safe


def _history_buffer_getattr(obj, name: str):
    """The one use of ``getattr`` in an mmengine checkpoint: HistoryBuffer's statistics methods.

    Pickle stores ``HistoryBuffer.min`` as ``getattr(HistoryBuffer, 'min')``. Allow-listing the builtin
    ``getattr`` would let a checkpoint reach any attribute of any allowed object, so this stand-in
    resolves only those four names on that one class and refuses everything else.
    """
    if obj is HistoryBuffer and name in ("min", "max", "current", "mean"):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({obj!r}, {name!r}), which is not allowed")


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint classes for ``torch.load(weights_only=True)``."""
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals([*mmengine_safe_globals(), collections.Counter,
                                              (_history_buffer_getattr, "builtins.getattr")])


def check_checkpoint(path) -> None:
    """Load a checkpoint's structure under the weights-only rules, or raise one-line :class:`MecError`.

    Missing, empty, truncated, garbage and refused files (a pickle that asks for anything outside
    mmengine's allow-listed classes: a pickle can run code) all end here, before any model is built. The
    tensors are memory-mapped, not read, so the check costs little even for large checkpoints.
    """
    path = Path(path)
    if path.is_dir():
        raise MecError("is a directory, not a checkpoint file", path)
    if not path.is_file():
        raise MecError("checkpoint not found", path)
    if path.stat().st_size == 0:
        raise MecError("checkpoint is empty (0 bytes)", path)
    allow_mmengine_checkpoints()
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols; the verdict below says enough
            warnings.simplefilter("ignore")
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
        detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(e))
        if found:
            why = f"it asks for {found.group(1)}, which is not an allowed checkpoint class"
        else:
            what = detail.group(1).strip() if detail else "not a plain checkpoint"
            why = f"{what}: only tensors and mmengine's checkpoint classes are allowed"
        raise MecError(f"refused to load: {why} (a checkpoint is a pickle, and a pickle can run code)", path) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        text = " ".join(str(e).split())
        reason = text.split(". ")[0] if text else type(e).__name__
        raise MecError(f"not a readable checkpoint, truncated or not a torch file ({reason})", path) from None
    if not isinstance(obj, dict) or not any(k in obj for k in ("state_dict", "model", "meta")) and not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise MecError("not a model checkpoint (no state_dict)", path)
