"""Environment check: versions of the stack, mmcv's compiled ops, and the CUDA side (builds, driver, GPUs, NCCL).

`collect_environment()` returns data; `mec doctor` (mec_cli/cli/doctor.py) displays it. The CUDA findings are
computed by `cuda_findings()` from plain data, so the GPU-side logic is tested with fakes on a CPU machine.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mec_cli.setup_env import SETUP_RECORD  # the venv's set-up record; that module is standard library only

PACKAGES = ("torch", "mmcv", "mmengine", "mmdet", "lvis", "pycocotools", "numpy")
# Oldest Linux driver of each CUDA major version (NVIDIA's CUDA toolkit release notes, minor version
# compatibility): a driver older than this cannot run kernels built with that CUDA.
MIN_DRIVER = {"13": (580, 65, 6), "12": (525, 60, 13)}


def _version(name: str) -> Tuple[str, str]:
    """(version, problem) of an importable package; problem is '' when it imports."""
    try:
        from importlib.metadata import version

        ver = version(name)
    except Exception:
        ver = ""
    try:
        module = importlib.import_module(name)
    except Exception as e:  # an import error is exactly what doctor reports
        return ver or "-", f"{name} does not import: {type(e).__name__}: {e}".splitlines()[0]
    local = getattr(module, "__version__", "")
    if isinstance(local, str) and ver and local.startswith(ver + "+"):
        ver = local  # torch's build tag, '2.13.0+cu130' or '2.13.0+cpu', which pip's metadata may lack
    return ver or "?", ""


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def check_mmcv_ops(device: str = "cpu") -> str:
    """Run nms and RoIAlign from mmcv's compiled ops on `device` tensors; return '' when they work.

    On a GPU both run against the CPU on the same inputs: nms must keep the same boxes, RoIAlign's output and the
    gradient of its input (backward) must match.
    """
    try:
        import torch
        from mmcv.ops import RoIAlign, nms

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        _, keep = nms(boxes.to(device), scores.to(device), 0.5)
        if keep.tolist() != [0, 2]:
            return f"mmcv.ops.nms on {device} gave {keep.tolist()}, expected [0, 2]"
        results = {}
        for dev in dict.fromkeys([device, "cpu"]):
            feats = torch.arange(64.0).reshape(1, 1, 8, 8).to(dev).requires_grad_()
            rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0], [0.0, 2.5, 1.0, 7.0, 6.5]]).to(dev)
            out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2)(feats, rois)
            (out * torch.arange(1.0, 9.0).reshape(2, 1, 2, 2).to(dev)).sum().backward()
            results[dev] = (out.detach().cpu(), feats.grad.cpu())
            if tuple(out.shape) != (2, 1, 2, 2):
                return f"mmcv.ops.RoIAlign on {dev} gave shape {tuple(out.shape)}"
        if device != "cpu":
            (out, grad), (ref_out, ref_grad) = results[device], results["cpu"]
            if not torch.allclose(out, ref_out, atol=1e-4):
                return f"mmcv.ops.RoIAlign on {device} differs from the CPU result"
            if not torch.allclose(grad, ref_grad, atol=1e-4):
                return f"mmcv.ops.RoIAlign's backward on {device} differs from the CPU's"
    except Exception as e:
        if device != "cpu":
            return f"mmcv's CUDA ops fail on {device} ({_first_line(e)})"
        return f"mmcv's compiled ops do not load ({_first_line(e)}); rebuild mmcv with MMCV_WITH_OPS=1 (make setup)"
    return ""


# The probes run in child processes: mmcv ops built against another torch can crash the interpreter when asked
# (seen on an H200 machine: mmcv 2.1.0 built there for torch 2.11 died of SIGSEGV in get_compiling_cuda_version,
# inside the ostream code that formats the version text, while its nms and RoIAlign kernels worked).
_MMCV_CUDA_PROBE = "from mmcv.ops import get_compiling_cuda_version; print(get_compiling_cuda_version())"
_OPS_PROBE = ("import json, sys; from mec_cli.doctor import check_mmcv_ops; "
              "print(json.dumps(check_mmcv_ops(sys.argv[1])))")
PROBE_TIMEOUT_S = 300


def _probe_env() -> Dict[str, str]:
    """The environment of a probe: this process's, with the folder that holds this mec_cli first on the path."""
    here = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))


