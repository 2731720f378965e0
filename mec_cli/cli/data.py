"""Dataset commands: `mec synth`, `mec groups`, `mec build-coco-lt`."""
from __future__ import annotations

from pathlib import Path

import typer

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, console, progress_bar, rel


@app.command(epilog="Example: [bold]mec synth --out data/synth --seed 0[/]")
@cli_errors
def synth(
    out: Path = typer.Option(Path("data/synth"), "--out", "-o", help="Output folder (images and annotations/)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
    num_classes: int = typer.Option(24, help="Number of categories (each a shape x colour pair, at most 48)."),
    train_images: int = typer.Option(600, help="Number of training images."),
    val_images: int = typer.Option(150, help="Number of validation images."),
    image_size: int = typer.Option(160, help="Square image side in pixels."),
) -> None:
    """Make a deterministic synthetic long-tailed dataset (LVIS v1 format, PNG images)."""
    from mec_cli.data.synth import SynthConfig, make_synthetic_dataset

    cfg = SynthConfig(out=out, seed=seed, num_classes=num_classes, train_images=train_images,
                      val_images=val_images, image_size=image_size)
    cfg.validate()
    with progress_bar() as bar:
        task = bar.add_task("drawing images", total=train_images + val_images)
        paths = make_synthetic_dataset(cfg, progress=lambda n: bar.advance(task, n))
    console.print(f"wrote [bold]{rel(out)}[/]: train {rel(paths['train'])}, val {rel(paths['val'])}")
