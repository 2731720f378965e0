"""The ahead-of-time (AOT) build of the evaluator's kernels: one extension module, no numba needed to run it.

The set-up's warm-up (:mod:`mec_cli.evaluation.warmup`) runs ``python -m mec_cli.evaluation.aot`` after numba's JIT
cache is filled. In that process (``MEC_KERNELS=jit``) the warm-up's own exercise of every ``mec eval`` path runs
again while :func:`mec_cli.evaluation.compiled.recording` notes each kernel call made from Python and its argument
types; numba's ``pycc`` then compiles exactly those signatures of those kernels (and everything they call) into
``<kernel cache>/aot/<python>-<kernels hash>-<cpu>/`` (:func:`mec_cli.evaluation.kernel_cache.aot_dir`), with a
manifest that maps each kernel and argument key to its exported function. :mod:`mec_cli.evaluation.compiled` loads
it at run time.

How it is compiled, so that it computes what the JIT computes:

* the functions are the JIT's own (numba's dispatchers of :mod:`compiled`, whose callees are numba's dispatchers and
  intrinsics), typed by numba's typing and lowered by its CPU target, as the JIT does;
* each kernel's declared options carry over: ``nogil`` (the GIL released while it runs), ``error_model``,
  ``fastmath``, ``boundscheck``; numba's defaults otherwise, as for the JIT;
* for this CPU with its exact features, as the JIT compiles (hence one build per CPU:
  :func:`kernel_cache.cpu_fingerprint`);
* kernels with ``parallel=True`` (or calling one) are left to the JIT: pycc cannot link numba's thread pool.

**Decision**: numba's ``pycc`` is deprecated (``NumbaPendingDeprecationWarning``), but numba 0.68.1, which
constraints.txt pins, has it and it needs only a C compiler; where the build cannot be made (no compiler, a numba
without pycc) the set-up says so and every kernel runs by the JIT as before.

    python -m mec_cli.evaluation.aot          # build (the warm-up runs it); prints the manifest's summary
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mec_cli.evaluation import compiled, kernel_cache

MODULE = "mec_kernels_aot"
FLAG_OPTIONS = ("nogil", "error_model", "fastmath", "boundscheck")  # per-kernel options the build carries over


def type_key(ty):
    """numba type -> the plain key :func:`mec_cli.evaluation.compiled.value_key` makes from a value of that type;
    None for a type the build does not export."""
    from numba.core import types  # noqa: PLC0415  (the build only)
    from numba.np import numpy_support  # noqa: PLC0415  (the build only)

    if isinstance(ty, types.Array):
        if not ty.aligned:
            return None
        return [numpy_support.as_dtype(ty.dtype).str, ty.ndim, ty.layout, not ty.mutable]
    if isinstance(ty, types.Boolean):
        return "bool"
    if isinstance(ty, (types.Integer, types.Float)):
        return str(ty)
    if isinstance(ty, types.BaseTuple):
        items = [type_key(t) for t in ty]
        return None if any(i is None for i in items) else ["tuple", *items]
    return None


def _uses_parallel(dispatcher, seen=None) -> bool:
    """Whether a dispatcher has ``parallel=True`` or calls (by a global or a module attribute) one that has."""
    seen = set() if seen is None else seen
    if id(dispatcher) in seen:
        return False
    seen.add(id(dispatcher))
    if dispatcher.targetoptions.get("parallel"):
        return True
    namespace = dispatcher.py_func.__globals__
    for name in dispatcher.py_func.__code__.co_names:
        value = namespace.get(name)
        candidates = [value]
        if isinstance(value, type(sys)):  # a module: any kernel it holds may be called
            candidates = [v.dispatcher if isinstance(v, compiled.Kernel) else v for v in vars(value).values()]
        for v in candidates:
            if hasattr(v, "targetoptions") and hasattr(v, "py_func") and _uses_parallel(v, seen):
                return True
    return False


def exports(calls) -> Tuple[List[Dict], List[str]]:
    """What to compile from the recorded calls: [{kernel, types, key}], and why others were left to the JIT."""
    out, left = {}, []
    for kernel, argtypes in calls:
        name = f"{kernel.__module__}.{kernel.__qualname__}"
        key = [type_key(t) for t in argtypes]
        if any(k is None for k in key):
            left.append(f"{name}{argtypes}: a type the build does not export")
        elif len(argtypes) != kernel.py_func.__code__.co_argcount:
            left.append(f"{name}{argtypes}: called without its default arguments")
        elif _uses_parallel(kernel.dispatcher):
            left.append(f"{name}: parallel=True")
        else:
            out[(name, json.dumps(key))] = {"kernel": kernel, "types": argtypes, "key": key}
    return [out[k] for k in sorted(out)], sorted(set(left))


def record_calls() -> set:
    """Every kernel call of the warm-up's exercise of ``mec eval`` (reader, evaluator, results files), recorded."""
    from mec_cli.evaluation import warmup  # noqa: PLC0415  (warmup imports this module)

    with tempfile.TemporaryDirectory(prefix="mec-aot-") as tmp:
        paths = warmup.make_dataset(Path(tmp))
        with compiled.recording() as calls:
            warmup.EXERCISES["all"](paths)
    return calls