def probe_mmcv_ops(device: str) -> str:
    """:func:`check_mmcv_ops` on `device` in a child process of its own; '' when the ops work, else what went wrong:
    their error, or that they crashed or hung the child (this process lives on either way)."""
    try:
        res = subprocess.run([sys.executable, "-c", _OPS_PROBE, device], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_S, env=_probe_env())
    except subprocess.TimeoutExpired:
        return f"mmcv's ops on {device} did not finish within {PROBE_TIMEOUT_S} s"
    except OSError as e:
        return f"could not start a process to check mmcv's ops on {device} ({_first_line(e)})"
    if res.returncode < 0:
        return f"mmcv's ops crash the interpreter on {device} (signal {-res.returncode})"
    try:
        return str(json.loads(res.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the check of mmcv's ops on {device} failed (exit {res.returncode}: {last})"


# ------------------------------------------------------------------------------------------ CUDA: data


def _nvidia_smi() -> Optional[Dict]:
    """Driver version and the CUDA version it supports, from nvidia-smi; None when no driver answers."""
    try:
        res = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0 or q.returncode != 0:
        return None
    m = re.search(r"CUDA Version:\s*([\d.]+)", res.stdout)
    lines = q.stdout.split()
    return {"driver": lines[0] if lines else None, "driver_cuda": m.group(1) if m else None}


def _torch_cuda() -> Dict:
    """What torch knows: its CUDA build, the architectures it was compiled for, the GPUs it sees, NCCL."""
    import torch

    info: Dict = {"torch_cuda": torch.version.cuda, "torch_archs": [], "gpus": [], "nccl": None}
    if torch.version.cuda is None:
        return info
    info["torch_archs"] = torch.cuda.get_arch_list()
    try:
        info["nccl"] = ".".join(str(x) for x in torch.cuda.nccl.version())
    except Exception:
        pass
    with warnings.catch_warnings():  # "no NVIDIA driver" is what the report says, not a warning
        warnings.simplefilter("ignore")
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                major, minor = torch.cuda.get_device_capability(i)
                info["gpus"].append({"index": i, "name": torch.cuda.get_device_name(i),
                                     "capability": f"{major}.{minor}"})
    return info


class MmcvCrash(Exception):
    """mmcv's compiled ops crashed the process that asked them something (the message says how)."""


def _mmcv_cuda() -> Optional[str]:
    """The CUDA version mmcv's ops were compiled with ('13.0'), or None for a CPU-only build; :class:`MmcvCrash` when
    asking kills the (child) process."""
    try:
        res = subprocess.run([sys.executable, "-c", _MMCV_CUDA_PROBE], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_S, env=_probe_env())
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode < 0:
        raise MmcvCrash(f"signal {-res.returncode}")
    ver = res.stdout.strip().splitlines()[-1] if res.returncode == 0 and res.stdout.strip() else ""
    return ver if re.match(r"^\d+\.\d+", ver) else None


def _mmcv_archs() -> Optional[List[str]]:
    """The architectures the installed mmcv wheel was compiled for, from the venv's set-up record.

    `make setup` keys the cached wheel by them and writes them to <venv>/mec-setup.json; a wheel built
    another way has no record (None: unknown).
    """
    path = Path(sys.prefix) / SETUP_RECORD
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    archs = rec.get("archs")
    return list(archs) if isinstance(archs, list) else None


def collect_cuda(ops_ok: bool, mmcv: bool = True) -> Dict:
    """Everything CUDA-related as data, including whether mmcv's nms and RoIAlign run on the first GPU (in a child
    process, whatever the version query did); without ``mmcv`` (it does not import) only torch's, the driver's and
    the GPUs' side."""
    info = _torch_cuda()
    info["mmcv_missing"] = not mmcv
    try:
        info["mmcv_cuda"] = _mmcv_cuda() if mmcv else None
    except MmcvCrash as e:
        info["mmcv_cuda"], info["mmcv_crash"] = None, str(e)
    info["mmcv_archs"] = _mmcv_archs() if info["mmcv_cuda"] or info.get("mmcv_crash") else []
    smi = _nvidia_smi()
    info["driver"] = smi["driver"] if smi else None
    info["driver_cuda"] = smi["driver_cuda"] if smi else None
    info["cpu_ops_ok"] = ops_ok
    if info["gpus"] and mmcv:
        problem = check_mmcv_cuda_ops(info["gpus"][0]["index"])
        info["cuda_op"] = "ok" if not problem else problem
    else:
        info["cuda_op"] = None
    return info


def check_mmcv_cuda_ops(index: int) -> str:
    """nms and RoIAlign (forward and backward) on CUDA tensors of GPU `index`, in a child process; '' when they work
    and match the CPU."""
    return probe_mmcv_ops(f"cuda:{index}")


# ------------------------------------------------------------------------------------- CUDA: findings


def _arch_tuple(arch: str) -> Tuple[str, int, int]:
    """'sm_90' / 'compute_90' / '9.0' / '9.0+PTX' -> ('sm'|'ptx', 9, 0)."""
    m = re.fullmatch(r"(sm|compute)_(\d+)(\d)", arch)
    if m:
        return ("sm" if m.group(1) == "sm" else "ptx", int(m.group(2)), int(m.group(3)))
    m = re.fullmatch(r"(\d+)\.(\d+)(\+PTX)?", arch)
    if not m:
        raise ValueError(f"not a CUDA architecture: {arch!r}")
    return ("ptx" if m.group(3) else "sm", int(m.group(1)), int(m.group(2)))


def runs_on(capability: str, archs: Sequence[str]) -> bool:
    """Whether code built for `archs` runs on a GPU of compute capability `capability` ('8.6').

    A cubin for sm_XY runs on X.Z with Z >= Y (same major); PTX for compute_XY (or 'X.Y+PTX', which also
    carries the cubin) is compiled by the driver for any newer GPU.
    """
    major, minor = (int(x) for x in capability.split("."))
    for arch in archs:
        kind, a_major, a_minor = _arch_tuple(arch)
        if a_major == major and a_minor <= minor:
            return True
        if kind == "ptx" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def _show_archs(archs: Sequence[str]) -> str:
    return " ".join(archs) if archs else "none"


def cuda_findings(info: Dict) -> Tuple[str, List[str], List[str]]:
    """(summary, problems, warnings) from `collect_cuda`'s data; every problem and warning says what to do."""
    problems: List[str] = []
    notes: List[str] = []
    torch_cuda, mmcv_cuda, gpus = info.get("torch_cuda"), info.get("mmcv_cuda"), info.get("gpus") or []
    cpu_ops = "mmcv missing" if info.get("mmcv_missing") else "CPU ops ok" if info.get("cpu_ops_ok") else \
        "CPU ops failing"
    gpu_text = f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} visible" if gpus else "no GPU visible"
    if not torch_cuda:
        summary = f"CPU build, {gpu_text}, {cpu_ops}"
        if info.get("driver"):
            notes.append(f"torch is the CPU build but an NVIDIA driver ({info['driver']}) answers: for the GPUs, "
                         "`make clean-venv setup DEVICE=cuda`")
        return summary, problems, notes
    summary = f"CUDA build {torch_cuda}, {gpu_text}, {cpu_ops}"
    if info.get("mmcv_missing"):
        pass  # reported with the packages
    elif info.get("mmcv_crash"):
        crash = (f"mmcv's compiled ops crash the interpreter ({info['mmcv_crash']}) when asked their CUDA version "
                 "(get_compiling_cuda_version: the C++ code that formats the version text, not a kernel)")
        # the version text is not needed to train or evaluate: whether the ops work is the op checks' to say
        if info.get("cuda_op") == "ok":
            works = (f"their kernels work: nms and RoIAlign ran on GPU {gpus[0]['index']} forward and backward and "
                     "matched the CPU, so training and evaluation can use them")
        elif info.get("cuda_op"):
            works = "their kernels fail on the GPU too (below)"
        else:
            works = ("no GPU is visible to run their CUDA kernels; " +
                     ("their CPU ops work" if info.get("cpu_ops_ok") else "their CPU ops fail (above)"))
        notes.append(f"{crash}: {works}. mmcv formats its error messages the same way, so a bad input to an mmcv op "
                     "may crash instead of raising. `make clean-venv setup DEVICE=cuda` rebuilds mmcv against the "
                     "pinned torch")
    elif mmcv_cuda is None:
        (problems if gpus else notes).append(
            f"mmcv's ops were compiled without CUDA while torch is the CUDA {torch_cuda} build: "
            "`make clean-venv setup DEVICE=cuda` rebuilds them with CUDA")
    elif mmcv_cuda.split(".")[0] != torch_cuda.split(".")[0]:
        problems.append(f"mmcv's ops were compiled with CUDA {mmcv_cuda}, torch is the CUDA {torch_cuda} build: "
                        "`make clean-venv setup DEVICE=cuda` rebuilds mmcv against this torch")
    driver = info.get("driver")
    need = MIN_DRIVER.get(torch_cuda.split(".")[0])
    if driver and need and _version_tuple(driver) < need:
        problems.append(f"NVIDIA driver {driver} is older than {'.'.join(str(x) for x in need)}, which CUDA "
                        f"{torch_cuda} needs: install a {need[0]}-series or newer driver")
    elif gpus and not driver:
        notes.append("nvidia-smi does not answer, so the driver version is unknown: check that the NVIDIA driver "
                     "utilities are on PATH")
    torch_archs = info.get("torch_archs") or []
    mmcv_archs = info.get("mmcv_archs")
    for gpu in gpus:
        label = f"GPU {gpu['index']} ({gpu['name']}, compute capability {gpu['capability']})"
        if torch_archs and not runs_on(gpu["capability"], torch_archs):
            problems.append(f"{label} is not among the architectures torch {torch_cuda} was built for "
                            f"({_show_archs(torch_archs)}): use a supported GPU, or DEVICE=cpu")
        elif mmcv_cuda and mmcv_archs is not None and not runs_on(gpu["capability"], mmcv_archs):
            problems.append(f"{label} has no mmcv kernels (the wheel was built for {_show_archs(mmcv_archs)}): "
                            f"`make setup CUDA_ARCHS=\"{gpu['capability']}\"` builds one for it")
    if gpus and mmcv_cuda and mmcv_archs is None:
        notes.append("the mmcv wheel's architectures are unknown (it was not installed by `make setup`)")
    if gpus and not info.get("nccl"):
        notes.append("torch has no NCCL, so multi-GPU training cannot use it: reinstall PyPI's CUDA build of torch "
                     "(`make clean-venv setup DEVICE=cuda`)")
    op = info.get("cuda_op")
    if op and op != "ok" and (mmcv_cuda or info.get("mmcv_crash")):  # an mmcv without CUDA is said above
        problems.append(f"{op}: `make setup CUDA_ARCHS=\"{gpus[0]['capability']}\"` rebuilds mmcv for this GPU, "
                        "after fixing any problem above")
    return summary, problems, notes


def collect_environment() -> Dict:
    """Everything `mec doctor` shows, as data. ``problems`` is empty when the toolkit can run."""
    versions: Dict[str, str] = {"python": platform.python_version()}
    problems: List[str] = []
    notes: List[str] = []
    for name in PACKAGES:
        ver, problem = _version(name)
        versions[name] = ver
        if problem:
            problems.append(problem)
    devices: List[str] = []
    ops = "not checked"
    cuda: Dict = {}
    summary = ""
    mmcv_ok = not any(p.startswith("mmcv ") for p in problems)
    if not any(p.startswith("torch ") for p in problems):
        ops_problem = check_mmcv_ops() if mmcv_ok else "mmcv missing"
        if mmcv_ok:
            ops = "ok" if not ops_problem else "failed"
            if ops_problem:
                problems.append(ops_problem)
        if versions.get("mmcv", "").startswith("2.") and not versions["mmcv"].startswith(("2.0", "2.1")):
            problems.append(f"mmdet 3.3.0 needs mmcv < 2.2, found {versions['mmcv']}")
        # the GPU side is worth seeing on a broken install too (a GPU server being set up)
        cuda = collect_cuda(ops_ok=not ops_problem, mmcv=mmcv_ok)
        devices = [g["name"] for g in cuda["gpus"]]
        summary, cuda_problems, notes = cuda_findings(cuda)
        problems += cuda_problems
    return {"versions": versions, "mmcv_ops": ops, "cuda_devices": devices, "cuda": cuda, "cuda_summary": summary,
            "problems": problems, "warnings": notes}
