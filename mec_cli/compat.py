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

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mec_cli.errors import MecError
from mec_cli.io import check_input


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


def check_checkpoint(path, resume: bool = False) -> None:
    """Load a checkpoint's structure under the weights-only rules, or raise one-line :class:`MecError`.

    Missing, empty, truncated, garbage and refused files (a pickle that asks for anything outside
    mmengine's allow-listed classes: a pickle can run code) all end here, before any model is built, and so does
    a file of the wrong shape: a checkpoint is a dict whose ``state_dict`` (or the dict itself) maps parameter
    names to tensors; one to ``resume`` from also has mmengine's ``meta`` (integer ``epoch`` and ``iter``) and
    ``message_hub``. The tensors are memory-mapped, not read, so the check costs little even for large
    checkpoints. Only a regular file is opened (:func:`mec_cli.io.check_input`).
    """
    path = check_input(path, "checkpoint file", missing="checkpoint not found")
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
    except (KeyboardInterrupt, SystemExit):
        raise
    except (MemoryError, RecursionError):
        raise MecError("not a readable checkpoint (its structure is too large or too deep to load)", path) from None
    except Exception as e:  # torch's loaders raise many types on garbage (IndexError, UnicodeDecodeError, ...)
        text = " ".join(str(e).split())
        reason = text.split(". ")[0][:200] if text else type(e).__name__
        raise MecError(f"not a readable checkpoint, truncated or not a torch file ({reason})", path) from None
    problem = checkpoint_problem(obj, resume)
    if problem:
        raise MecError(f"not a model checkpoint: {problem}", path)


def checkpoint_problem(obj, resume: bool = False):
    """What keeps ``obj`` (a loaded checkpoint) from being one mmengine can load (see :func:`check_checkpoint`), or
    None."""
    if not isinstance(obj, dict):
        return f"it holds {type(obj).__name__}, not a dict with a state_dict"
    if "state_dict" not in obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"no state_dict (it holds {', '.join(repr(k) for k in list(obj)[:6])})" if obj else "an empty dict"
    state = obj["state_dict"] if "state_dict" in obj else obj
    if not isinstance(state, dict):
        return f"its state_dict is {type(state).__name__}, not a dict of tensors"
    if not state:
        return "its state_dict is empty" if "state_dict" in obj else "no state_dict"
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        where = "its state_dict" if "state_dict" in obj else "no state_dict, and the file"
        return f"{where} holds {bad!r}, which is not a parameter name with a tensor"
    if "meta" in obj and obj["meta"] is not None and not isinstance(obj["meta"], dict):
        return f"its 'meta' is {type(obj['meta']).__name__}, not a dict"
    if resume:
        meta = obj.get("meta")
        if not isinstance(meta, dict) or any(type(meta.get(k)) is not int for k in ("epoch", "iter")):
            return "no training state to resume from ('meta' with an integer epoch and iter)"
        if not isinstance(obj.get("message_hub"), dict):
            return "no training state to resume from (no 'message_hub')"
    return None


def _load_state(path) -> dict:
    """The state dict of a checkpoint :func:`check_checkpoint` accepted (tensors memory-mapped, not read)."""
    allow_mmengine_checkpoints()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    return obj["state_dict"] if "state_dict" in obj else obj


def state_mismatch(model_shapes: dict, checkpoint_shapes: dict):
    """Why weights with ``checkpoint_shapes`` (name -> shape) cannot be a checkpoint of a model with ``model_shapes``:
    none of the model's parameters among them, or one of them with another shape (mmengine would skip it with a
    warning and leave that parameter untrained). None when they fit."""
    common = [k for k in model_shapes if k in checkpoint_shapes]
    if not common:
        return (f"holds none of the model's {len(model_shapes)} parameters (it is a checkpoint of another model, e.g. "
                f"{next(iter(checkpoint_shapes), '?')!r})")
    for k in common:
        if tuple(model_shapes[k]) != tuple(checkpoint_shapes[k]):
            return (f"holds {k} of shape {list(checkpoint_shapes[k])}, but the model's is {list(model_shapes[k])} "
                    "(a checkpoint of another configuration or class count)")
    return None


def check_checkpoint_fits(model, path) -> None:
    """One MecError naming ``path`` when its weights cannot be the ``model``'s (:func:`state_mismatch`)."""
    model = getattr(model, "module", model)  # DDP
    state = _load_state(path)
    problem = state_mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()},
                             {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise MecError(f"does not fit the model: it {problem}", path)
