"""`mec demo`."""
from __future__ import annotations

from pathlib import Path

import typer

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, console, rel
from mec_cli.demo import DemoOptions


@app.command(epilog="Examples:\n\n  [bold]mec demo --out mec-demo[/]\n\n"
                    "  [bold]mec demo --out mec-demo --force[/]   (redo every step)")
@cli_errors
def demo(
    out: Path = typer.Option(Path("mec-demo"), "--out", "-o", help="Output folder (with a README.md index)."),
    iters: int = typer.Option(DemoOptions.iters, help="Training iterations of each tiny model (the default keeps "
                              "the demo under 12 min on 2 cores)."),
    train_images: int = typer.Option(DemoOptions.train_images, help="Synthetic training images."),
    val_images: int = typer.Option(DemoOptions.val_images, help="Synthetic validation images."),
    force: bool = typer.Option(DemoOptions.force, "--force", help="Redo the steps whose outputs already exist."),
) -> None:
    """Run the full pipeline on built-in synthetic data: synth, groups, train, eval --per-stage, reports."""
    import time

    from mec_cli.cli.eval import print_metrics
    from mec_cli.demo import STEP_NAMES, run_demo

    start = time.time()
    total = len(STEP_NAMES)
    seen = {"n": 0}

    def on_step(name: str, status: str) -> None:
        if status in ("start", "skip"):
            seen["n"] += 1
        elapsed = time.time() - start
        if status == "skip":
            console.print(f"[dim][{seen['n']}/{total}] {name}: already complete, skipped ({elapsed:.0f} s)[/]")
        elif status == "start":
            console.print(f"[bold cyan][{seen['n']}/{total}] {name}[/] ... ({elapsed:.0f} s)")
        else:
            console.print(f"[green][{seen['n']}/{total}] {name}: done[/] ({elapsed:.0f} s)")

    summary = run_demo(DemoOptions(out=out, iters=iters, train_images=train_images, val_images=val_images, force=force),
                       on_step, on_metrics=lambda recipe, doc: print_metrics(doc))
    console.print(f"\n[bold]demo finished in {time.time() - start:.0f} s.[/] Open "
                  f"[bold]{rel(Path(summary['index']))}[/]; outputs:")
    for item in summary["outputs"]:
        console.print(f"  {rel(out / item['path'])}")
