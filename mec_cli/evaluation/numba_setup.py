"""Start-up of the numba kernels: numba's BLAS probe answered without importing scipy."""
from __future__ import annotations

import sys


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


skip_blas_probe()  # on import: each module with kernels imports this one
