"""Launches beyond one machine, run for real on the CPU (gloo), each through the `mec train` command line:

* two "nodes" on this machine (two `mec train --nodes 2 --node-rank 0|1` processes, torchrun's static rendezvous)
  train together to the very weights of one node with two processes;
* a Slurm launch (`mec train --slurm`) under a stub `srun` that starts the tasks with the environment Slurm gives
  them (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST, ...) and a stub `scontrol`, to the same weights;
* a rank killed (SIGKILL) ends the job on every node with one clear line, and a rank that stops answering (SIGSTOP)
  ends it after the configured gloo timeout, not after gloo's default 30 minutes.

The tiny recipe on 64 px images, batch 2, two iterations: as short as a real launch gets.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mec_cli.compat import allow_mmengine_checkpoints

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SMALL = ["--cfg-options", "train_dataloader.batch_size=2", "--cfg-options",
         "train_dataloader.dataset.pipeline.2.scale=(64,64)", "--cfg-options", "default_hooks.logger.interval=1"]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _env(**extra):
    # one thread per rank in every launch, so that the runs compared do the same arithmetic in the same order
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _train(synth, work, *args, iters=2):
    return [sys.executable, "-m", "mec_cli.cli", "train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(synth),
            "--work-dir", str(work), "--max-iters", str(iters), "--seed", "0", *SMALL, *map(str, args)]


def _weights(work: Path, iters=2):
    allow_mmengine_checkpoints()
    return torch.load(work / f"iter_{iters}.pth", map_location="cpu")["state_dict"]


def _assert_same_weights(a: Path, b: Path):
    wa, wb = _weights(a), _weights(b)
    assert list(wa) == list(wb)
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def one_node_two_procs(synth_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("one_node")
    res = subprocess.run(_train(synth_data, work, "--procs", "2", "--master-port", _free_port()), capture_output=True,
                         text=True, env=_env(), cwd=work, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return work


def test_two_nodes_on_one_machine_train_to_the_weights_of_one_node_with_two_processes(synth_data, tmp_path,
                                                                                        one_node_two_procs):
    port = _free_port()
    nodes = [subprocess.Popen(_train(synth_data, tmp_path / f"node{r}", "--nodes", "2", "--node-rank", r,
                                     "--master-addr", "127.0.0.1", "--master-port", port, "--procs", "1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
             for r in (0, 1)]
    outs = [p.communicate(timeout=900) for p in nodes]
    for r, (p, (out, err)) in enumerate(zip(nodes, outs)):
        assert p.returncode == 0, (r, out[-2000:], err[-3000:])
        assert f"--nnodes=2 --node_rank={r} --master_addr=127.0.0.1 --master_port={port} --nproc_per_node=1" in out
    log = next((tmp_path / "node0").glob("*/*.log")).read_text()
    assert "Distributed training: True" in log and "GPU number: 2" in log  # mmengine's name for the world size
    assert not list((tmp_path / "node1").glob("iter_*.pth"))  # rank 0 (on node 0) saves
    _assert_same_weights(tmp_path / "node0", one_node_two_procs)


STUB_SRUN = """\
#!{python}
# A stand-in for Slurm's srun inside an allocation of one node: starts --ntasks copies of the command with the
# environment Slurm gives each task, ends the others when one fails (--kill-on-bad-exit), returns the worst code.
import json, os, subprocess, sys, time
args, opts, i = sys.argv[1:], {{}}, 0
while i < len(args) and args[i].startswith("-"):
    if args[i] == "-p":
        opts["partition"], i = args[i + 1], i + 2
        continue
    key, _, value = args[i].lstrip("-").partition("=")
    opts[key], i = value, i + 1
cmd = args[i:]
with open(os.environ["STUB_SRUN_LOG"], "w") as f:
    json.dump({{"opts": opts, "cmd": cmd, "MASTER_PORT": os.environ.get("MASTER_PORT")}}, f)
