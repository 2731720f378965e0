"""`mec doctor`."""
from __future__ import annotations

import typer

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, console, err_console, print_json


@app.command(epilog="Example: [bold]mec doctor[/]   or   [bold]mec doctor --json[/]")
@cli_errors
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing unless something is wrong."),
) -> None:
    """Check the install: versions, mmcv's compiled ops, CUDA devices."""
    from rich.table import Table

    from mec_cli.doctor import collect_environment

    env = collect_environment()
    if as_json:
        print_json(env)
    elif not quiet:
        table = Table(title="mec doctor", show_header=True)
        table.add_column("component")
        table.add_column("status")
        for name, ver in env["versions"].items():
            table.add_row(name, ver)
        table.add_row("mmcv compiled ops", env["mmcv_ops"])
        table.add_row("CUDA devices", ", ".join(env["cuda_devices"]) or "none (CPU only)")
        console.print(table)
    if env["problems"]:
        err_console.print(f"[bold red]error:[/] {env['problems'][0]}")
        raise typer.Exit(1)
