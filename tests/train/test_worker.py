"""The worker process ends its process group itself (not at interpreter shutdown), and no process `mec` starts
outlives it."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_worker_destroys_its_process_group_before_exit(tmp_path):
    # In a child process: a one-rank gloo group, then the worker's teardown; the group must be gone.
    code = textwrap.dedent("""
        import torch.distributed as dist
        from mec_cli.worker import _close_process_group
        dist.init_process_group("gloo", init_method="file://%s", rank=0, world_size=1)
        assert dist.is_initialized()
        _close_process_group()
        assert not dist.is_initialized()
        _close_process_group()  # a second call, or a run without a group, is a no-op
        print("closed")
    """ % (tmp_path / "store"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("closed")


def test_a_second_runner_in_one_process_gets_its_own_visualizer(synth_data, tmp_path):
    # mmengine shares a Visualizer per name across the process; a second Runner once reused the first one's,
    # writing into (or failing on, once deleted) the first run's log dir.
    import shutil

    from mec_cli import training
    from mec_cli.worker import _runner

    runners = []
    for name in ("a", "b"):
        run = training.prepare_training(training.TrainOptions(recipe="tiny_baseline", gpus=0, data_root=str(synth_data),
                                                              work_dir=str(tmp_path / name)))
        runners.append(_runner(str(training.write_run_files(run)), "none"))
        if name == "a":
            shutil.rmtree(tmp_path / "a")  # a finished evaluation's temporary work dir is removed
    first, second = runners
    assert first.visualizer is not second.visualizer
    assert str(second.visualizer._vis_backends["LocalVisBackend"]._save_dir).startswith(str(tmp_path / "b"))
    assert list((tmp_path / "b").glob("*/vis_data/config.py"))


# ---- children die with mec -------------------------------------------------------------------------------------
def _children(pid: int):
    """The pids whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _descendants(pid: int):
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, seconds: float):
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_of_a_killed_command_is_stopped_by_the_kernel(tmp_path):
    """run_child's child (torchrun, srun, a study stage) asks for SIGTERM when its parent dies: a SIGKILL of the
    parent, which no handler sees, still ends it."""
    code = textwrap.dedent("""
        import sys
        from mec_cli.signals import install, run_child
        install()
        run_child([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(600)"])
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    assert _wait_gone([child], 30) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sigkill_of_mec_train_ends_torchrun_and_its_workers(synth_data, tmp_path):
    """`mec train --procs 2` killed with SIGKILL mid-training: torchrun gets SIGTERM from the kernel and stops its
    two ranks (which stop after their iteration); none of them is left running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    log = tmp_path / "train.log"
    cmd = [sys.executable, "-m", "mec_cli.cli", "train", "--recipe", "tiny_baseline", "--gpus", "0", "--procs", "2",
           "--master-port", port, "--data-root", str(synth_data), "--work-dir", str(tmp_path / "work"),
           "--max-iters", "400", "--cfg-options", "train_dataloader.batch_size=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline, family = time.time() + 600, []
    try:
        while "train iter 40/400" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.time() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        family = _descendants(proc.pid)
        assert len(family) >= 3, family  # torchrun and its two ranks
        proc.kill()
        proc.wait()
        left = _wait_gone(family, 120)
        assert left == [], (left, log.read_text(errors="replace")[-3000:])
    finally:  # a failure leaves nothing running either
        for pid in family + (_descendants(proc.pid) if proc.poll() is None else []):
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.kill()
