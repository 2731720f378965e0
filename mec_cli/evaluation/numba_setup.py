"""Start-up of the numba kernels: where their compiled code is cached, and numba's BLAS probe answered without
importing scipy. Every module with kernels imports this one before it defines them (numba picks a kernel's cache
folder when the kernel is defined)."""
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


use_kernel_cache()  # on import: each module with kernels imports this one before defining them
skip_blas_probe()
