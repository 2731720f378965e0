"""The evaluator's kernels: compiled ahead of time by the set-up where it could, by numba's JIT otherwise.

Kernel modules (``kernels``, ``jsonscan``, ``boundary``, ``errors``, ``masks``, ``lrp``, ``bootstrap``) decorate their
functions with this module's :func:`njit` and :func:`intrinsic` instead of numba's (``masks`` also makes a kernel of
the plain-Python RLE reader of :mod:`mec_cli.data.masks`). Each becomes a :class:`Kernel`, which runs a call

1. in the ahead-of-time (AOT) build, when the argument types are ones it holds: an extension module that the set-up
   (``python -m mec_cli.evaluation.warmup``, :mod:`mec_cli.evaluation.aot`) compiles with numba's ``pycc`` from these
   same functions, for every signature that the paths of ``mec eval`` call, into the kernel cache
   (:func:`mec_cli.evaluation.kernel_cache.aot_dir`). It needs no numba at run time: a ``mec eval`` that finds
   every call there never imports numba (0.3 s), never sets up numba's compiler (0.2 s) or loads its cached kernels
   (0.1 s or more), and holds about 100 MB less;
2. otherwise by numba's JIT, with its on-disk cache (:mod:`mec_cli.evaluation.numba_setup`): other argument types, an
   install whose build is missing (no C compiler at set-up, edited kernels, another CPU), or ``MEC_KERNELS=jit``.

Both compile the same Python functions through numba's same pipeline (the AOT build with the options each kernel
declares, ``nogil`` included), and the tests of ``tests/evaluation`` run against whichever a process uses
(``MEC_KERNELS=aot`` refuses the JIT, ``MEC_KERNELS=jit`` never loads the build).

The JIT compiles copies of the functions whose globals hold numba's dispatchers and intrinsics where the module's
hold the :class:`Kernel` objects, so the module itself never changes and every call from Python goes through
:meth:`Kernel.__call__`. numba's ``parallel=True`` has no AOT counterpart, so a kernel's work is split over
threads here instead (:func:`split`): kernels release the GIL, whether AOT-compiled or JIT-compiled.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
import types as pytypes
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

MODE_ENV = "MEC_KERNELS"  # auto (default): the AOT build where it has the call; jit: never the build; aot: only it
MODES = ("auto", "jit", "aot")
prange = range  # numba's prange in the JIT's copies (below); the AOT build has no parallel loops

_lock = threading.RLock()
_kernels: List["Kernel"] = []
_intrinsics: List["Intrinsic"] = []
_jit_ready = False
_namespaces: Dict[int, Dict] = {}  # id(a kernel module's globals) -> the JIT's copy of them
_aot: Optional[Dict[Tuple[str, str], Dict[tuple, Callable]]] = None  # (module, qualname) -> {argument key: function}
_aot_info: Dict = {}
_recorded: Optional[set] = None  # (kernel, numba argument types) of every call the JIT ran, while recording


def mode() -> str:
    value = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise RuntimeError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {value!r}")
    return value


class Kernel:
    """A kernel function (see the module docstring): called like the function, it runs the AOT build's compiled code
    for these argument types when the build has it, else numba's JIT dispatcher (:attr:`dispatcher`)."""

    def __init__(self, py_func: Callable, options: Dict):
        self.py_func, self.options = py_func, dict(options)
        self.__name__, self.__qualname__ = py_func.__name__, py_func.__qualname__
        self.__module__, self.__doc__, self.__wrapped__ = py_func.__module__, py_func.__doc__, py_func
        self._table: Optional[Dict[tuple, Callable]] = None
        self._dispatcher = None
        with _lock:
            _kernels.append(self)

    def __repr__(self) -> str:
        return f"<mec kernel {self.__module__}.{self.__qualname__}>"

    def __call__(self, *args):
        table = self._table
        if table is None:
            table = self._table = aot_table().get((self.__module__, self.__qualname__), {})
        if table:
            fn = table.get(argument_key(args))
            if fn is not None:
                return fn(*args)
        if _aot_info.get("required"):
            raise RuntimeError(f"{MODE_ENV}=aot: the ahead-of-time build has no {self.__module__}.{self.__qualname__}"
                               f" for arguments {argument_key(args)}")
        dispatcher = self.dispatcher
        if _recorded is not None:
            _recorded.add((self, tuple(dispatcher.typeof_pyval(a) for a in args)))
        return dispatcher(*args)

    @property
    def dispatcher(self):
        """numba's dispatcher of this kernel (imports numba and sets up every kernel's, once)."""
        if self._dispatcher is None:
            _set_up_jit(self)
        return self._dispatcher

    @property
    def signatures(self) -> list:
        """The argument types numba's dispatcher has compiled or loaded (none until the JIT runs)."""
        return self._dispatcher.signatures if self._dispatcher is not None else []


