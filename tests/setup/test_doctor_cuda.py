"""`mec doctor`'s CUDA side with faked torch, mmcv, nvidia-smi and GPUs: the findings a GPU machine would get."""
import pytest
from typer.testing import CliRunner

from mec_cli import doctor as d

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "capability": "9.0"}
A100 = {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "capability": "8.0"}
V100 = {"index": 0, "name": "Tesla V100-SXM2-32GB", "capability": "7.0"}
TORCH_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


def _info(**kw):
    info = {"torch_cuda": "13.0", "torch_archs": TORCH_ARCHS, "gpus": [H100], "nccl": "2.29.7", "mmcv_cuda": "13.0",
            "mmcv_archs": ["9.0"], "driver": "580.95.05", "driver_cuda": "13.0", "cpu_ops_ok": True, "cuda_op": "ok"}
    info.update(kw)
    return info


def test_runs_on_follows_cubin_and_ptx_compatibility():
    assert d.runs_on("8.6", ["sm_80"]) and d.runs_on("8.9", ["8.0"])  # same major, newer minor
    assert not d.runs_on("9.0", ["sm_80", "sm_86"]) and not d.runs_on("8.0", ["sm_86"])
    assert d.runs_on("12.0", ["9.0+PTX"]) and d.runs_on("10.0", ["compute_90"])  # PTX is JIT-compiled forward
    assert not d.runs_on("8.0", ["9.0+PTX"]) and not d.runs_on("7.0", TORCH_ARCHS)
    with pytest.raises(ValueError):
        d.runs_on("9.0", ["hopper"])


def test_a_healthy_gpu_machine_has_no_findings():
    summary, problems, notes = d.cuda_findings(_info(gpus=[H100, dict(H100, index=1)]))
    assert summary == "CUDA build 13.0, 2 GPUs visible, CPU ops ok" and problems == [] and notes == []


def test_cuda_build_without_a_gpu_says_so_and_is_not_a_problem():
    summary, problems, notes = d.cuda_findings(_info(gpus=[], driver=None, driver_cuda=None, cuda_op=None))
    assert summary == "CUDA build 13.0, no GPU visible, CPU ops ok" and problems == [] and notes == []


def test_old_driver_is_one_line_with_what_to_do():
    _, problems, _ = d.cuda_findings(_info(driver="550.54.15"))
    assert problems == ["NVIDIA driver 550.54.15 is older than 580.65.6, which CUDA 13.0 needs: "
                        "install a 580-series or newer driver"]
    assert d.cuda_findings(_info(driver="580.65.06"))[1] == []


def test_gpu_older_than_torchs_architectures():
    _, problems, _ = d.cuda_findings(_info(gpus=[V100], mmcv_archs=["7.5"], cuda_op=None))
    assert len(problems) == 1 and problems[0].startswith("GPU 0 (Tesla V100-SXM2-32GB, compute capability 7.0) is "
                                                         "not among the architectures torch 13.0 was built for")
    assert problems[0].endswith("use a supported GPU, or DEVICE=cpu")


def test_gpu_without_mmcv_kernels_names_the_archs_to_build():
    _, problems, _ = d.cuda_findings(_info(gpus=[H100, A100]))
    assert problems == ['GPU 1 (NVIDIA A100-SXM4-80GB, compute capability 8.0) has no mmcv kernels (the wheel was '
                        'built for 9.0): `make setup CUDA_ARCHS="8.0"` builds one for it']
    assert d.cuda_findings(_info(gpus=[H100, A100], mmcv_archs=["8.0", "9.0"]))[1] == []


def test_mmcv_without_cuda_on_a_gpu_machine_and_failing_op():
    _, problems, _ = d.cuda_findings(_info(mmcv_cuda=None, mmcv_archs=[], cuda_op=None))
    assert problems == ["mmcv's ops were compiled without CUDA while torch is the CUDA 13.0 build: "
                        "`make clean-venv setup DEVICE=cuda` rebuilds them with CUDA"]
    _, problems, _ = d.cuda_findings(_info(cuda_op="mmcv's CUDA ops fail on cuda:0 (RuntimeError: no kernel image)"))
    assert problems == ["mmcv's CUDA ops fail on cuda:0 (RuntimeError: no kernel image): "
                        '`make setup CUDA_ARCHS="9.0"` rebuilds mmcv for this GPU, after fixing any problem above']
    _, problems, _ = d.cuda_findings(_info(mmcv_cuda="12.8"))
    assert problems and "compiled with CUDA 12.8, torch is the CUDA 13.0 build" in problems[0]


