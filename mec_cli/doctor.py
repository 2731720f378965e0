"""Environment check: versions of the stack, mmcv's compiled ops, CUDA devices."""
from __future__ import annotations

import importlib
import platform
from typing import Dict, List, Tuple

PACKAGES = ("torch", "mmcv", "mmengine", "mmdet", "lvis", "pycocotools", "numpy")


def _version(name: str) -> Tuple[str, str]:
    """(version, problem) of an importable package; problem is '' when it imports."""
    try:
        from importlib.metadata import version

        ver = version(name)
    except Exception:
        ver = ""
    try:
        importlib.import_module(name)
    except Exception as e:  # an import error is exactly what doctor reports
        return ver or "-", f"{name} does not import: {type(e).__name__}: {e}".splitlines()[0]
    return ver or "?", ""


def check_mmcv_ops() -> str:
    """Run nms and RoIAlign from mmcv's compiled ops on CPU tensors; return '' when they work."""
    try:
        import torch
        from mmcv.ops import RoIAlign, nms

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
        _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        if keep.tolist() != [0, 2]:
            return f"mmcv.ops.nms gave {keep.tolist()}, expected [0, 2]"
        feats = torch.arange(64.0).reshape(1, 1, 8, 8)
        out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2)(feats, torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]))
        if tuple(out.shape) != (1, 1, 2, 2):
            return f"mmcv.ops.RoIAlign gave shape {tuple(out.shape)}"
    except Exception as e:
        return f"mmcv's compiled ops do not load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); rebuild mmcv with MMCV_WITH_OPS=1 (make setup)"
    return ""


def collect_environment() -> Dict:
    """Everything `mec doctor` shows, as data. ``problems`` is empty when the toolkit can run."""
    versions: Dict[str, str] = {"python": platform.python_version()}
    problems: List[str] = []
    for name in PACKAGES:
        ver, problem = _version(name)
        versions[name] = ver
        if problem:
            problems.append(problem)
    devices: List[str] = []
    ops = "not checked"
    if not any(p.startswith(("torch ", "mmcv ")) for p in problems):
        import torch

        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        ops_problem = check_mmcv_ops()
        ops = "ok" if not ops_problem else "failed"
        if ops_problem:
            problems.append(ops_problem)
        if versions.get("mmcv", "").startswith("2.") and not versions["mmcv"].startswith(("2.0", "2.1")):
            problems.append(f"mmdet 3.3.0 needs mmcv < 2.2, found {versions['mmcv']}")
    return {"versions": versions, "mmcv_ops": ops, "cuda_devices": devices, "problems": problems}
