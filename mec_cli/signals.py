"""SIGTERM handled like SIGINT, everywhere.

Slurm, Kubernetes and most schedulers stop a job with SIGTERM first (and SIGKILL some time later). Python's
default for SIGTERM is to die on the spot, so a `mec` command would exit 143 without a word and leave its
temporary files behind. :func:`install` makes SIGTERM raise :class:`Terminated`, a ``KeyboardInterrupt``: every
``finally`` and context manager then runs as it does for Ctrl-C (atomic writes drop their temporary files and
keep the previous outputs), and the CLI prints one line and exits 143.

Training is the exception: it must not stop mid-iteration. :func:`graceful` swaps in handlers that only raise a
flag; the training loop finishes its iteration, saves a checkpoint and stops (``mec_cli.hooks``). A second
signal, a few seconds after the first, stops at once.

Child processes (torchrun, srun, a worker) get the signal forwarded by :func:`run_child`, which then waits for
them to stop in their own time instead of killing them. They also die with `mec`, however it dies: a SIGKILL (or
the out-of-memory killer) leaves no handler to forward anything, so each child asks Linux, before it starts, for a
SIGTERM when its parent dies (:func:`die_with_parent`, ``PR_SET_PDEATHSIG``); torchrun passes that SIGTERM on to
its workers, which also ask for it themselves (:mod:`mec_cli.worker`), and a training stops after its iteration
with a checkpoint, as for any SIGTERM.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from typing import Callable, Dict, Iterator, List, Optional

EXIT_SIGTERM = 128 + signal.SIGTERM  # 143, what a shell reports for a process ended by SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT  # 130
REPEAT_WINDOW_S = 3.0


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def install() -> None:
    """Make SIGTERM raise :class:`Terminated` (in the main thread; a no-op elsewhere)."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _raise_terminated)


class StopRequest:
    """Set by a signal under :func:`graceful`; read by the training loop between iterations."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.at = 0.0

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or 0)


STOP = StopRequest()


@contextlib.contextmanager
def graceful() -> Iterator[StopRequest]:
    """SIGTERM and SIGINT only set :data:`STOP` inside the block; a second one raises at once."""

    def request(signum, frame) -> None:
        # A scheduler may deliver one stop twice (to the whole job and through our parent); only a signal that
        # comes a few seconds after the first means "stop now".
        if STOP and time.monotonic() - STOP.at > REPEAT_WINDOW_S:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if not STOP:
            STOP.signum, STOP.at = signum, time.monotonic()

    try:
        previous = {s: signal.signal(s, request) for s in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: leave the handlers alone
        yield STOP
        return
    try:
        yield STOP
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl():
    """libc's ``prctl``, or None where there is none (not Linux)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int = signal.SIGTERM, parent: Optional[int] = None) -> bool:
    """Ask Linux to send this process ``sig`` when its parent dies, however it dies (SIGKILL included); False where
    that cannot be asked (not Linux). ``parent``: the pid the parent had when it started this process; if it is
    already gone (this process was adopted by then), ``sig`` is sent at once.

    The kernel watches the thread that started the process: start such children from the main thread."""
    prctl = _prctl()
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)  # the parent died before the request took effect
    return True


def _child_dies_with(parent: int, prctl) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, between fork and exec, ask for SIGTERM when ``parent`` dies (async-signal
    work only: one prctl call, prepared before the fork, and getppid)."""

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # gone already: nobody waits for this child
            os._exit(128 + signal.SIGTERM)

    return setup


def run_child(cmd: List[str], env: Optional[Dict[str, str]] = None) -> int:
    """Run ``cmd`` and return its exit code; SIGINT or SIGTERM received meanwhile is passed on to the child.

    The child (and its own children: it leads a new process group) gets the same signal and may take its time
    to stop cleanly (a training saves its checkpoint); we wait for it, then re-raise. A second signal kills it.
    If this process dies without a word (SIGKILL), the child gets SIGTERM from the kernel (:func:`die_with_parent`).
    """
    prctl = _prctl()
    setup = _child_dies_with(os.getpid(), prctl) if prctl is not None else None
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=setup)
    try:
        return proc.wait()
    except KeyboardInterrupt as first:
        sig = signal.SIGTERM if isinstance(first, Terminated) else signal.SIGINT
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