class Intrinsic:
    """numba's ``@intrinsic`` of ``fn``, made when the JIT is set up (it exists only inside compiled code)."""

    def __init__(self, fn: Callable):
        self.fn, self.real = fn, None
        self.__name__, self.__module__, self.__doc__ = fn.__name__, fn.__module__, fn.__doc__
        with _lock:
            _intrinsics.append(self)


def njit(*args, **options):
    """``@njit`` or ``@njit(cache=True, nogil=True, ...)``, as numba's, making a :class:`Kernel`."""
    if args and callable(args[0]) and not options:
        return Kernel(args[0], {})
    if args:
        raise TypeError("njit takes keyword options only (explicit signatures are numba's own)")
    return lambda fn: Kernel(fn, options)


def intrinsic(fn: Callable) -> Intrinsic:
    return Intrinsic(fn)


def _copy(fn: Callable, namespace: Dict) -> Callable:
    """``fn`` with ``namespace`` as its globals (same code, name, defaults and source file: the same cache entries)."""
    out = pytypes.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__qualname__, out.__module__, out.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    out.__kwdefaults__ = fn.__kwdefaults__
    return out


def _module_ready(fn: Callable) -> bool:
    """Whether the module that defines ``fn`` has finished importing (its globals are then complete)."""
    module = sys.modules.get(fn.__module__)
    if module is None or getattr(module, "__dict__", None) is not fn.__globals__:
        return True
    return not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _set_up_jit(kernel: Optional[Kernel] = None) -> None:
    """numba's dispatchers and intrinsics of the kernels defined so far (those of modules still importing wait,
    unless ``kernel`` is one): each compiles a copy of its function whose globals, a copy of its module's made once
    the module is imported, hold numba's dispatchers and intrinsics where the module holds ours."""
    global _jit_ready
    with _lock:
        pending = [k for k in _kernels if k._dispatcher is None and (k is kernel or _module_ready(k.py_func))]
        if _jit_ready and not pending and all(i.real is not None for i in _intrinsics):
            return
        import numba  # noqa: PLC0415  (the JIT only: a process served by the AOT build never imports numba)
        from numba.extending import intrinsic as numba_intrinsic  # noqa: PLC0415  (the JIT only)

        from mec_cli.evaluation import numba_setup  # noqa: F401, PLC0415  (numba's cache locator, before any kernel)

        for intr in _intrinsics:
            if intr.real is None:
                intr.real = numba_intrinsic(intr.fn)
        fresh = []
        for k in pending:
            namespace = _namespaces.get(id(k.py_func.__globals__))
            if namespace is None:
                namespace = _namespaces[id(k.py_func.__globals__)] = dict(k.py_func.__globals__)
                fresh.append(namespace)
            k._dispatcher = numba.njit(**k.options)(_copy(k.py_func, namespace))
        for namespace in fresh:
            for name, value in list(namespace.items()):
                if isinstance(value, Kernel):
                    namespace[name] = value._dispatcher or value.dispatcher
                elif isinstance(value, Intrinsic):
                    namespace[name] = value.real
                elif value is range and name == "prange":
                    namespace[name] = numba.prange
        _jit_ready = True


def jit_loaded() -> bool:
    return _jit_ready


# ------------------------------------------------------------------------------------------ the AOT build at run time


def argument_key(args: Sequence) -> tuple:
    """What numba's typing would call these arguments, as hashable plain values (:func:`value_key`)."""
    return tuple(map(value_key, args))


def value_key(v):
    """An argument's numba type as plain values: an array's (dtype, ndim, layout, read-only), a scalar's numba type
    name, a tuple's items; None where the AOT build holds no such type (the JIT then runs it)."""
    t = type(v)
    if t is np.ndarray:
        flags = v.flags
        layout = "C" if flags.c_contiguous else ("F" if flags.f_contiguous else "A")
        return (v.dtype.str, v.ndim, layout, not flags.writeable)
    if t is bool or t is np.bool_:
        return "bool"
    if t is int:
        return "int64" if -(1 << 63) <= v < (1 << 63) else None
    if t is float:
        return "float64"
    if isinstance(v, (np.integer, np.floating)):
        return v.dtype.name
    if t is tuple:
        return ("tuple",) + tuple(map(value_key, v))
    return None


