"""mmengine hooks that every `mec train` run gets (the worker adds them):

* :class:`MECProgressHook`: a Rich progress display (iteration, losses, learning rate, ETA on one live line);
* :class:`MECCheckpointHook`: mmengine's CheckpointHook, but preemption-safe: the checkpoint is written to a
  temporary file and renamed, ``last_checkpoint`` is replaced atomically after it, and only then are outdated
  checkpoints removed, so a kill at any moment leaves the previous checkpoint usable and never a truncated
  ``iter_N.pth``;
* :class:`MECStopHook`: after a SIGTERM or SIGINT (:func:`mec_cli.signals.graceful`), every rank agrees to stop
  after the current iteration, a checkpoint is saved and :class:`TrainingStopped` ends the run;
* :class:`MECRandomStateHook`: the checkpoint keeps torch's random state, and a resumed run takes it back, so that
  a run stopped and resumed ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mec_cli.io import write_text_atomic
from mec_cli.signals import STOP


@HOOKS.register_module()
class MECProgressHook(Hook):
    """Shows a live bar on a terminal (rank 0 only); mmengine's logger keeps writing its usual lines."""

    priority = "VERY_LOW"

    def __init__(self, interval: int = 1):
        self.interval = interval
        self._progress = None
        self._task: Optional[int] = None
        self._start = 0.0
        self._plain_every = 1
        self._first = 0

    def before_train(self, runner) -> None:
        self._plain_every = max(1, runner.max_iters // 10)
        self._first = runner.iter
        self._start = time.time()
        if not is_main_process() or not sys.stderr.isatty():
            return

        self._progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.description}"),
                                  TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True),
                                  transient=False)
        self._progress.start()
        self._task = self._progress.add_task("", total=runner.max_iters, completed=runner.iter)
        self._start = time.time()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not is_main_process():
            return
        done = runner.iter + 1
        outputs = {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in (outputs or {}).items()
                   if k == "loss" or "loss_cls" in k}
        loss = outputs.get("loss", float("nan"))
        lr = runner.optim_wrapper.get_lr()["lr"][0]
        parts = " ".join(f"{k}={v:.3f}" for k, v in outputs.items() if k.startswith("s"))
        if self._progress is not None:
            if done % self.interval == 0:
                self._progress.update(self._task, completed=done, description=f"loss={loss:.3f} lr={lr:.2e} {parts}")
        elif done % self._plain_every == 0 or done == runner.max_iters:
            # No terminal (CI, a pipe): a plain line every tenth of the run.
            rate = (time.time() - self._start) / max(1, done - self._first)
            eta = rate * (runner.max_iters - done)
            print(f"train iter {done}/{runner.max_iters} loss={loss:.3f} lr={lr:.2e} eta={eta:.0f}s", file=sys.stderr,
                  flush=True)

    def after_train(self, runner) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class TrainingStopped(Exception):
    """A run stopped on request after a completed iteration, with its checkpoint saved."""

    def __init__(self, iteration: int, checkpoint: str, signal_name: str, exit_code: int):
        self.iteration, self.checkpoint = iteration, checkpoint
        self.signal_name, self.exit_code = signal_name, exit_code
        super().__init__(f"stopped by {signal_name} after iteration {iteration}; checkpoint {checkpoint} saved; "
                         "continue with the same command and `resume`")


@HOOKS.register_module()
class MECCheckpointHook(CheckpointHook):
    """CheckpointHook whose saves are atomic (see the module docstring); same options as mmengine's."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated = []
        if self.max_keep_ckpts > 0 and not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        tmp_name = f".{filename}.tmp-{os.getpid()}"
        runner.save_checkpoint(self.out_dir, tmp_name, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        os.replace(os.path.join(self.out_dir, tmp_name), self.last_ckpt)
        write_text_atomic(os.path.join(runner.work_dir, "last_checkpoint"), self.last_ckpt)
        for old in outdated:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)


@HOOKS.register_module()
class MECStopHook(Hook):
    """Stop cleanly after the iteration during which a stop was requested: save a checkpoint, then raise."""

    priority = "LOWEST"  # after the CheckpointHook, which may have saved this iteration already

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._agreed(runner):
            return
        hook = next(h for h in runner.hooks if isinstance(h, CheckpointHook))
        step = runner.iter + 1
        if not str(hook.last_ckpt or "").endswith(hook.filename_tmpl.format(step)):
            hook.by_epoch = False  # a stop between epochs saves the iteration reached, as iter_N.pth
            hook.filename_tmpl = "iter_{}.pth"
            hook._save_checkpoint_with_step(runner, step, dict(epoch=runner.epoch, iter=step))
        raise TrainingStopped(step, str(hook.last_ckpt), STOP.name or "a signal", STOP.exit_code or 143)

    @staticmethod
    def _agreed(runner) -> bool:
        """Whether any rank was asked to stop: every rank leaves the loop after the same iteration."""
        wanted = bool(STOP)
        if dist.is_available() and dist.is_initialized():
            device = next(runner.model.parameters()).device
            flag = torch.tensor([int(wanted), int(STOP.signum or 0)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag[0].item() and not STOP:
                STOP.signum = int(flag[1].item())
            return bool(flag[0].item())
        return wanted


@HOOKS.register_module()
class MECRandomStateHook(Hook):
    """Keep torch's random number generators (CPU, and CUDA where used) in the checkpoint; restore them on resume.

    mmengine resumes the weights, the optimiser, the schedule and the data order (its iteration-based loop replays
    the data loader up to the iteration reached, which also replays the random transforms of the data), but not the
    generator that the model draws from (the RoI samplers' permutations): without this hook a resumed run draws
    other samples than the run that never stopped, and ends with other weights. Only torch's generators are kept:
    numpy's and Python's are advanced by that replay of the data, and restoring them as well would advance them twice.
    """

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["mec_random_state"] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("mec_random_state")
        if not state or not getattr(runner, "_resume", False):  # weights only (load_from): no state taken
            return
        torch.set_rng_state(state["torch"].cpu())
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