def test_missing_nccl_and_cpu_torch_on_a_gpu_machine_are_warnings():
    _, problems, notes = d.cuda_findings(_info(nccl=None))
    assert problems == [] and len(notes) == 1 and notes[0].startswith("torch has no NCCL")
    summary, problems, notes = d.cuda_findings({"torch_cuda": None, "gpus": [], "driver": "580.95.05",
                                                "cpu_ops_ok": True})
    assert summary == "CPU build, no GPU visible, CPU ops ok" and problems == []
    assert notes == ["torch is the CPU build but an NVIDIA driver (580.95.05) answers: for the GPUs, "
                     "`make clean-venv setup DEVICE=cuda`"]


def _fake_gpu_machine(monkeypatch, op_result=""):
    ran = []
    monkeypatch.setattr(d, "_torch_cuda", lambda: {"torch_cuda": "13.0", "torch_archs": TORCH_ARCHS,
                                                   "gpus": [H100], "nccl": "2.29.7"})
    monkeypatch.setattr(d, "_mmcv_cuda", lambda: "13.0")
    monkeypatch.setattr(d, "_mmcv_archs", lambda: ["9.0"])
    monkeypatch.setattr(d, "_nvidia_smi", lambda: {"driver": "580.95.05", "driver_cuda": "13.0"})
    monkeypatch.setattr(d, "check_mmcv_cuda_ops", lambda index: ran.append(index) or op_result)
    return ran


def test_collect_cuda_runs_one_op_on_the_first_gpu(monkeypatch):
    ran = _fake_gpu_machine(monkeypatch)
    info = d.collect_cuda(ops_ok=True)
    assert ran == [0] and info["cuda_op"] == "ok" and info["driver"] == "580.95.05" and info["mmcv_archs"] == ["9.0"]
    ran = _fake_gpu_machine(monkeypatch, op_result="mmcv's CUDA ops fail on cuda:0 (RuntimeError: boom)")
    assert d.collect_cuda(ops_ok=True)["cuda_op"].endswith("boom)")


def test_doctor_command_shows_the_gpu_side_and_one_line_per_problem(monkeypatch):
    from mec_cli.cli import app

    info = _info(gpus=[H100, A100], driver="550.54.15")
    summary, problems, notes = d.cuda_findings(info)
    env = {"versions": {"python": "3.11.7", "torch": "2.13.0"}, "mmcv_ops": "ok", "cuda_devices": [], "cuda": info,
           "cuda_summary": summary, "problems": problems, "warnings": notes}
    monkeypatch.setattr(d, "collect_environment", lambda: env)
    res = CliRunner().invoke(app, ["doctor"], terminal_width=200)
    assert res.exit_code == 1
    out = res.output
    for text in ("CUDA build 13.0, 2 GPUs visible, CPU ops ok", "13.0 (sm_75 sm_80 sm_86 sm_90 sm_100 sm_120)",
                 "13.0 (9.0)", "2.29.7", "550.54.15 (CUDA 13.0)", "0: NVIDIA H100 80GB HBM3 (9.0)",
                 "1: NVIDIA A100-SXM4-80GB (8.0)", "ok (nms, RoIAlign forward and backward on GPU 0, as on the CPU)"):
        assert text in out, text
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "older than 580.65.6" in errors[0] and 'CUDA_ARCHS="8.0"' in errors[1]


def test_a_gpu_machine_without_mmcv_still_shows_its_gpu_side(monkeypatch):
    """A GPU server whose set-up stopped before mmcv: the packages' lines say what is missing, and the GPUs, driver
    and torch's CUDA build are still reported, with no finding about mmcv's (absent) kernels."""
    ran = _fake_gpu_machine(monkeypatch)
    monkeypatch.setattr(d, "_mmcv_cuda", lambda: pytest.fail("mmcv is not asked when it does not import"))
    info = d.collect_cuda(ops_ok=False, mmcv=False)
    assert ran == [] and info["mmcv_missing"] and info["gpus"] == [H100] and info["driver"] == "580.95.05"
    summary, problems, notes = d.cuda_findings(info)
    assert summary == "CUDA build 13.0, 1 GPU visible, mmcv missing" and problems == [] and notes == []

    from mec_cli.cli import app

    env = {"versions": {"python": "3.12.3", "torch": "2.11.0+cu130", "mmcv": "-"}, "mmcv_ops": "not checked",
           "cuda_devices": ["NVIDIA H100 80GB HBM3"], "cuda": info, "cuda_summary": summary,
           "problems": ["mmcv does not import: ModuleNotFoundError: No module named 'mmcv'"], "warnings": notes}
    monkeypatch.setattr(d, "collect_environment", lambda: env)
    out = CliRunner().invoke(app, ["doctor"], terminal_width=200).output
    for text in ("1 GPU visible, mmcv missing", "0: NVIDIA H100 80GB HBM3 (9.0)", "580.95.05 (CUDA 13.0)",
                 "- (mmcv missing)", "not checked (mmcv missing)"):
        assert text in out, text


