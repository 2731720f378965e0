"""The set-up behind `make setup`: which torch, which CUDA toolkit and architectures, which cached mmcv wheel.

`make setup` runs this module with the system python before the virtual environment exists, so it uses
the standard library only (and `mec_cli/__init__.py` holds nothing but the version). The decisions are plain
functions, tested with a stub pip and a stub nvidia-smi (tests/setup); `setup()` runs them in order:

1. the venv, and the build tools (setuptools, wheel, ninja, numpy) from constraints.txt;
2. torch at the pinned version:
   - cpu: the `+cpu` build (a 192 MB wheel). Where pip already has it without an index (this workplace keeps it
     in a find-links folder) it is installed from there, without touching the network. Elsewhere it comes
     from PyTorch's CPU wheel index (`TORCH_CPU_INDEX`, for mirrors). If that index cannot be used, the
     plain PyPI wheel is installed instead, with a message: it is the CUDA 13 build (about 4.7 GB) and runs
     on the CPU as well.
   - cuda: PyPI's CUDA build (`torch===X`: three '=' so that no local `+cpu` wheel can match);
3. for cuda, the toolkit: a CUDA_HOME whose nvcc has torch's CUDA major version, else nvcc from PyPI's
   `cuda-toolkit` package inside the venv (plus the `libcudart.so` link its linker step needs), and the
   architectures: `CUDA_ARCHS` from the user, else the visible GPUs' compute capabilities, else
   DEFAULT_CUDA_ARCHS;
4. mmcv compiled with its ops, cached under the wheel cache by `wheel_cache_key` (mmcv, torch, CUDA version,
   architectures, Python), so a wheel built for one machine is never used where it cannot run; the build
   log is kept when the build fails;
5. mec itself (editable, with the test extra), a record of these decisions in `<venv>/mec-setup.json` (read by
   `mec doctor`);
6. the evaluator's numba kernels compiled into the user's kernel cache (`mec_cli.evaluation.warmup`: every kernel
   signature `mec eval` uses, by numba's JIT and then ahead of time into an extension module with numba's pycc,
   which needs the C compiler and setuptools' distutils of step 1; two to three minutes on 2 cores; where the
   ahead-of-time build cannot be made, one warning line and the JIT's kernels serve; nothing when this version's
   are already compiled on this machine), so no `mec eval` waits for numba; then `mec doctor --quiet`.

Usage (the Makefile passes its variables as options)::

    python3 -m mec_cli.setup_env device                    # cpu or cuda: what `make setup` picks here
    python3 -m mec_cli.setup_env plan --device cuda        # the decisions, without installing anything
    python3 -m mec_cli.setup_env setup --venv .venv --device cpu
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_WHEEL_CACHE = Path.home() / ".cache" / "mec" / "wheels"
# The architectures PyPI's torch 2.13.0 (CUDA 13.0) is built for; the oldest is also the oldest it runs on
# (no V100/P100). Used when neither CUDA_ARCHS nor a visible GPU says which ones to build mmcv for, so that
# the wheel runs wherever torch does (at the price of one build per architecture).
TORCH_CUDA_ARCHS = ("7.5", "8.0", "8.6", "9.0", "10.0", "12.0")
DEFAULT_CUDA_ARCHS = TORCH_CUDA_ARCHS
# Build cost in core-minutes, measured on a 2-core machine (benchmarks/RESULTS.md): the C++ part of mmcv
# (the CPU build: 12 min on 2 cores) and each CUDA architecture on top (the CUDA build for 9.0 took 60 CPU
# minutes in all). Divided by the jobs for the printed estimate.
CPU_BUILD_CORE_MIN = 24.0
CUDA_ARCH_CORE_MIN = 36.0
SYSTEM_CUDA_HOMES = (Path("/usr/local/cuda"),)
SETUP_RECORD = "mec-setup.json"
BUILD_RECORD = "mec-build.json"

Runner = Callable[..., subprocess.CompletedProcess]


class SetupError(Exception):
    """A set-up step that cannot go on; the message says what to do."""


def say(msg: str) -> None:
    print(f"[mec setup] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- pins


def read_pins(constraints: Path) -> Dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a constraints file (names lower-cased)."""
    pins = {}
    for line in constraints.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


