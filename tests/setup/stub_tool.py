"""A stand-in for a venv's python, its pip and nvidia-smi, driven by STUB_* variables; it logs every call.

Run as ``stub_tool.py python ARGS`` or ``stub_tool.py nvidia-smi ARGS``. Each call appends one JSON line
(the tool, its arguments and the build variables it saw) to $STUB_LOG. No network, no installs.
"""
import json
import os
import sys
from pathlib import Path

BUILD_VARS = ("MMCV_WITH_OPS", "MAX_JOBS", "FORCE_CUDA", "TORCH_CUDA_ARCH_LIST", "CUDA_HOME")


def log(tool, args):
    with open(os.environ["STUB_LOG"], "a") as fh:
        fh.write(json.dumps({"tool": tool, "args": args, "env": {k: os.environ.get(k) for k in BUILD_VARS}}) + "\n")


def make_pip_toolkit(site: Path):
    home = site / "nvidia" / "cu13"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    (home / "lib").mkdir(parents=True, exist_ok=True)
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    nvcc.chmod(0o755)
    (home / "lib" / "libcudart.so.13").write_bytes(b"")


def pip(args):
    log("pip", args)
    if args[0] == "install" and "--dry-run" in args:
        if os.environ.get("STUB_LOCAL") == "1":
            return 0
        print("ERROR: Could not find a version that satisfies the requirement torch==2.13.0+cpu (from versions: none)")
        return 1
    if args[0] == "install" and "--extra-index-url" in args:
        if os.environ.get("STUB_INDEX") == "ok":
            return 0
        print("WARNING: Retrying after connection broken by 'ConnectTimeoutError'")
        print("ERROR: No matching distribution found for torch==2.13.0+cpu")
        return 1
    if args[0] == "install" and any(a.startswith("torch===") for a in args):
        return int(os.environ.get("STUB_PYPI_RC", "0"))
    if args[0] == "install" and any(a.startswith("cuda-toolkit") for a in args):
        make_pip_toolkit(Path(os.environ["STUB_SITE"]))
        return 0
    if args[0] == "wheel":
        for line in ("[1/3] c++ nms.cpp", "[2/3] nvcc nms_cuda.cu", "[3/3] c++ -shared _ext.so"):
            print("  " + line)  # pip -v indents what the build prints
        if os.environ.get("STUB_BUILD_FAIL"):
            print("nms_cuda.cu(12): error: identifier undefined")
            return 1
        out = Path(args[args.index("-w") + 1])
        (out / "mmcv-2.1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"PK stub wheel")
    return 0


def python(args):
    if args[:2] == ["-m", "pip"]:
        return pip(args[2:])
    log("python", args)
    if args[0] == "-c":
        code = args[1]
        if "torch.__version__" in code:
            print(os.environ["STUB_TORCH"])
        elif "purelib" in code:
            print(os.environ["STUB_SITE"])
        elif "cp%d" in code:
            print("cp311")
    return 0


def nvidia_smi(args):
    log("nvidia-smi", args)
    gpus = [g for g in os.environ.get("STUB_GPUS", "").split(",") if g]
    if not gpus:
        print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
        return 9
    if args == ["-L"]:
        for i, _ in enumerate(gpus):
            print(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})")
    else:
        print("\n".join(gpus))
    return 0


if __name__ == "__main__":
    sys.exit({"python": python, "nvidia-smi": nvidia_smi}[sys.argv[1]](sys.argv[2:]))
