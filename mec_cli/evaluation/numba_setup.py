"""Start-up of numba's JIT for the kernels: where their compiled code is cached, numba's BLAS probe answered without
importing scipy, and our kernels typed where other numba code names them. :mod:`mec_cli.evaluation.compiled` imports
it before it makes numba's dispatchers of the kernels (numba picks a kernel's cache folder when the dispatcher is
made); a module that defines numba kernels with numba's own decorators imports it first too."""
from __future__ import annotations

import sys
from pathlib import Path

from numba.core import caching

from mec_cli.evaluation import kernel_cache


class KernelCacheLocator(caching.InTreeCacheLocator):
    """numba's cache of our kernels in :func:`mec_cli.evaluation.kernel_cache.cache_dir` (see that module): one
    folder per version of the kernels, whatever folder the package was cloned, copied or installed into, and
    writable where the package is not. numba's own checks stay: each file's content hash (its source stamp), and
    per kernel the signature, the CPU and the function's bytecode. Kernels of other packages are left to numba's
    own locators, and so are ours when the folder cannot be written."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = str(kernel_cache.cache_dir())

    def ensure_cache_path(self):
        path = Path(self._cache_path)
        if not kernel_cache.writable(path):  # probed once per process, not once per kernel
            raise OSError(f"cannot write {path}")
        path.mkdir(parents=True, exist_ok=True)  # again, in case it was removed since

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            source = Path(py_file).resolve()
            if source.parent != kernel_cache.HERE and source not in kernel_cache.shared_sources():
                return None
            kernel_cache.cache_dir()
        except (OSError, RuntimeError):  # no home folder, an unreadable source: numba's own locators decide
            return None
        return super().from_function(py_func, py_file)


def use_kernel_cache() -> None:
    """Put :class:`KernelCacheLocator` first among numba's cache locators (once)."""
    locators = caching.CacheImpl._locator_classes
    if KernelCacheLocator not in locators:
        locators.insert(0, KernelCacheLocator)


def skip_blas_probe() -> None:
    """numba probes for scipy's BLAS (for ``np.dot`` in compiled code) when it first compiles or loads a kernel,
    which imports scipy.linalg: 0.2 s and 14 MB of a ``mec eval`` run. No kernel of ours uses BLAS, so the probe
    finds it absent. Only while numba's array functions are not loaded yet and scipy.linalg is not imported: a
    process that already has either keeps numba's own answer."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # an import of it raises ImportError, which the probe reads as "absent"
    try:
        import numba.np.arraymath  # noqa: F401, PLC0415  (runs the probe, only here)
    finally:
        del sys.modules["scipy.linalg"]


def type_our_kernels() -> None:
    """numba code that names one of our kernels (a :class:`mec_cli.evaluation.compiled.Kernel`, where a module's
    globals hold it) calls that kernel's numba dispatcher. Our own kernels see the dispatchers themselves
    (:mod:`compiled` compiles them with such globals); this serves numba code of other modules."""
    from numba.core import types  # noqa: PLC0415  (after numba's own set-up above)
    from numba.core.typing.typeof import typeof_impl  # noqa: PLC0415  (idem)

    from mec_cli.evaluation.compiled import Kernel  # noqa: PLC0415  (compiled imports this module when it sets up)

    typeof_impl.register(Kernel)(lambda kernel, c: types.Dispatcher(kernel.dispatcher))


use_kernel_cache()  # on import: before any dispatcher of ours is made
skip_blas_probe()
type_our_kernels()