# --------------------------------------------------------------------------------------------- device


def _run(cmd: Sequence[str], run: Runner = subprocess.run, **kw) -> Optional[subprocess.CompletedProcess]:
    """``run(cmd)`` capturing text output; None when the program does not exist."""
    try:
        return run(list(cmd), capture_output=True, text=True, **kw)
    except (FileNotFoundError, PermissionError, OSError):
        return None


def detect_device(nvidia_smi: str = "nvidia-smi", run: Runner = subprocess.run) -> str:
    """'cuda' where an NVIDIA driver answers `nvidia-smi -L`, else 'cpu'."""
    res = _run([nvidia_smi, "-L"], run)
    return "cuda" if res is not None and res.returncode == 0 and "GPU" in res.stdout else "cpu"


def visible_compute_caps(nvidia_smi: str = "nvidia-smi", run: Runner = subprocess.run) -> List[str]:
    """Compute capabilities ('8.0', '9.0', ...) of the GPUs nvidia-smi lists, one per GPU; [] without one."""
    res = _run([nvidia_smi, "--query-gpu=compute_cap", "--format=csv,noheader"], run)
    if res is None or res.returncode != 0:
        return []
    return [line.strip() for line in res.stdout.splitlines() if re.fullmatch(r"\d+\.\d+", line.strip())]


def parse_archs(text: str) -> List[str]:
    """'8.0 9.0', '8.0;9.0', '80,90', 'sm_90' -> ['8.0', '9.0'], sorted, without repeats; '+PTX' is kept."""
    archs = []
    for tok in re.split(r"[\s;,]+", text.strip()):
        if not tok:
            continue
        m = re.fullmatch(r"(?:sm_?)?(\d+)(?:\.(\d+))?(\+PTX)?", tok, re.I)
        if not m:
            raise SetupError(f"CUDA_ARCHS: {tok!r} is not a compute capability like 8.0 or 9.0+PTX")
        major, minor = m.group(1), m.group(2)
        if minor is None:  # '90' -> 9.0, '120' -> 12.0
            if len(major) < 2:
                raise SetupError(f"CUDA_ARCHS: {tok!r} is not a compute capability like 8.0 or 9.0+PTX")
            major, minor = major[:-1], major[-1]
        arch = f"{int(major)}.{minor}" + ("+PTX" if m.group(3) else "")
        if arch not in archs:
            archs.append(arch)
    return sorted(archs, key=lambda a: (tuple(int(x) for x in a.split("+")[0].split(".")), a))


def _arch_number(arch: str) -> Tuple[int, int]:
    major, minor = arch.split("+")[0].split(".")
    return int(major), int(minor)


def choose_cuda_archs(user: str, gpu_caps: Sequence[str]) -> Tuple[List[str], str]:
    """(architectures, where they came from): the user's CUDA_ARCHS, else the visible GPUs, else the default.

    Raises SetupError for an architecture older than torch's CUDA build supports (it would never run).
    """
    if user.strip():
        archs, source = parse_archs(user), "CUDA_ARCHS"
    elif gpu_caps:
        archs, source = parse_archs(" ".join(gpu_caps)), "the visible GPUs (nvidia-smi)"
    else:
        archs, source = list(DEFAULT_CUDA_ARCHS), "the default (no GPU visible, CUDA_ARCHS not set)"
    oldest = _arch_number(TORCH_CUDA_ARCHS[0])
    too_old = [a for a in archs if _arch_number(a) < oldest]
    if too_old:
        raise SetupError(
            f"compute capability {', '.join(too_old)} (from {source}) is older than {TORCH_CUDA_ARCHS[0]}, the oldest "
            f"torch's CUDA 13 build runs on (V100 and P100 are not supported): use a newer GPU, or DEVICE=cpu")
    return archs, source