def test_a_crashing_version_query_is_reported_as_that_and_the_gpu_ops_are_still_checked(monkeypatch):
    """The CUDA-version query runs in a child process: when it dies (an mmcv built on an H200 machine for its own
    torch 2.11 segfaulted so, in the ostream code that formats the text, while its kernels worked), doctor says so
    and still runs nms and RoIAlign on the GPU in a child of their own; working kernels are not called unusable."""
    monkeypatch.setattr(d, "_MMCV_CUDA_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(d.MmcvCrash, match="signal 11"):
        d._mmcv_cuda()
    monkeypatch.setattr(d, "_MMCV_CUDA_PROBE", "print('13.0')")
    assert d._mmcv_cuda() == "13.0"
    ran = _fake_gpu_machine(monkeypatch)

    def crash():
        raise d.MmcvCrash("signal 11")

    monkeypatch.setattr(d, "_mmcv_cuda", crash)
    info = d.collect_cuda(ops_ok=True)
    assert ran == [0] and info["mmcv_crash"] == "signal 11" and info["mmcv_cuda"] is None and info["cuda_op"] == "ok"
    assert info["mmcv_archs"] == ["9.0"]  # from the set-up's record: the GPU's architecture is still checked
    summary, problems, notes = d.cuda_findings(info)
    assert problems == [], problems
    assert len(notes) == 1 and "crash the interpreter (signal 11) when asked their CUDA version" in notes[0]
    assert "their kernels work: nms and RoIAlign ran on GPU 0 forward and backward and matched the CPU" in notes[0]
    from mec_cli.cli import app

    env = {"versions": {"python": "3.12.3", "torch": "2.11.0+cu130"}, "mmcv_ops": "ok", "cuda_devices": [],
           "cuda": info, "cuda_summary": summary, "problems": problems, "warnings": notes}
    monkeypatch.setattr(d, "collect_environment", lambda: env)
    res = CliRunner().invoke(app, ["doctor"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "crashed when asked (signal 11)" in res.output
    assert "ok (nms, RoIAlign forward and backward on GPU 0, as on the CPU)" in res.output
    assert "warning: mmcv's compiled ops crash the interpreter (signal 11)" in res.output

    # the same crash, and kernels that fail on the GPU: one problem line, for the kernels
    ran = _fake_gpu_machine(monkeypatch, op_result="mmcv's ops crash the interpreter on cuda:0 (signal 11)")
    monkeypatch.setattr(d, "_mmcv_cuda", crash)
    info = d.collect_cuda(ops_ok=True)
    _, problems, notes = d.cuda_findings(info)
    assert ran == [0] and len(problems) == 1 and problems[0].startswith("mmcv's ops crash the interpreter on cuda:0")
    assert "their kernels fail on the GPU too" in notes[0]
    # and no GPU at all (a login node): the CPU ops speak for the build
    _, problems, notes = d.cuda_findings(dict(info, gpus=[], cuda_op=None))
    assert problems == [] and "no GPU is visible to run their CUDA kernels; their CPU ops work" in notes[0]


def test_the_gpu_op_check_runs_in_a_child_process_that_may_die(monkeypatch):
    """probe_mmcv_ops runs check_mmcv_ops in a child: its answer, its crash or its failure, never this process's."""
    monkeypatch.setattr(d, "_OPS_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert d.probe_mmcv_ops("cuda:0") == "mmcv's ops crash the interpreter on cuda:0 (signal 11)"
    monkeypatch.setattr(d, "_OPS_PROBE", "import sys; print('loading', file=sys.stderr); raise SystemExit(3)")
    assert d.probe_mmcv_ops("cuda:1") == "the check of mmcv's ops on cuda:1 failed (exit 3: loading)"
    monkeypatch.setattr(d, "_OPS_PROBE", "import json, sys; print(json.dumps('boom on ' + sys.argv[1]))")
    assert d.probe_mmcv_ops("cuda:2") == "boom on cuda:2"
    monkeypatch.setattr(d, "check_mmcv_ops", lambda device: pytest.fail("not in this process"))
    monkeypatch.setattr(d, "probe_mmcv_ops", lambda device: f"asked {device}")
    assert d.check_mmcv_cuda_ops(3) == "asked cuda:3"


def test_the_real_op_check_in_a_child_on_the_cpu():
    """The real probe, in a real child, against this install's mmcv on the CPU: nms, RoIAlign forward and backward."""
    assert d.check_mmcv_ops("cpu") == ""
    assert d.probe_mmcv_ops("cpu") == ""
