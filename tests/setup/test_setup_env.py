"""The set-up's decisions (mec_cli/setup_env.py), run against a stub pip, a stub venv python and a stub
nvidia-smi (stub_tool.py): no network, no compiler, no GPU."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mec_cli import setup_env as se

ROOT = Path(__file__).resolve().parents[2]
STUB = Path(__file__).with_name("stub_tool.py")
INDEX = "https://mirror.example/whl/cpu"


def _stub(path: Path, tool: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -S {STUB} {tool} \"$@\"\n")  # -S: starts faster
    path.chmod(0o755)
    return path


def _calls(log: Path, tool=None):
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [r for r in rows if tool is None or r["tool"] == tool]


@pytest.fixture
def stubs(tmp_path, monkeypatch):
    """A venv whose python is the stub; STUB_* variables steer it, and every call lands in ``log``."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.setenv("STUB_SITE", str(tmp_path / "venv" / "site"))
    for var in ("STUB_LOCAL", "STUB_INDEX", "STUB_PYPI_RC", "STUB_BUILD_FAIL", "STUB_GPUS", "CUDA_HOME", "CUDA_PATH",
                "MAX_JOBS"):
        monkeypatch.delenv(var, raising=False)
    venv = tmp_path / "venv"
    _stub(venv / "bin" / "python", "python")
    smi = _stub(tmp_path / "bin" / "nvidia-smi", "nvidia-smi")
    monkeypatch.setenv("PATH", f"{smi.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(se, "SYSTEM_CUDA_HOMES", ())

    class S:
        pass

    s = S()
    s.tmp, s.log, s.venv, s.cache = tmp_path, log, venv, tmp_path / "cache"
    s.pip = se.Pip([str(venv / "bin" / "python"), "-m", "pip"], ROOT / "constraints.txt")
    s.calls = lambda tool=None: _calls(log, tool)
    return s


# ------------------------------------------------------------------------------------ CPU torch


def test_cpu_torch_from_the_local_wheel_never_names_an_index(stubs, monkeypatch):
    monkeypatch.setenv("STUB_LOCAL", "1")
    assert se.install_torch_cpu(stubs.pip, "2.13.0", INDEX) == "local"
    args = [c["args"] for c in stubs.calls("pip")]
    assert args[0][:2] == ["install", "--dry-run"] and "--no-index" in args[0] and args[0][-1] == "torch==2.13.0+cpu"
    assert args[1] == ["install", "-q", "-c", str(ROOT / "constraints.txt"), "torch==2.13.0+cpu"]  # today's command
    assert len(args) == 2 and not any(INDEX in a or "--extra-index-url" in a for call in args for a in call)


def test_cpu_torch_from_the_configured_index_when_not_local(stubs, monkeypatch):
    monkeypatch.setenv("STUB_INDEX", "ok")
    assert se.install_torch_cpu(stubs.pip, "2.13.0", INDEX) == "index"
    last = stubs.calls("pip")[-1]["args"]
    assert last[last.index("--extra-index-url") + 1] == INDEX and last[-1] == "torch==2.13.0+cpu"


def test_cpu_torch_falls_back_to_pypi_with_a_message_when_the_index_fails(stubs, capsys):
    assert se.install_torch_cpu(stubs.pip, "2.13.0", INDEX) == "pypi-fallback"
    args = [c["args"] for c in stubs.calls("pip")]
    assert "--extra-index-url" in args[1] and args[2][-1] == "torch===2.13.0" and len(args) == 3
    out = capsys.readouterr().out
    assert f"could not install torch==2.13.0+cpu from {INDEX}: the index cannot be reached (ConnectTimeoutError)" in out
    assert "TORCH_CPU_INDEX" in out and "4.7 GB" in out


def test_index_failure_names_the_reason():
    def res(out):
        return subprocess.CompletedProcess([], 1, out, "")

    real = ("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError('<HTTPSConnection>: "
            "Failed to establish a new connection: [Errno -2] Name or service not known')': /whl/cpu/torch/\n"
            "ERROR: Cannot install torch==2.13.0+cpu because these package versions have conflicting dependencies.")
    assert se._index_failure(res(real)) == "the index cannot be reached (Name or service not known)"
    assert se._index_failure(res("ERROR: No matching distribution found for torch==2.13.0+cpu")) == \
        "ERROR: No matching distribution found for torch==2.13.0+cpu"
    assert se._index_failure(res("")) == "pip exited with 1"


def test_cpu_torch_fails_clearly_when_pypi_fails_too(stubs, monkeypatch):
    monkeypatch.setenv("STUB_PYPI_RC", "1")
    with pytest.raises(se.SetupError, match=r"torch===2\.13\.0.*exit 1"):
        se.install_torch_cpu(stubs.pip, "2.13.0", INDEX)


def _fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal valid wheel, enough for pip to resolve it."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {f"{name}/__init__.py": "",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{k},,\n" for k in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    return path


def test_has_locally_asks_real_pip_about_find_links_only(tmp_path, monkeypatch):
    """The check that keeps this workplace's local +cpu wheel in use: a real pip, --no-index, a find-links folder."""
    _fake_wheel(tmp_path, "mecprobe", "1.0+cpu")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/never-used")  # an index lookup would fail
    pip = se.Pip([sys.executable, "-m", "pip"], ROOT / "constraints.txt")
    assert pip.has_locally("mecprobe==1.0+cpu")
    assert not pip.has_locally("mecprobe==2.0+cpu")


# ------------------------------------------------------------------------------ GPUs and archs


def test_device_and_compute_caps_come_from_nvidia_smi(stubs, monkeypatch):
    assert se.detect_device() == "cpu" and se.visible_compute_caps() == []
    monkeypatch.setenv("STUB_GPUS", "9.0,9.0,8.6")
    assert se.detect_device() == "cuda"
    assert se.visible_compute_caps() == ["9.0", "9.0", "8.6"]
    assert se.detect_device(nvidia_smi=str(stubs.tmp / "missing")) == "cpu"


def test_parse_archs_normalises_every_spelling():
    assert se.parse_archs("9.0 8.0;8.0,sm_86 120 9.0+PTX") == ["8.0", "8.6", "9.0", "9.0+PTX", "12.0"]
    with pytest.raises(se.SetupError, match="'ampere' is not a compute capability"):
        se.parse_archs("ampere")


def test_archs_from_the_user_then_the_gpus_then_the_default():
    assert se.choose_cuda_archs("8.0 9.0", ["8.6"]) == (["8.0", "9.0"], "CUDA_ARCHS")
    archs, source = se.choose_cuda_archs("", ["9.0", "9.0", "8.6"])
    assert archs == ["8.6", "9.0"] and "nvidia-smi" in source
    archs, source = se.choose_cuda_archs(" ", [])
    assert archs == list(se.DEFAULT_CUDA_ARCHS) == ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0"] and "default" in source


def test_a_gpu_older_than_torchs_build_is_refused_with_what_to_do():
    with pytest.raises(se.SetupError, match=r"7\.0 .*older than 7\.5.*V100.*DEVICE=cpu"):
        se.choose_cuda_archs("", ["7.0"])


def test_cache_key_keeps_todays_cpu_key_and_separates_cuda_builds():
    assert se.wheel_cache_key("2.1.0", "2.13.0+cpu", "cp311") == "mmcv-2.1.0_torch-2.13.0+cpu_cp311"
    k90 = se.wheel_cache_key("2.1.0", "2.13.0+cu130", "cp311", "13.0", ["9.0"])
    assert k90 == "mmcv-2.1.0_torch-2.13.0+cu130_cuda-13.0_sm90_cp311"
    keys = {k90, se.wheel_cache_key("2.1.0", "2.13.0+cu130", "cp311", "13.0", se.parse_archs("9.0 8.0")),
            se.wheel_cache_key("2.1.0", "2.13.0+cu130", "cp311", "13.1", ["9.0"]),
            se.wheel_cache_key("2.1.0", "2.13.0+cu130", "cp312", "13.0", ["9.0"]),
            se.wheel_cache_key("2.1.0", "2.13.0+cu130", "cp311", "13.0", ["9.0+PTX"])}
    assert len(keys) == 5
    assert se.wheel_cache_key("2.1.0", "t", "cp311", "13.0", se.parse_archs("9.0 8.0")) == \
        se.wheel_cache_key("2.1.0", "t", "cp311", "13.0", se.parse_archs("8.0;9.0"))


def test_build_estimate_grows_with_archs_and_shrinks_with_jobs():
    assert round(se.estimate_build_minutes(0, 2)) == 12  # the measured CPU build (benchmarks/RESULTS.md)
    assert se.estimate_build_minutes(2, 2) > se.estimate_build_minutes(1, 2) > se.estimate_build_minutes(1, 16)


# ------------------------------------------------------------------------------------- toolkit


def _toolkit(home: Path, release: str, headers: bool = True) -> Path:
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    (home / "bin" / "nvcc").chmod(0o755)
    if headers:
        (home / "include").mkdir()
        (home / "include" / "cuda_runtime.h").write_text("")
    return home


def test_cuda_home_is_used_only_with_torchs_cuda_major(tmp_path, monkeypatch):
    monkeypatch.setattr(se, "SYSTEM_CUDA_HOMES", ())
    cu12, cu13 = _toolkit(tmp_path / "cuda-12.4", "12.4"), _toolkit(tmp_path / "cuda-13.0", "13.0")
    nohdr = _toolkit(tmp_path / "wrapper", "13.0", headers=False)
    no = lambda name: None  # noqa: E731
    home, ver, notes = se.find_cuda_home("13.0", {"CUDA_HOME": str(cu12), "CUDA_PATH": str(cu13)}, which=no)
    assert (home, ver) == (cu13, "13.0") and "nvcc 12.4, torch 13.0 needs CUDA 13.x" in notes[0]
    assert se.find_cuda_home("13.0", {"CUDA_HOME": str(nohdr)}, which=no)[0] is None
    # a matching toolkit that only torch's guess would find is named, not silently used
    home, _, notes = se.find_cuda_home("13.0", {}, which=lambda name: str(cu13 / "bin" / "nvcc"))
    assert home is None and notes == [f"{cu13} holds CUDA 13.0: `CUDA_HOME={cu13} make setup` would use it "
                                      "instead of PyPI's nvcc"]


def test_cudart_link_is_made_once_and_only_where_needed(tmp_path):
    lib = tmp_path / "cu13" / "lib"
    lib.mkdir(parents=True)
    assert se.link_cudart(tmp_path / "cu13", "13") is None  # no runtime: nothing to link
    (lib / "libcudart.so.13").write_bytes(b"")
    link = se.link_cudart(tmp_path / "cu13", "13")
    assert link == lib / "libcudart.so" and os.readlink(link) == "libcudart.so.13"
    assert se.link_cudart(tmp_path / "cu13", "13") is None


# --------------------------------------------------------------------------------------- build


def test_failed_build_keeps_its_log_and_leaves_no_wheel_folder(stubs, monkeypatch, capsys):
    monkeypatch.setenv("STUB_BUILD_FAIL", "1")
    dest, log = stubs.cache / "key", stubs.cache / "key.build.log"
    with pytest.raises(se.SetupError, match=re.escape(f"the whole build log is kept in {log}")):
        se.build_mmcv_wheel(stubs.pip.cmd, "2.1.0", dest, dict(os.environ), log, 5)
    assert "nms_cuda.cu(12): error" in log.read_text() and "nms_cuda.cu(12): error" in capsys.readouterr().err
    assert not dest.exists() and [p.name for p in stubs.cache.iterdir()] == [log.name]


def test_successful_build_moves_the_wheel_into_its_key_folder(stubs, capsys):
    dest, log = stubs.cache / "key", stubs.cache / "key.build.log"
    wheel = se.build_mmcv_wheel(stubs.pip.cmd, "2.1.0", dest, dict(os.environ), log, 5)
    assert wheel == dest / "mmcv-2.1.0-cp311-cp311-linux_x86_64.whl" and wheel.exists()
    assert not log.exists() and (dest / "build.log.gz").exists()
    assert sorted(p.name for p in stubs.cache.iterdir()) == ["key"]
    assert "mmcv build: 1/3 compile steps" in capsys.readouterr().out


# ------------------------------------------------------------------------------- whole set-up


def test_cpu_setup_here_takes_the_local_wheel_and_todays_cache_key(stubs, monkeypatch):
    monkeypatch.setenv("STUB_LOCAL", "1")
    monkeypatch.setenv("STUB_TORCH", "2.13.0+cpu -")
    rec = se.setup(stubs.venv, "cpu", cpu_index=INDEX, wheel_cache=stubs.cache, repo=ROOT, jobs=2, run_doctor=False)
    assert rec["torch_source"] == "local" and rec["wheel_key"] == "mmcv-2.1.0_torch-2.13.0+cpu_cp311"
    pips = stubs.calls("pip")
    build = next(c for c in pips if c["args"][0] == "wheel")
    assert build["env"]["MMCV_WITH_OPS"] == "1" and build["env"]["MAX_JOBS"] == "2"
    assert build["env"]["FORCE_CUDA"] is None and build["env"]["TORCH_CUDA_ARCH_LIST"] is None
    assert not any("--extra-index-url" in c["args"] or "cuda-toolkit[nvcc,cccl]" in c["args"] for c in pips)
    assert json.loads((stubs.venv / se.SETUP_RECORD).read_text())["archs"] == []
    assert pips[-1]["args"][-2:] == ["-e", f"{ROOT}[test]"]
    # then, with the venv's python, the evaluator's kernels are compiled (issue 19)
    calls = stubs.calls()
    last_pip = max(i for i, c in enumerate(calls) if c["tool"] == "pip")
    assert [c["args"] for c in calls[last_pip + 1:]] == [["-m", "mec_cli.evaluation.warmup"]]


def test_cuda_setup_installs_nvcc_links_cudart_and_builds_for_the_gpus(stubs, monkeypatch, capsys):
    monkeypatch.setenv("STUB_TORCH", "2.13.0+cu130 13.0")
    monkeypatch.setenv("STUB_GPUS", "9.0,9.0")
    rec = se.setup(stubs.venv, "cuda", wheel_cache=stubs.cache, repo=ROOT, jobs=2, run_doctor=False)
    home = stubs.venv / "site" / "nvidia" / "cu13"
    pips = [c["args"] for c in stubs.calls("pip")]
    assert pips[1][-1] == "torch===2.13.0" and "cuda-toolkit[nvcc,cccl]" in pips[2]
    assert os.readlink(home / "lib" / "libcudart.so") == "libcudart.so.13"
    build = next(c for c in stubs.calls("pip") if c["args"][0] == "wheel")["env"]
    assert build == {"MMCV_WITH_OPS": "1", "MAX_JOBS": "2", "FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "9.0",
                     "CUDA_HOME": str(home)}
    key = "mmcv-2.1.0_torch-2.13.0+cu130_cuda-13.0_sm90_cp311"
    assert rec["wheel_key"] == key and rec["archs"] == ["9.0"] and "nvidia-smi" in rec["archs_source"]
    built = json.loads((stubs.cache / key / se.BUILD_RECORD).read_text())
    assert built["cuda"] == "13.0" and built["archs"] == ["9.0"]
    assert json.loads((stubs.venv / se.SETUP_RECORD).read_text())["archs"] == ["9.0"]
    out = capsys.readouterr().out
    assert "about 30 min with 2 jobs" in out and out.index("about 30 min") < out.index("mmcv build: 1/3")

    # Same machine again: the cached wheel, no build. Another GPU: another key, a new build.
    stubs.log.unlink()
    se.setup(stubs.venv, "cuda", wheel_cache=stubs.cache, repo=ROOT, jobs=2, run_doctor=False)
    assert not any(c["args"][0] == "wheel" for c in stubs.calls("pip"))
    rec = se.setup(stubs.venv, "cuda", cuda_archs="8.0 9.0", wheel_cache=stubs.cache, repo=ROOT, jobs=2,
                   run_doctor=False)
    assert rec["wheel_key"].endswith("_sm80-sm90_cp311")
    assert [c["env"]["TORCH_CUDA_ARCH_LIST"] for c in stubs.calls("pip") if c["args"][0] == "wheel"] == ["8.0 9.0"]
    # pip sees "mmcv 2.1.0" either way: only the changed wheel is forced in, and only after a change
    forced = [c["args"][-1] for c in stubs.calls("pip") if "--force-reinstall" in c["args"]]
    assert forced == [rec["mmcv_wheel"]] and "_sm80-sm90_" in forced[0]


def test_cuda_setup_uses_a_matching_cuda_home_without_pip_nvcc(stubs, monkeypatch):
    home = _toolkit(stubs.tmp / "cuda-13.0", "13.0")
    monkeypatch.setenv("CUDA_HOME", str(home))
    monkeypatch.setenv("STUB_TORCH", "2.13.0+cu130 13.0")
    rec = se.setup(stubs.venv, "cuda", cuda_archs="9.0", wheel_cache=stubs.cache, repo=ROOT, jobs=2,
                   run_doctor=False)
    assert rec["cuda_home"] == str(home)
    assert not any("cuda-toolkit[nvcc,cccl]" in c["args"] for c in stubs.calls("pip"))


def test_cuda_setup_refuses_a_cpu_torch(stubs, monkeypatch):
    monkeypatch.setenv("STUB_TORCH", "2.13.0+cpu -")
    with pytest.raises(se.SetupError, match="a CPU build; DEVICE=cuda needs PyPI's CUDA build"):
        se.setup(stubs.venv, "cuda", cuda_archs="9.0", wheel_cache=stubs.cache, repo=ROOT, run_doctor=False)


# ------------------------------------------------------------------------------------ Makefile


def _make_n(*args):
    out = subprocess.run(["make", "-n", "-s", "setup", *args], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return out


def test_makefile_passes_its_variables_to_the_module_and_keys_the_stamp(tmp_path):
    venv = tmp_path / "v"
    cuda = _make_n(f"VENV={venv}", "DEVICE=cuda", "CUDA_ARCHS=8.0 9.0", "TORCH_CPU_INDEX=" + INDEX,
                   f"WHEEL_CACHE={tmp_path}/w")
    assert "-m mec_cli.setup_env setup" in cuda and f"--venv '{venv}'" in cuda and "--device 'cuda'" in cuda
    assert "--cuda-archs '8.0 9.0'" in cuda and f"--cpu-index '{INDEX}'" in cuda
    assert f"--wheel-cache '{tmp_path}/w'" in cuda
    other = _make_n(f"VENV={venv}", "DEVICE=cuda", "CUDA_ARCHS=9.0")
    stamp = lambda text: re.search(r"touch (\S+)", text).group(1)  # noqa: E731
    assert stamp(cuda) != stamp(other) and stamp(cuda).startswith(f"{venv}/.mec-setup-")
    assert "--cpu-index 'https://download.pytorch.org/whl/cpu'" in _make_n(f"VENV={venv}", "DEVICE=cpu")
    # every `make setup` then makes sure the evaluator's kernels are compiled (a no-op when they are)
    assert f"{venv}/bin/python -m mec_cli.evaluation.warmup" in cuda.splitlines()[-1]


def test_the_module_runs_on_the_standard_library_alone():
    code = ("import sys; import mec_cli.setup_env\n"
            "extra = [m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names"
            " and m not in ('mec_cli', '__main__') and not m.startswith('mec_cli.')]\nprint(extra)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    res = subprocess.run([sys.executable, "-S", "-m", "mec_cli.setup_env", "plan", "--device", "cuda",
                          "--cuda-archs", "9.0", "--jobs", "16"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(res.stdout) == {"device": "cuda", "archs": ["9.0"], "archs_source": "CUDA_ARCHS",
                                      "build_minutes": 4}