def arch_tag(archs: Sequence[str]) -> str:
    """['8.0', '9.0+PTX'] -> 'sm80-sm90ptx' (file-name safe)."""
    return "-".join("sm" + a.split("+")[0].replace(".", "") + ("ptx" if a.endswith("+PTX") else "") for a in archs)


def wheel_cache_key(mmcv: str, torch_version: str, py_tag: str, cuda: Optional[str] = None,
                    archs: Sequence[str] = ()) -> str:
    """Folder name of a cached mmcv wheel: everything its compiled ops depend on.

    CPU: ``mmcv-2.1.0_torch-2.13.0+cpu_cp311`` (unchanged since the first set-up, so cached wheels stay valid).
    CUDA: ``mmcv-2.1.0_torch-2.13.0+cu130_cuda-13.0_sm80-sm90_cp311``: the nvcc version and the architectures
    the kernels were compiled for are part of the key.
    """
    if cuda is None:
        return f"mmcv-{mmcv}_torch-{torch_version}_{py_tag}"
    if not archs:
        raise ValueError("a CUDA wheel key needs its architectures")
    return f"mmcv-{mmcv}_torch-{torch_version}_cuda-{cuda}_{arch_tag(archs)}_{py_tag}"


def estimate_build_minutes(n_archs: int, jobs: int) -> float:
    """Expected wall minutes of the mmcv build: the C++ part plus each CUDA architecture, over `jobs` cores."""
    return (CPU_BUILD_CORE_MIN + n_archs * CUDA_ARCH_CORE_MIN) / max(1, jobs)


def default_jobs(cpu_count: Optional[int] = None) -> int:
    return int(os.environ.get("MAX_JOBS") or cpu_count or os.cpu_count() or 1)


# ------------------------------------------------------------------------------------------------ pip