def _tupled(value):
    """A key read back from JSON (lists) as :func:`value_key` makes it (tuples)."""
    return tuple(map(_tupled, value)) if isinstance(value, list) else value


def aot_table() -> Dict[Tuple[str, str], Dict[tuple, Callable]]:
    """The AOT build's functions by kernel and argument key; empty where there is no usable build (loaded once)."""
    global _aot
    if _aot is not None:
        return _aot
    with _lock:
        if _aot is None:
            _aot = _load_aot()
    return _aot


def aot_info() -> Dict:
    """Where the kernels run: the mode, and the AOT build's folder and export count, or why it is not used."""
    aot_table()
    return dict(_aot_info)


def _load_aot() -> Dict[Tuple[str, str], Dict[tuple, Callable]]:
    from mec_cli.evaluation import kernel_cache  # noqa: PLC0415  (kernel_cache imports this module's users' files)

    how = mode()
    _aot_info.update(mode=how, required=how == "aot", loaded=False)
    if how == "jit":
        _aot_info["reason"] = f"{MODE_ENV}=jit"
        return {}
    try:
        folder = kernel_cache.aot_dir()
        manifest = json.loads((folder / kernel_cache.AOT_MANIFEST).read_text())
        if manifest.get("cpu") != kernel_cache.cpu_fingerprint():
            raise OSError(f"built for another CPU ({manifest.get('cpu')})")
        path = folder / manifest["file"]
        loader = importlib.machinery.ExtensionFileLoader(manifest["module"], str(path))
        spec = importlib.util.spec_from_file_location(manifest["module"], path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        table: Dict[Tuple[str, str], Dict[tuple, Callable]] = {}
        for entry in manifest["exports"]:
            table.setdefault((entry["module"], entry["qualname"]), {})[_tupled(entry["key"])] = \
                getattr(module, entry["symbol"])
    except (OSError, ValueError, KeyError, ImportError, AttributeError, RuntimeError) as exc:
        _aot_info["reason"] = f"no usable ahead-of-time build ({type(exc).__name__}: {exc})"
        if how == "aot":
            raise RuntimeError(f"{MODE_ENV}=aot: {_aot_info['reason']}") from None
        return {}
    _aot_info.update(loaded=True, folder=str(folder), exports=len(manifest["exports"]))
    return table


# ------------------------------------------------------------------------------------------ recording (the AOT build)


@contextmanager
def recording():
    """Meanwhile, every kernel call that the JIT runs is recorded with numba's argument types (the set of
    (kernel, types) is yielded): what :mod:`mec_cli.evaluation.aot` compiles ahead of time."""
    global _recorded
    calls: set = set()
    with _lock:
        _recorded = calls
    try:
        yield calls
    finally:
        with _lock:
            _recorded = None


def kernels() -> List[Kernel]:
    return list(_kernels)


# ------------------------------------------------------------------------------------------ threads


_local = threading.local()


def threads() -> int:
    """How many threads a kernel's work is split over here: 1 inside :func:`single_threaded`, else the cores this
    process may use."""
    n = getattr(_local, "threads", None)
    if n:
        return n
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextmanager
def single_threaded():
    """Kernels called from this thread meanwhile run on it alone (for callers that run several evaluations side
    by side, one per thread)."""
    saved = getattr(_local, "threads", None)
    _local.threads = 1
    try:
        yield
    finally:
        _local.threads = saved


def split(fn: Callable[[int, int], None], cost: np.ndarray, minimum: float = 1 << 15) -> None:
    """``fn(lo, hi)`` over consecutive ranges that cover items 0..n-1, side by side on :func:`threads` threads (this
    one included). ``cost`` is (n + 1,) cumulative: ``cost[i]`` is the work of the items before i; the ranges get
    about equal work. One call on this thread when only one thread may run or the work is under ``minimum``. The
    results must not depend on the ranges (each item's work is its own)."""
    n = len(cost) - 1
    parts = min(threads(), n)
    total = float(cost[-1] - cost[0]) if n > 0 else 0.0
    if parts <= 1 or total < minimum:
        if n > 0:
            fn(0, n)
        return
    cuts = np.searchsorted(cost, cost[0] + total * np.arange(1, parts) / parts).tolist()
    bounds = [0] + [min(max(c, 0), n) for c in cuts] + [n]
    errors: List[BaseException] = []

    def run(lo: int, hi: int) -> None:
        try:
            if hi > lo:
                fn(lo, hi)
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(bounds[p], bounds[p + 1]), daemon=True) for p in range(1, parts)]
    for w in workers:
        w.start()
    run(bounds[0], bounds[1])
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
