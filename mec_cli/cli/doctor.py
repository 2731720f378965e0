"""`mec doctor`."""
from __future__ import annotations

import typer

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, err_console, print_json, print_table


def _cuda_rows(env: dict) -> list:
    """(component, status) rows of the CUDA side; empty when the CUDA data was not collected."""
    cuda = env.get("cuda") or {}
    if not cuda:
        return []
    rows = [("CUDA", env["cuda_summary"])]
    if cuda.get("torch_cuda"):
        rows.append(("torch CUDA build", f"{cuda['torch_cuda']} ({' '.join(cuda['torch_archs']) or '?'})"))
        mmcv_archs = cuda.get("mmcv_archs")
        archs = " ".join(mmcv_archs) if mmcv_archs else "architectures unknown"
        rows.append(("mmcv CUDA ops", f"{cuda['mmcv_cuda']} ({archs})" if cuda.get("mmcv_cuda") else
                     "- (mmcv missing)" if cuda.get("mmcv_missing") else
                     f"crashed when asked ({cuda['mmcv_crash']})" if cuda.get("mmcv_crash") else "none"))
        rows.append(("NCCL", cuda.get("nccl") or "none"))
    driver = cuda.get("driver")
    rows.append(("NVIDIA driver", f"{driver} (CUDA {cuda.get('driver_cuda') or '?'})" if driver else "none"))
    gpus = cuda.get("gpus") or []
    rows.append(("CUDA devices", ", ".join(f"{g['index']}: {g['name']} ({g['capability']})" for g in gpus)
                 or "none visible"))
    if cuda.get("torch_cuda"):
        op = cuda.get("cuda_op")
        why = "mmcv missing" if cuda.get("mmcv_missing") else "no GPU" if not gpus else "mmcv built without CUDA"
        shown = ("ok (nms, RoIAlign forward and backward on GPU 0, as on the CPU)" if op == "ok" else
                 "crashed" if op and "crash" in op else "failed" if op else f"not checked ({why})")
        rows.append(("mmcv op on GPU", shown))
    return rows


@app.command(epilog="Example: [bold]mec doctor[/]   or   [bold]mec doctor --json[/]")
@cli_errors
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing unless something is wrong."),
) -> None:
    """Check the install: versions, mmcv's compiled ops, the CUDA builds, driver, GPUs and NCCL."""
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
        table.add_row("mmcv compiled ops", env["mmcv_ops"] + (" (CPU)" if env["mmcv_ops"] == "ok" else ""))
        for name, status in _cuda_rows(env):
            table.add_row(name, status)
        print_table(table)  # never cut in a log or pipe
    for note in env.get("warnings", []):  # stderr, so that --json output stays one document
        err_console.print(f"[bold yellow]warning:[/] {note}", soft_wrap=True)
    for problem in env["problems"]:
        err_console.print(f"[bold red]error:[/] {problem}", soft_wrap=True)
    if env["problems"]:
        raise typer.Exit(1)
