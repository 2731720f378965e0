"""The process that runs mmengine's Runner: `python -m mec_cli.worker train|test CONFIG [--launcher L]`.

The launch layer (:mod:`mec_cli.launch`) names the task explicitly: it calls :func:`run` in its own process for
a single process, or has torchrun / srun start this module once per rank.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import uuid
import warnings
from typing import Optional

from mec_cli.errors import name_options


def _runner(config: str, launcher: str, cfg_options: Optional[dict] = None):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mec_cli.hooks  # noqa: F401  (registers the MEC hooks, added below)
    from mec_cli.compat import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    # mmdet's mask head copies its (inference-only) mask tensor with new_tensor, and torch warns on every
    # evaluation; only that warning, only from that module, is silenced.
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning,
                            module=r"mmdet\.models\.roi_heads\.mask_heads\.fcn_mask_head")
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if isinstance(cfg.get("visualizer"), dict):
        # mmengine keeps one Visualizer per name for the whole process, and mmdet's runtime names it
        # 'visualizer': a second Runner in this process would get the first one's, which writes into the
        # first run's log dir (FileNotFoundError once that dir is gone, e.g. a finished evaluation's).
        cfg.visualizer.name = f"mec-{uuid.uuid4().hex}"
    if launcher != "none":
        os.environ.setdefault("LOCAL_RANK", "0")
        import torch

        if not torch.cuda.is_available() and not torch.distributed.is_initialized():
            # mmengine's init_dist calls torch.cuda.set_device unconditionally; on the CPU the process
            # group is made here (gloo), and the Runner then finds it already initialised.
            timeout = (cfg.get("env_cfg", {}).get("dist_cfg") or {}).get("timeout")
            if launcher == "slurm":
                _slurm_env()
            torch.distributed.init_process_group(
                backend="gloo", **({"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}))
    present = {h.get("type") for h in cfg.get("custom_hooks", [])}
    ours = ("MECProgressHook", "MECStopHook", "MECRandomStateHook")
    cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + [dict(type=t) for t in ours if t not in present]
    checkpoint = (cfg.get("default_hooks") or {}).get("checkpoint")
    if checkpoint is not None and checkpoint.get("type") in ("CheckpointHook", "mmengine.CheckpointHook"):
        checkpoint.type = "MECCheckpointHook"  # atomic saves (mec_cli.hooks)
    return Runner.from_cfg(cfg)


def _slurm_env() -> None:
    """What mmengine's Slurm set-up (``_init_dist_slurm``) derives from Slurm's variables, for ranks on the CPU:
    RANK and WORLD_SIZE from SLURM_PROCID and SLURM_NTASKS, LOCAL_RANK from SLURM_LOCALID, MASTER_ADDR from the
    first host of SLURM_NODELIST (unless set), MASTER_PORT as set (by `mec train`) or 29500."""
    env = os.environ
    if "MASTER_ADDR" not in env:
        env["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1").strip()
    env.setdefault("MASTER_PORT", "29500")
    env.update(RANK=env["SLURM_PROCID"], WORLD_SIZE=env["SLURM_NTASKS"], LOCAL_RANK=env.get("SLURM_LOCALID", "0"))


# What the process group raises when another rank of the job is gone (its sockets closed) or silent (timed out):
# gloo's RuntimeErrors, and torch's DistError family (NCCL, the store).
_PEER_LOST = re.compile(r"Connection (closed|reset) by peer|Broken pipe|timed out", re.IGNORECASE)


def peer_failure(error: BaseException) -> Optional[str]:
    """One line saying that another rank of this job is gone or silent, when ``error`` came from the process
    group; None for any other error (and outside a distributed run)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    seen, e = [], error
    while e is not None and e not in seen:
        seen.append(e)
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        text = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]  # gloo's source location and advice left out
        if isinstance(e, getattr(dist, "DistError", ())) or (isinstance(e, RuntimeError) and _PEER_LOST.search(str(e))):
            rank, world = dist.get_rank(), dist.get_world_size()
            what = ("a collective operation timed out: another process of this job stopped answering"
                    if re.search(r"timed out", str(e), re.IGNORECASE) else "another process of this job is gone"
                    if _PEER_LOST.search(str(e)) else "the process group failed")
            return (f"rank {rank} of {world} stops: {what} ({text}); the launcher's report (torchrun, srun) names "
                    "the process and why it ended")
        e = e.__cause__ or e.__context__
    return None


def run_train(config: str, launcher: str = "none") -> None:
    """Train; a SIGTERM or SIGINT stops after the current iteration with a checkpoint (raises TrainingStopped)."""
    from mec_cli.signals import graceful

    with graceful():
        runner = _runner(config, launcher)
        runner.train()


def run_test(config: str, launcher: str = "none", checkpoint: Optional[str] = None) -> Optional[dict]:
    """Run the test loop; return MECMetric's structured results on rank 0."""
    runner = _runner(config, launcher, {"load_from": checkpoint} if checkpoint else None)
    if runner.cfg.get("load_from"):  # mmengine would load weights of another model with warnings only
        from mec_cli.compat import check_checkpoint_fits

        check_checkpoint_fits(runner.model, runner.cfg.load_from)
    runner.test()
    metric = runner.test_evaluator.metrics[0]
    return getattr(metric, "last_results", None)


TASKS = {"train": "training", "test": "inference"}  # the worker's tasks, and what each runs


def run(task: str, config: str, launcher: str = "none") -> Optional[dict]:
    """Run ``task`` ('train' or 'test') on ``config``: the one entry point of the launch layer
    (:func:`mec_cli.launch.run_worker`) and of this module's command line. A test returns its results."""
    if task == "train":
        return run_train(config, launcher)
    if task == "test":
        return run_test(config, launcher)
    raise ValueError(f"unknown worker task {task!r}; expected one of {', '.join(TASKS)}")


def _close_process_group() -> None:
    """Meet the other ranks, then tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads are sometimes still joinable when their owner
    is destroyed, and the rank dies with "terminate called without an active exception" (SIGABRT) after
    its work is done: about one run in four of a 2-process CPU evaluation did so.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mec_cli.worker")
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("config")
    parser.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm"])
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", help="test: where rank 0 writes the per-mode metrics (JSON)")
    args = parser.parse_args(argv)
    try:
        _main(args)
    except Exception as e:
        lost = peer_failure(e)
        if lost is None:
            raise
        # One line instead of a traceback from deep inside the collective; no teardown, whose barrier would wait
        # for the rank that is gone. Checkpoints are written atomically, so the last complete one stays usable.
        print(f"mec: {lost}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)


def _main(args) -> None:
    if args.task == "train":
        from mec_cli.hooks import TrainingStopped

        try:
            run_train(args.config, args.launcher)
        except TrainingStopped as stop:
            from mmengine.dist import is_main_process

            if is_main_process():  # this process was started by `mec train`: its parameters are written as its flags
                print(f"mec: {name_options(str(stop), lambda name: '--' + name.replace('_', '-'))}", file=sys.stderr,
                      flush=True)
            _close_process_group()
            sys.exit(stop.exit_code)
    else:
        results = run_test(args.config, args.launcher, args.checkpoint)
        from mmengine.dist import is_main_process

        if args.out and is_main_process():  # only rank 0 holds the evaluated results
            from mec_cli.io import write_json_atomic

            write_json_atomic(args.out, results)
    _close_process_group()


if __name__ == "__main__":
    main()
