"""What every command shares: the console, the error wrapper, and option helpers.

Imports only typer and rich, so that `mec --help` stays fast.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.models import OptionInfo

from mec_cli.errors import MecError, name_options

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (a newline in a file name, an undecodable byte of one)
    written as its escape, so that it stays on one line and prints in any encoding."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def error_line(message: str) -> None:
    """One red ``error:`` line on stderr; the message is printed as text, brackets and all, on one line."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True)


def option_flags(command: Callable) -> Dict[str, str]:
    """A Typer command's long flag per parameter, under its Python name and under the name its flag spells
    (``time_limit`` and ``time`` -> ``--time``)."""
    flags: Dict[str, str] = {}
    for name, param in inspect.signature(command).parameters.items():
        if isinstance(param.default, OptionInfo):
            longs = [d.split("/")[0] for d in param.default.param_decls or () if d.startswith("--")]
            flag = longs[0] if longs else "--" + name.replace("_", "-")
            flags[name] = flags[flag[2:].replace("-", "_")] = flag
    return flags


def cli_text(text: str, command: Callable) -> str:
    """A library message or note with the parameters it names (`data_root`) written as ``command``'s flags."""
    return name_options(text, option_flags(command).get)


def given(*names: str) -> List[str]:
    """Those of the current command's options ``names`` (Python parameter names) that the user gave, on the command
    line or through the environment, rather than left at their defaults."""
    try:  # typer 0.28 (pinned) carries its own click; tests/cli/test_bad_input.py would fail at once without it
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # a typer that uses the click package
        from click.core import ParameterSource
        from click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return []
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return [n for n in names if ctx.get_parameter_source(n) in sources]


def refuse_given(names: Sequence[str], why: str) -> None:
    """Refuse the first of the options ``names`` that the user gave: it does not apply (``why``, e.g. 'to --results'),
    and an option that changes nothing is a mistake to point out, not to ignore."""
    got = given(*names)
    if got:
        raise MecError(f"does not apply {why}", option=got[0])


def comma_list(value: Optional[str], option: str) -> Optional[List[str]]:
    """The items of a comma-separated option (None when it was not given); an empty item or one named twice is a
    MecError naming ``option`` (the Python name), as an empty bin is."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise MecError(f"has an empty item in {value!r}: write names separated by single commas", option=option)
    twice = next((v for i, v in enumerate(items) if v in items[:i]), None)
    if twice is not None:
        raise MecError(f"names {twice!r} twice", option=option)
    return items


@contextlib.contextmanager
def _tables_to_stderr(when: bool) -> Iterator[None]:
    """While a command writes an output to standard output (``--out /dev/stdout``), its tables and messages go to
    standard error, so that standard output holds the file alone (``mec eval ... --out /dev/stdout | jq``)."""
    if not when:
        yield
        return
    saved = console._file  # None: follow sys.stdout
    console.file = sys.stderr
    try:
        yield
    finally:
        console._file = saved


def cli_errors(fn: F) -> F:
    """Turn a :class:`MecError` into one red line on stderr and exit code 2 (never a traceback), the parameters it
    names written as flags; SIGINT and SIGTERM into one line and exit 130 or 143 (temporary files are gone by then:
    every write is atomic). A command with an output on standard output shows its tables on standard error."""
    flags = option_flags(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mec_cli.io import names_stdout
        from mec_cli.signals import EXIT_SIGINT, EXIT_SIGTERM, Terminated

        to_stdout = any(isinstance(v, (str, Path)) and names_stdout(v) for v in kwargs.values())
        try:
            with _tables_to_stderr(to_stdout):
                return fn(*args, **kwargs)
        except MecError as e:
            message = name_options(str(e), flags.get)
            option = (flags.get(e.option) or f"--{e.option.replace('_', '-')}") if e.option else ""
            error_line(f"{option} {message}" if option and option not in message else message)
            raise typer.Exit(2) from None
        except Terminated:
            err_console.print("[yellow]terminated (SIGTERM): stopped; outputs that were not complete were not "
                              "written[/]")
            raise typer.Exit(EXIT_SIGTERM) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted: stopped; outputs that were not complete were not written[/]")
            raise typer.Exit(EXIT_SIGINT) from None

    return wrapper  # type: ignore[return-value]


def data_table(title: str, **kwargs: Any):
    """A Rich table for rows of numbers: no vertical rules, so that more columns fit a terminal."""
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAVY, show_edge=False, collapse_padding=True, **kwargs)


def print_table(table: Any) -> None:
    """Print a Rich table. Into a log or a pipe (no terminal width to fit) it prints at its natural width, so no
    cell is cut; in a terminal, Rich fits it to the window."""
    if not console.is_terminal:
        natural = Console(width=1000).measure(table).maximum
        if natural > console.width:  # Console.print(width=...) never exceeds the console's own width
            Console(file=console.file, width=natural, highlight=False).print(table)
            return
    console.print(table)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def progress_bar(transient: bool = False):
    """A Rich progress bar with a spinner, counts, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err_console,
                    transient=transient)


@contextlib.contextmanager
def step_progress() -> Iterator[Callable[..., None]]:
    """A transient display for a library call that reports ``report(step, done=0, total=0)``: a line per step with
    a spinner and its elapsed time, and a bar where the step has a total (on a terminal only; safe from threads)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        tasks: Dict[str, Any] = {}

        def report(step: str, done: int = 0, total: int = 0) -> None:
            if step not in tasks:
                for task in tasks.values():  # a new step: the earlier ones are over
                    bar.stop_task(task)
                tasks[step] = bar.add_task(escape(step), total=total or None)
            bar.update(tasks[step], completed=done, total=total or None)

        yield report


def rel(p: Path) -> str:
    """A path as the user would type it (relative to the working directory when inside it), escaped for Rich markup."""
    try:  # symlinks not followed: /dev/stdout stays /dev/stdout
        text = str(Path(os.path.abspath(p)).relative_to(os.getcwd()))
    except ValueError:
        text = str(p)
    return escape(text)
