"""The `mec` command line. Typer only; every heavy import happens inside a command."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from mec_cli import __version__

app = typer.Typer(
    name="mec",
    help="Multi-Expert Cascade (MEC) toolkit for long-tailed object detection on MMDetection 3.x.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", "-V", callback=_version_callback, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    """Multi-Expert Cascade (MEC) toolkit for long-tailed object detection on MMDetection 3.x."""


def _register() -> None:
    from mec_cli.cli import data, demo, doctor, eval, report, study, train  # noqa: F401  (each adds its commands)


_register()


OPTIONAL_VALUE_FLAGS = {"--resume": "auto"}  # `--resume` alone means: from the work dir's last checkpoint


MULTI_VALUE_OPTIONS = ("--cfg-options",)  # MMDetection style: --cfg-options a=1 b=2


def _expand_optional_values(argv: list) -> list:
    """Give options whose value is optional their default value when they stand alone, and repeat
    a multi-value option before each of its ``key=value`` items."""
    out = []
    multi = None
    for i, arg in enumerate(argv):
        if multi and not arg.startswith("-") and "=" in arg and out[-1] != multi:
            out.append(multi)
        elif arg.startswith("-"):
            multi = arg if arg in MULTI_VALUE_OPTIONS else None
        out.append(arg)
        if arg in OPTIONAL_VALUE_FLAGS and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(OPTIONAL_VALUE_FLAGS[arg])
    return out


def _reuse_freed_memory() -> None:
    """Let glibc serve large arrays from the heap and keep what is freed there, so memory freed by one evaluation is
    reused by the next instead of being unmapped and faulted in again (a 40 MB precision array took 30 ms to
    first-touch, 5 ms when reused; a mode of the 1.5 M-detection benchmark faulted in 90 MB, 0.05 s, every time).
    The peak memory stays what the largest step needs."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: arrays up to 1 GB from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GB of freed heap for the next array
    except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
        pass


def _plain_pages_where_huge_ones_stall() -> None:
    """Stop numpy from asking for transparent huge pages where the kernel compacts memory synchronously for them.

    numpy madvises every large array for huge pages; with THP defrag set to ``madvise`` (as on this project's
    machines) each such allocation stalls in compaction, and first-touching 500 MB took 1.8 s instead of 0.4 s.
    Only this process's numpy setting changes; a machine that would not stall keeps numpy's default.
    """
    try:
        with open("/sys/kernel/mm/transparent_hugepage/defrag") as f:
            setting = f.read()
    except OSError:
        return
    stalls = any(f"[{mode}]" in setting for mode in ("always", "madvise", "defer+madvise"))
    _reuse_freed_memory()
    if stalls and "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # read when numpy is first imported (after this point)
        if "numpy" in sys.modules:
            try:
                from numpy._core.multiarray import _set_madvise_hugepage
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _set_madvise_hugepage
            _set_madvise_hugepage(False)


def main() -> None:
    """The ``mec`` console entry point: usage errors and signals end in one line, never a traceback.

    Exit codes: 0 success, 2 bad input (a MecError or a usage error), 130 SIGINT, 143 SIGTERM; ``mec doctor``
    exits 1 when the install is broken.
    """
    import sys

    from mec_cli.cli._common import err_console, error_line
    from mec_cli.signals import EXIT_SIGINT, EXIT_SIGTERM, Terminated, install

    install()
    _plain_pages_where_huge_ones_stall()
    try:
        code = app(args=_expand_optional_values(sys.argv[1:]), prog_name="mec", standalone_mode=False)
    except typer.TyperException as e:  # typer's click: usage errors, bad parameters
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # `mec report` alone: typer has shown its help
            sys.exit(0)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        error_line(f"{e.format_message()}{where}")
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt) as e:
        terminated = isinstance(e, Terminated) or isinstance(e.__cause__, Terminated)
        err_console.print("[yellow]terminated (SIGTERM)[/]" if terminated else "[yellow]interrupted[/]")
        sys.exit(EXIT_SIGTERM if terminated else EXIT_SIGINT)
    sys.exit(code if isinstance(code, int) else 0)


def entry() -> None:
    """The ``mec`` console script and ``python -m mec_cli.cli``: :func:`main`, then a quick exit.

    After a command has finished, Python's own shutdown (tearing down about 800 modules: numba, typer, rich, ...)
    takes 0.15 to 0.25 s on 2 cores, longer than evaluating a 1.5 M-detection results file; none of it touches the
    outputs, which are written, renamed and closed by then. So when no other Python thread is alive, the exit
    handlers run (``atexit``: logging, multiprocessing, temporary files), stdout and stderr are flushed, and the
    process ends without that teardown. Anything unusual (another thread alive, an exception) takes the normal
    exit. Tests call :func:`main`, which exits normally.
    """
    import atexit
    import sys
    import threading

    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    if not isinstance(code, int) or threading.active_count() != 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the normal exit would not write it either
            pass
    os._exit(code)
