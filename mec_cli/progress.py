"""A Rich progress display for training: iteration, losses, learning rate and ETA on one live line."""
from __future__ import annotations

import sys
import time
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


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
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                                  TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
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
            print(f"train iter {done}/{runner.max_iters} loss={loss:.3f} lr={lr:.2e} eta={eta:.0f}s", file=sys.stderr, flush=True)

    def after_train(self, runner) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
