"""The `mec` command line. Typer only; every heavy import happens inside a command."""
from __future__ import annotations

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
    from mec_cli.cli import data, doctor, eval, train  # noqa: F401  (each module adds its commands to `app`)


_register()


def main() -> None:
    app()