n, per = int(opts["ntasks"]), int(opts["ntasks-per-node"])
tasks = [subprocess.Popen(cmd, env=dict(
    os.environ, SLURM_JOB_ID="4242", SLURM_STEP_ID="0", SLURM_JOB_NAME=opts.get("job-name", ""),
    SLURM_PROCID=str(r), SLURM_NTASKS=str(n), SLURM_LOCALID=str(r % per), SLURM_NODEID=str(r // per),
    SLURM_NNODES=str(-(-n // per)), SLURM_NTASKS_PER_NODE=str(per), SLURM_NODELIST="localhost",
    SLURM_STEP_NODELIST="localhost", SLURM_CPUS_PER_TASK=opts.get("cpus-per-task", "1"))) for r in range(n)]
codes = {{}}
while len(codes) < n:
    for r, t in enumerate(tasks):
        if r not in codes and t.poll() is not None:
            codes[r] = t.returncode
            if t.returncode != 0 and opts.get("kill-on-bad-exit") == "1":
                for other in tasks:
                    if other.poll() is None:
                        other.kill()
    time.sleep(0.1)
sys.exit(max(abs(c) for c in codes.values()))
"""
STUB_SCONTROL = """\
#!/bin/sh
# `scontrol show hostname LIST`: one host per line (the stub's lists hold plain names)
[ "$1 $2" = "show hostname" ] && echo "$3" | tr ',' '\\n'
"""


def test_a_slurm_launch_runs_under_srun_with_slurms_environment(synth_data, tmp_path, one_node_two_procs):
    import json

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", STUB_SRUN.format(python=sys.executable)), ("scontrol", STUB_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    port, log = _free_port(), tmp_path / "srun.json"
    env = _env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", STUB_SRUN_LOG=str(log))
    res = subprocess.run(_train(synth_data, tmp_path / "work", "--slurm", "--partition", "debug", "--procs", "2",
                                "--job-name", "mec-test", "--master-port", port),
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    srun = json.loads(log.read_text())
    assert srun["opts"] == {"partition": "debug", "job-name": "mec-test", "ntasks": "2", "ntasks-per-node": "2",
                            "cpus-per-task": "5", "kill-on-bad-exit": "1"}  # no --gres on the CPU
    assert srun["cmd"][-2:] == ["--launcher", "slurm"] and srun["MASTER_PORT"] == port
    text = next((tmp_path / "work").glob("*/*.log")).read_text()
    assert "Distributed training: True" in text and "GPU number: 2" in text
    _assert_same_weights(tmp_path / "work", one_node_two_procs)


def _worker_pids(config: Path):
    """{rank: pid} of the worker processes that run ``config`` (found in /proc)."""
    pids = {}
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"mec_cli.worker" in cmd and str(config).encode() in cmd:
                env = dict(kv.split(b"=", 1) for kv in (proc / "environ").read_bytes().split(b"\0") if b"=" in kv)
                pids[int(env[b"RANK"])] = int(proc.name)
        except (OSError, ValueError, KeyError):
            continue
    return pids


def _wait_training(work: Path, config: Path, procs: list, ranks=2, deadline_s=600):
    """The ranks' pids once the first iteration is logged."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        for p in procs:
            assert p.poll() is None, p.communicate()
        logs = list(work.glob("*/*.log"))
        pids = _worker_pids(config)
        if logs and "Iter(train)" in logs[0].read_text() and len(pids) == ranks:
            return pids
        time.sleep(0.5)
    raise AssertionError("training did not start")


def test_a_killed_rank_ends_the_job_with_a_clear_line_on_every_node(synth_data, tmp_path):
    port = _free_port()
    nodes = [subprocess.Popen(_train(synth_data, tmp_path / f"node{r}", "--nodes", "2", "--node-rank", r,
                                     "--master-addr", "127.0.0.1", "--master-port", port, iters=500),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
             for r in (0, 1)]
    try:
        pids = _wait_training(tmp_path / "node0", tmp_path / "node1" / "config.py", nodes, ranks=1)
        os.kill(pids[1], signal.SIGKILL)
        outs = [p.communicate(timeout=300) for p in nodes]  # no hang: both nodes end
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    (out0, err0), (out1, err1) = outs
    assert nodes[0].returncode != 0 and nodes[1].returncode != 0
    # node 0: its rank saw its peer go and said so in one line; its torchrun and `mec train` then ended
    assert "mec: rank 0 of 2 stops: another process of this job is gone" in err0, err0[-3000:]
    assert "error: training exited with code" in out0 + err0
    # node 1: torchrun names the killed rank and the signal; `mec train` ends with its one line
    assert "Signal 9 (SIGKILL)" in out1 + err1 and "error: training exited with code" in out1 + err1, err1[-3000:]


def test_a_rank_that_stops_answering_ends_the_job_after_the_gloo_timeout(synth_data, tmp_path):
    work = tmp_path / "work"
    proc = subprocess.Popen(_train(synth_data, work, "--procs", "2", "--master-port", _free_port(), "--cfg-options",
                                   "env_cfg.dist_cfg.timeout=15", iters=500),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    try:
        pids = _wait_training(work, work / "config.py", [proc])
        os.kill(pids[1], signal.SIGSTOP)  # alive, holding its sockets open, silent
        out, err = proc.communicate(timeout=300)
    finally:
        for pid in _worker_pids(work / "config.py").values():
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "mec: rank 0 of 2 stops: a collective operation timed out" in err, err[-3000:]
    assert "error: training exited with code" in out + err
    assert "dist_cfg=dict(backend='gloo', timeout=15)" in (work / "config.py").read_text()