class Pip:
    """pip of the venv (or a stub in tests): ``cmd`` is the command that runs it."""

    def __init__(self, cmd: Sequence[str], constraints: Path, run: Runner = subprocess.run):
        self.cmd, self.constraints, self.run = list(cmd), constraints, run

    def install(self, *args: str, capture: bool = False, check: bool = True,
                env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        cmd = self.cmd + ["install", "-q", "-c", str(self.constraints), *args]
        kw = {"capture_output": True, "text": True} if capture else {}
        res = self.run(cmd, env=env, **kw)
        if check and res.returncode != 0:
            raise SetupError(f"`{' '.join(cmd)}` failed (exit {res.returncode})" + _last_error(res))
        return res

    def has_locally(self, spec: str) -> bool:
        """Whether pip can install `spec` without any index (find-links folders, an installed copy).

        A dry run with --no-index: it reads wheels already on disk and never reaches the network.
        """
        cmd = self.cmd + ["install", "--dry-run", "--no-index", "--no-deps", "-q", spec]
        return self.run(cmd, capture_output=True, text=True).returncode == 0


def _last_error(res: subprocess.CompletedProcess) -> str:
    text = "\n".join(x for x in (getattr(res, "stdout", None), getattr(res, "stderr", None)) if x)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    pick = errors[-1] if errors else (lines[-1] if lines else "")
    return f": {pick}" if pick else ""


def _index_failure(res: subprocess.CompletedProcess) -> str:
    """Why pip could not install from an index: unreachable (with pip's reason), or its last ERROR line."""
    text = "\n".join(x for x in (res.stdout, res.stderr) if x)
    m = re.search(r"Failed to establish a new connection: (?:\[Errno [-\d]+\] )?([^'\")]+)", text) or \
        re.search(r"connection broken by '(\w+)", text)
    if m:
        return f"the index cannot be reached ({m.group(1).strip()})"
    return _last_error(res)[2:] or f"pip exited with {res.returncode}"


def install_torch_cpu(pip: Pip, version: str, index_url: str) -> str:
    """Install torch's CPU build; returns how: 'local', 'index' or 'pypi-fallback'.

    1. ``torch==X+cpu`` already reachable without an index (a find-links folder, or installed): from there.
    2. Else from PyTorch's CPU index ``index_url`` (added to pip's own indexes, so mirrors of PyPI keep
       serving torch's dependencies).
    3. Else the plain PyPI wheel ``torch===X`` (the CUDA build, which also runs on the CPU), with a message.
    """
    spec = f"torch=={version}+cpu"
    if pip.has_locally(spec):
        pip.install(spec)
        return "local"
    say(f"installing {spec} from PyTorch's CPU wheel index {index_url} (set TORCH_CPU_INDEX for a mirror)")
    res = pip.install("--extra-index-url", index_url, "--timeout", "30", "--retries", "2", spec,
                      capture=True, check=False)
    if res.returncode == 0:
        return "index"
    say(f"WARNING: could not install {spec} from {index_url}: {_index_failure(res)}")
    say(f"falling back to PyPI's torch {version}: the CUDA 13 build, about 4.7 GB installed instead of about "
        f"0.75 GB; it runs on the CPU all the same. For the small CPU build, make {index_url} reachable or set "
        f"TORCH_CPU_INDEX to a mirror of {DEFAULT_CPU_INDEX}, then `make clean-venv setup`.")
    pip.install(f"torch==={version}")
    return "pypi-fallback"


def install_torch_cuda(pip: Pip, version: str) -> str:
    """Install PyPI's CUDA build of torch; '===' so that a local '+cpu' wheel of the same version never matches."""
    pip.install(f"torch==={version}")
    return "pypi"


# ------------------------------------------------------------------------------------------ toolkit


def nvcc_version(nvcc: Path, run: Runner = subprocess.run) -> Optional[str]:
    """'13.0' from `nvcc --version` ('Cuda compilation tools, release 13.0, V13.0.88'); None if it does not run."""
    res = _run([str(nvcc), "--version"], run)
    if res is None or res.returncode != 0:
        return None
    m = re.search(r"release (\d+)\.(\d+)", res.stdout)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def find_cuda_home(torch_cuda: str, env: Dict[str, str], run: Runner = subprocess.run,
                   which: Callable[[str], Optional[str]] = shutil.which) -> Tuple[Optional[Path], str, List[str]]:
    """The CUDA toolkit named by $CUDA_HOME (or $CUDA_PATH) when its nvcc has torch's CUDA major version.

    Returns (home or None, its nvcc version, notes). Only an explicit variable selects an installed toolkit:
    torch's own guess (the nvcc on PATH, /usr/local/cuda) is often another CUDA version, which torch refuses
    to build with. A matching toolkit found there is named in a note, with the variable to set.
    """
    major = torch_cuda.split(".")[0]
    notes: List[str] = []

    def check(home: Path) -> Tuple[Optional[str], str]:
        nvcc = home / "bin" / "nvcc"
        if not nvcc.exists():
            return None, f"{home} has no bin/nvcc"
        ver = nvcc_version(nvcc, run)
        if not ver or ver.split(".")[0] != major:
            return None, f"{home} has nvcc {ver or '(does not run)'}, torch {torch_cuda} needs CUDA {major}.x"
        if not (home / "include" / "cuda_runtime.h").exists():
            return None, f"{home} has nvcc {ver} but no include/cuda_runtime.h"
        return ver, ""

    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            ver, why = check(Path(env[var]))
            if ver:
                return Path(env[var]), ver, notes
            notes.append(f"not using {var}={env[var]}: {why}")
    guesses = [Path(os.path.realpath(p)).parent.parent for p in [which("nvcc")] if p] + list(SYSTEM_CUDA_HOMES)
    for home in dict.fromkeys(guesses):
        ver, _ = check(home)
        if ver:
            notes.append(f"{home} holds CUDA {ver}: `CUDA_HOME={home} make setup` would use it instead of PyPI's nvcc")
            break
    return None, "", notes


def link_cudart(cuda_home: Path, cuda_major: str) -> Optional[Path]:
    """Add ``lib/libcudart.so -> libcudart.so.<major>`` where pip's CUDA runtime has only the versioned file.

    The linker step of torch's CUDA extensions passes ``-lcudart`` and would stop at
    "cannot find -lcudart". Returns the link made, or None when none was needed.
    """
    lib = cuda_home / "lib"
    link, target = lib / "libcudart.so", lib / f"libcudart.so.{cuda_major}"
    if link.exists() or not target.exists():
        return None
    link.symlink_to(target.name)
    return link


def pip_cuda_home(site_packages: Path, cuda_major: str) -> Path:
    """Where PyPI's CUDA packages unpack: site-packages/nvidia/cu<major>."""
    return site_packages / "nvidia" / f"cu{cuda_major}"


# --------------------------------------------------------------------------------------------- build


def build_mmcv_wheel(pip_cmd: Sequence[str], mmcv: str, dest: Path, env: Dict[str, str], log: Path,
                     expected_min: float) -> Path:
    """Compile mmcv with its ops into the wheel folder `dest`; returns the wheel.

    The whole build output goes to `log`; ninja's ``[k/N]`` lines are echoed about every tenth of the way.
    On failure the log is kept and its path printed; on success it moves, compressed, into `dest`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp.", dir=dest.parent))
    cmd = list(pip_cmd) + ["wheel", "-v", "--no-build-isolation", "--no-deps", f"mmcv=={mmcv}", "-w", str(tmp)]
    log.parent.mkdir(parents=True, exist_ok=True)
    start, shown = time.time(), -1
    proc = None
    try:
        with open(log, "w") as fh:
            fh.write(f"# {' '.join(cmd)}\n# " + " ".join(f"{k}={env.get(k, '')}" for k in BUILD_VARS) + "\n")
            fh.flush()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace")
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                m = re.match(r"\s*\[(\d+)/(\d+)\]", line)  # pip -v indents the build output
                if m:
                    k, n = int(m.group(1)), int(m.group(2))
                    if k * 10 // n > shown:
                        shown = k * 10 // n
                        say(f"mmcv build: {k}/{n} compile steps, {(time.time() - start) / 60:.0f} of about "
                            f"{expected_min:.0f} min")
            rc = proc.wait()
    except BaseException:  # Ctrl-C: stop the compilers, keep the log, leave no half-built folder
        if proc is not None and proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    wheels = sorted(tmp.glob("mmcv-*.whl"))
    if rc != 0 or not wheels:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-25:])
        print(tail, file=sys.stderr)
        raise SetupError(f"building mmcv {mmcv} failed (exit {rc}); the whole build log is kept in {log}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    with open(log, "rb") as src, gzip.open(dest / "build.log.gz", "wb") as dst:  # warnings stay readable
        shutil.copyfileobj(src, dst)
    log.unlink()
    return dest / wheels[0].name


BUILD_VARS = ("MMCV_WITH_OPS", "MAX_JOBS", "FORCE_CUDA", "TORCH_CUDA_ARCH_LIST", "CUDA_HOME", "PATH")


# ---------------------------------------------------------------------------------------------- plan


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def query_python(python: Path, code: str, run: Runner = subprocess.run) -> str:
    res = run([str(python), "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise SetupError(f"{python} -c {code!r} failed: {(res.stderr or '').strip().splitlines()[-1:]}")
    return res.stdout.strip()


def setup(venv: Path, device: str, cuda_archs: str = "", cpu_index: str = DEFAULT_CPU_INDEX,
          wheel_cache: Path = DEFAULT_WHEEL_CACHE, python: str = sys.executable, repo: Path = REPO,
          jobs: Optional[int] = None, run_doctor: bool = True) -> Dict:
    """Create or update the venv for `device` ('cpu' or 'cuda'); returns the record written to mec-setup.json."""
    if device not in ("cpu", "cuda"):
        raise SetupError(f"DEVICE must be cpu or cuda, not {device!r}")
    constraints = repo / "constraints.txt"
    pins = read_pins(constraints)
    torch_pin, mmcv_pin = pins["torch"], pins["mmcv"]
    py = venv_python(venv)
    fresh = not os.access(py, os.X_OK)
    if fresh:
        say(f"creating {venv}")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    try:
        previous = json.loads((venv / SETUP_RECORD).read_text())
    except (OSError, ValueError):
        previous = {}
    pip = Pip([str(py), "-m", "pip"], constraints)
    pip.install("setuptools", "wheel", "ninja", "numpy")
    record: Dict = {"device": device, "venv": str(venv)}

    if device == "cpu":
        record["torch_source"] = install_torch_cpu(pip, torch_pin, cpu_index)
    else:
        record["torch_source"] = install_torch_cuda(pip, torch_pin)
    torch_version, torch_cuda = query_python(
        py, "import torch; print(torch.__version__, torch.version.cuda or '-')").split()
    record.update(torch=torch_version, torch_cuda=None if torch_cuda == "-" else torch_cuda)
    py_tag = query_python(py, "import sys; print('cp%d%d' % sys.version_info[:2])")
    jobs = jobs or default_jobs()
    env = dict(os.environ, MMCV_WITH_OPS="1", MAX_JOBS=str(jobs))

    if device == "cpu":
        key, archs, cuda = wheel_cache_key(mmcv_pin, torch_version, py_tag), [], None
        record.update(cuda=None, archs=[])
    else:
        if record["torch_cuda"] is None:
            raise SetupError(f"pip installed torch {torch_version}, a CPU build; DEVICE=cuda needs PyPI's CUDA build: "
                             f"`make clean-venv setup DEVICE=cuda` (a local +cpu wheel must not shadow it)")
        major = torch_cuda.split(".")[0]
        cuda_home, cuda, notes = find_cuda_home(torch_cuda, dict(os.environ))
        for note in notes:
            say(note)
        if cuda_home is None:
            say(f"installing nvcc from PyPI's cuda-toolkit {pins.get('cuda-toolkit', '')} into {venv}")
            pip.install("cuda-toolkit[nvcc,cccl]")
            site = Path(query_python(py, "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
            cuda_home = pip_cuda_home(site, major)
            cuda = nvcc_version(cuda_home / "bin" / "nvcc") or ""
            if cuda.split(".")[0] != major:
                raise SetupError(f"the nvcc in {cuda_home} reports CUDA {cuda or '?'}, torch needs {major}.x")
            if link_cudart(cuda_home, major):
                say(f"linked {cuda_home}/lib/libcudart.so -> libcudart.so.{major} (needed by the linker)")
        archs, source = choose_cuda_archs(cuda_archs, visible_compute_caps())
        say(f"CUDA {cuda} from {cuda_home}; mmcv's kernels for compute capability {' '.join(archs)} (from {source})")
        key = wheel_cache_key(mmcv_pin, torch_version, py_tag, cuda, archs)
        env.update(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=" ".join(archs), CUDA_HOME=str(cuda_home),
                   PATH=f"{cuda_home}/bin:{env.get('PATH', '')}")
        record.update(cuda=cuda, cuda_home=str(cuda_home), archs=archs, archs_source=source)

    wheel_dir = wheel_cache / key
    wheels = sorted(wheel_dir.glob("mmcv-*.whl"))
    if wheels:
        say(f"using the cached mmcv wheel {wheel_dir}")
        wheel = wheels[0]
    else:
        expected = estimate_build_minutes(len(archs), jobs)
        say(f"building mmcv {mmcv_pin} with its compiled ops into {wheel_dir}: about {expected:.0f} min with "
            f"{jobs} jobs (MAX_JOBS), once per machine" + (f"; CUDA {cuda}, compute capability {' '.join(archs)}"
                                                            if cuda else ""))
        t0 = time.time()
        log = wheel_cache / f"{key}.build.log"
        wheel = build_mmcv_wheel([str(py), "-m", "pip"], mmcv_pin, wheel_dir, env, log, expected)
        built = {"mmcv": mmcv_pin, "torch": torch_version, "python": py_tag, "cuda": cuda, "archs": archs,
                 "max_jobs": jobs, "build_seconds": round(time.time() - t0, 1), "wheel": wheel.name,
                 "wheel_bytes": wheel.stat().st_size}
        (wheel_dir / BUILD_RECORD).write_text(json.dumps(built, indent=2) + "\n")
        say(f"built {wheel.name} ({wheel.stat().st_size / 1e6:.0f} MB) in {built['build_seconds'] / 60:.1f} min")
    pip.install(str(wheel))
    if not fresh and previous.get("mmcv_wheel") != str(wheel):
        # Every cached wheel is "mmcv 2.1.0" to pip, which would keep the one installed: replace it
        # (another device or other architectures than the last set-up of this venv).
        pip.install("--force-reinstall", "--no-deps", str(wheel))
    record.update(mmcv_wheel=str(wheel), wheel_key=key)

    pip.install("-e", f"{repo}[test]")
    (venv / SETUP_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    # the evaluator's numba kernels, compiled now (once per machine and version) instead of in a user's first run
    if subprocess.run([str(py), "-m", "mec_cli.evaluation.warmup"], cwd=repo).returncode != 0:
        raise SetupError("compiling the evaluation kernels failed (above)")
    if run_doctor:
        res = subprocess.run([str(py), "-m", "mec_cli.cli", "doctor", "--quiet"], cwd=repo)
        if res.returncode != 0:
            raise SetupError("`mec doctor` found a problem (above)")
    return record


def plan(device: str, cuda_archs: str = "", cpu_index: str = DEFAULT_CPU_INDEX, jobs: Optional[int] = None) -> Dict:
    """What `setup` would decide here before installing anything (for `make -n`-like inspection)."""
    out: Dict = {"device": device}
    jobs = jobs or default_jobs()
    if device == "cuda":
        archs, source = choose_cuda_archs(cuda_archs, visible_compute_caps())
        out.update(archs=archs, archs_source=source, build_minutes=round(estimate_build_minutes(len(archs), jobs)))
    else:
        out.update(cpu_index=cpu_index, build_minutes=round(estimate_build_minutes(0, jobs)))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m mec_cli.setup_env", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("device", help="print cpu or cuda: cuda where nvidia-smi lists a GPU")
    for name in ("setup", "plan"):
        p = sub.add_parser(name)
        p.add_argument("--device", default="", help="cpu or cuda (default: detected)")
        p.add_argument("--cuda-archs", default=os.environ.get("CUDA_ARCHS", ""),
                       help="compute capabilities to build mmcv for, e.g. '8.0 9.0' (default: the visible GPUs)")
        p.add_argument("--cpu-index", default=os.environ.get("TORCH_CPU_INDEX") or DEFAULT_CPU_INDEX)
        p.add_argument("--jobs", type=int, default=None, help="compile jobs (default: MAX_JOBS, else the cores)")
        if name == "setup":
            p.add_argument("--venv", type=Path, default=REPO / ".venv")
            p.add_argument("--wheel-cache", type=Path,
                           default=Path(os.environ.get("WHEEL_CACHE") or DEFAULT_WHEEL_CACHE))
            p.add_argument("--python", default=sys.executable, help="the python that creates the venv")
    args = ap.parse_args(argv)
    if args.cmd == "device":
        print(detect_device())
        return 0
    device = args.device or detect_device()
    try:
        if args.cmd == "plan":
            print(json.dumps(plan(device, args.cuda_archs, args.cpu_index, args.jobs), indent=2))
        else:
            setup(args.venv, device, args.cuda_archs, args.cpu_index or DEFAULT_CPU_INDEX, args.wheel_cache,
                  args.python, jobs=args.jobs)
    except SetupError as e:
        print(f"[mec setup] error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