def _patched_pycc(options_of: Dict):
    """numba's pycc, set up to compile as the JIT does (module docstring); returns (CC, undo)."""
    import numba.pycc.compiler as pycc_compiler  # noqa: PLC0415  (the build only)
    from numba.core import codegen, cpu  # noqa: PLC0415  (the build only)
    from numba.pycc import CC  # noqa: PLC0415  (the build only)

    original_compile, original_features = pycc_compiler.compile_extra, codegen.AOTCPUCodegen._customize_tm_features

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, locals, **kwargs):
        flags = flags.copy()
        opts = options_of.get(func, {})
        flags.release_gil = bool(opts.get("nogil", False))
        if "error_model" in opts:
            flags.error_model = opts["error_model"]
        if "fastmath" in opts:
            flags.fastmath = cpu.FastMathOptions(opts["fastmath"])
        if "boundscheck" in opts:
            flags.boundscheck = bool(opts["boundscheck"])
        return original_compile(typingctx, targetctx, func, args, return_type, flags, locals, **kwargs)

    pycc_compiler.compile_extra = compile_extra
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: self._get_host_cpu_features()

    def undo():
        pycc_compiler.compile_extra = original_compile
        codegen.AOTCPUCodegen._customize_tm_features = original_features

    return CC, undo


CHECK = """
import json, sys
sys.modules['numba'] = None  # the build must load without numba
from mec_cli.evaluation import compiled
table = compiled.aot_table()
info = compiled.aot_info()
assert info.get('loaded'), info
print(json.dumps({'exports': sum(map(len, table.values()))}))
"""


class BuildError(RuntimeError):
    """What keeps the AOT build from being made here (the kernels then run by numba's JIT)."""


def check_toolchain() -> None:
    """numba's pycc and a working C compiler (the one setuptools' distutils picks, ``CC`` where set), or a
    :class:`BuildError` saying which is missing; before any work."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pycc's pending deprecation
            from numba.pycc import platform  # noqa: PLC0415  (the build only; needs setuptools' distutils)
    except ImportError as exc:
        raise BuildError(f"numba's pycc cannot be loaded ({exc}); it needs setuptools<80 in this Python") from None
    if not platform.external_compiler_works():
        cc = os.environ.get("CC") or "the C compiler setuptools picks (cc)"
        raise BuildError(f"no working C compiler ({cc} cannot compile a C file); install gcc or set CC")


def build(out: Optional[Path] = None, verbose: bool = False) -> Dict:
    """Record, compile and check the AOT build into ``out`` (default: :func:`kernel_cache.aot_dir`), replacing any
    there only once the new one loads; returns the manifest."""
    if compiled.mode() != "jit":
        raise RuntimeError("the AOT build runs with MEC_KERNELS=jit (its calls must reach numba's JIT)")
    check_toolchain()
    t0 = time.perf_counter()
    out = Path(out or kernel_cache.aot_dir())
    chosen, left = exports(record_calls())
    recorded = time.perf_counter() - t0
    options_of = {e["kernel"].dispatcher.py_func: {k: v for k, v in e["kernel"].options.items() if k in FLAG_OPTIONS}
                  for e in chosen}
    CC, undo = _patched_pycc(options_of)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pycc's pending deprecation
            cc = CC(MODULE, source_module=__name__)
        cc.output_dir, cc.target_cpu, cc.verbose = str(staging), "host", verbose
        entries = []
        for i, e in enumerate(chosen):
            kernel, dispatcher = e["kernel"], e["kernel"].dispatcher
            cres = dispatcher.overloads.get(tuple(e["types"]))
            if cres is None:
                dispatcher.compile(tuple(e["types"]))
                cres = dispatcher.overloads[tuple(e["types"])]
            symbol = f"k{i}"
            cc.export(symbol, cres.signature)(dispatcher.py_func)
            entries.append({"module": kernel.__module__, "qualname": kernel.__qualname__, "key": e["key"],
                            "symbol": symbol, "signature": str(cres.signature)})
        cc.compile()
        manifest = {"module": MODULE, "file": cc.output_file, "cpu": kernel_cache.cpu_fingerprint(),
                    "kernels_hash": kernel_cache.kernels_hash(), "python": sys.implementation.cache_tag,
                    "numba": sys.modules["numba"].__version__, "exports": entries, "left_to_jit": left,
                    "record_seconds": round(recorded, 1), "seconds": round(time.perf_counter() - t0, 1),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / kernel_cache.AOT_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _check(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        undo()
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _check(folder: Path) -> None:
    """Load the build in a fresh process without numba (it must not need it)."""
    env = dict(os.environ, MEC_KERNELS="aot")
    patch = ("from pathlib import Path\nfrom mec_cli.evaluation import kernel_cache\n"
             f"kernel_cache.aot_dir = lambda: Path({str(folder)!r})\n")
    res = subprocess.run([sys.executable, "-c", patch + CHECK], env=env, capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parents[2]))
    if res.returncode != 0:
        raise RuntimeError(f"the AOT build does not load: {(res.stdout + res.stderr)[-2000:]}")


def main(argv=None) -> int:
    import argparse  # noqa: PLC0415  (the command line only)

    ap = argparse.ArgumentParser(prog="python -m mec_cli.evaluation.aot", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="folder to build into (default: the kernel cache's)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    try:
        manifest = build(args.out, args.verbose)
    except Exception as exc:  # one line for the set-up (the kernels then run by the JIT); the whole story in a log
        if args.verbose:
            raise
        log = Path(tempfile.gettempdir()) / "mec-aot-build-error.log"
        try:
            log.write_text(traceback.format_exc())
            where = f" (details: {log})"
        except OSError:
            where = ""
        first = (str(exc).strip().splitlines() or [""])[0]
        what = first if isinstance(exc, BuildError) else f"{type(exc).__name__}: {first}"
        print(f"the ahead-of-time build failed: {what}{where}", file=sys.stderr)
        return 1
    print(json.dumps({k: (len(v) if k in ("exports", "left_to_jit") else v) for k, v in manifest.items()}))
    for line in manifest["left_to_jit"]:
        print(f"left to the JIT: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
