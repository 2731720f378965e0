"""Dataset commands: `mec synth`, `mec groups`, `mec build-coco-lt`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, console, data_table, print_table, progress_bar, rel
from mec_cli.data.groups import DEFAULT_BINS
from mec_cli.data.synth import MAX_CLASSES, SynthConfig


@app.command(epilog="Example: [bold]mec synth --out data/synth --seed 0[/]")
@cli_errors
def synth(
    out: Path = typer.Option(Path("data/synth"), "--out", "-o", help="Output folder (images and annotations/)."),
    seed: int = typer.Option(SynthConfig.seed, help="Random seed; the same seed gives byte-identical files."),
    num_classes: int = typer.Option(SynthConfig.num_classes,
                                    help=f"Number of categories (each a shape x colour pair, at most {MAX_CLASSES})."),
    train_images: int = typer.Option(SynthConfig.train_images, help="Number of training images."),
    val_images: int = typer.Option(SynthConfig.val_images, help="Number of validation images."),
    image_size: int = typer.Option(SynthConfig.image_size, help="Square image side in pixels."),
) -> None:
    """Make a deterministic synthetic long-tailed dataset (LVIS v1 format, PNG images)."""
    from mec_cli.data.synth import make_synthetic_dataset

    cfg = SynthConfig(out=out, seed=seed, num_classes=num_classes, train_images=train_images,
                      val_images=val_images, image_size=image_size)
    cfg.validate()
    from mec_cli.io import check_output_dir

    check_output_dir(out)  # before the progress bar: errors come first
    with progress_bar() as bar:
        task = bar.add_task("drawing images", total=train_images + val_images)
        paths = make_synthetic_dataset(cfg, progress=lambda n: bar.advance(task, n))
    console.print(f"wrote [bold]{rel(out)}[/]: train {rel(paths['train'])}, val {rel(paths['val'])}")


@app.command(epilog="Examples:\n\n  [bold]mec groups data/synth/annotations/lvis_v1_train.json --out groups.json[/]\n\n"
             "  [bold]mec groups --profile lvis_v1 --bins 10,100,500 --out groups4.json[/]")
@cli_errors
def groups(
    ann: Path = typer.Argument(None, help="Training annotation file (COCO or LVIS JSON).", show_default=False),
    profile: str = typer.Option(None, help="Use a built-in profile instead of a file: lvis_v1, lvis_v0.5, coco2017."),
    count_by: str = typer.Option("instances", "--count", help="Count training 'instances' or 'images' per category."),
    bins: str = typer.Option(",".join(map(str, DEFAULT_BINS)),
                             help="Group edges, strictly increasing: G0=[0,b1), G1=[b1,b2), ..., GN=[bN,inf)."),
    out: Path = typer.Option(Path("groups.json"), "--out", "-o", help="Where to write groups.json."),
    as_json: bool = typer.Option(False, "--json", help="Also print groups.json on stdout."),
) -> None:
    """Split categories into frequency groups by training counts (writes groups.json)."""
    from mec_cli.data.groups import compute_groups
    from mec_cli.errors import MecError
    from mec_cli.io import write_json_atomic

    if (ann is None) == (profile is None):
        raise MecError("give either an annotation file or --profile NAME")
    from mec_cli.io import check_outputs

    check_outputs({"--out": out}, {"ANN": ann})
    doc = compute_groups(profile or ann, count_by, bins)
    write_json_atomic(out, doc)
    unit = "instances" if count_by == "instances" else "images"
    table = data_table(f"frequency groups by {unit} ({escape(str(doc['source']))})")
    for col in ("group", "name", f"{unit} range", "categories", f"total {unit}"):
        table.add_column(col, justify="right" if col in ("group", "categories", f"total {unit}") else "left")
    for g in doc["groups"]:
        upper = "inf" if g["upper"] is None else str(g["upper"])
        table.add_row(str(g["index"]), g["name"], f"[{g['lower']}, {upper})", str(g["num_categories"]),
                      f"{g.get('num_instances', g.get('num_images')):,}")
    print_table(table)
    if "lvis_frequency_agreement" in doc:
        console.print("agreement with LVIS frequency (columns r/c/f; LVIS assigns them by image count)")
        agree = data_table("")
        agree.add_column("group")
        for f in ("r", "c", "f"):
            agree.add_column(f, justify="right")
        for name, row in doc["lvis_frequency_agreement"].items():
            agree.add_row(name, *(str(row[f]) for f in ("r", "c", "f")))
        print_table(agree)
    if as_json:
        from mec_cli.cli._common import print_json

        print_json(doc)
    console.print(f"wrote [bold]{rel(out)}[/]")


@app.command("build-coco-lt", epilog="Example: [bold]mec build-coco-lt --coco-ann annotations/instances_train2017.json "
             "--profile lvis_v1 --out coco_lt_train.json[/]")
@cli_errors
def build_coco_lt(
    coco_ann: Path = typer.Option(..., "--coco-ann",
                                  help="COCO instances JSON to sample from (e.g. instances_train2017.json)."),
    lvis_ann: Path = typer.Option(None, "--lvis-ann",
                                  help="LVIS training JSON whose long tail to follow (instead of --profile)."),
    profile: str = typer.Option("lvis_v1", help="Built-in LVIS statistics to follow: lvis_v1 or lvis_v0.5."),
    align: str = typer.Option("rank",
                              help="'rank' (Appendix B: align sorted counts) or 'synset' (same WordNet synset)."),
    keep_top: int = typer.Option(10, help="The most frequent COCO categories without a hard target (they may end "
                                 "below it)."),
    fill_top: bool = typer.Option(True, "--fill-top/--no-fill-top",
                                  help="Fill the --keep-top categories toward their targets once the others are exact "
                                       "(the paper's COCO-LT); --no-fill-top leaves them what the other categories' "
                                       "images bring."),
    seed: int = typer.Option(0, help="Seed of the tie-breaking order; the same seed gives the same bytes."),
    out: Path = typer.Option(..., "--out", "-o", help="Output COCO JSON."),
    manifest: Path = typer.Option(None, help="Manifest JSON (default: OUT with .manifest.json)."),
) -> None:
    """Build COCO-LT: sample whole COCO images to follow the LVIS long tail (Appendix B)."""
    from rich.table import Table

    from mec_cli.data.coco_lt import build_coco_lt_files

    if profile not in ("lvis_v1", "lvis_v0.5"):
        from mec_cli.errors import MecError

        raise MecError(f"--profile must be lvis_v1 or lvis_v0.5, got {profile!r}")
    with progress_bar(transient=True) as bar:
        task = bar.add_task("filling categories, rarest target first", total=None)
        result, out_path, manifest_path = build_coco_lt_files(
            coco_ann, out, lvis_ann=lvis_ann, profile=profile, align=align, keep_top=keep_top, seed=seed,
            manifest_path=manifest, progress=lambda n: bar.advance(task, n), fill_top=fill_top)
    tot = result.manifest["totals"]
    table = Table(title="COCO-LT")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("images", f"{tot['images']:,} of {tot['input_images']:,}")
    table.add_row("instances", f"{tot['instances']:,} of {tot['input_instances']:,}")
    table.add_row("constrained categories hitting their target",
                  f"{tot['constrained_hit_exactly']} of {tot['constrained_categories']}")
    table.add_row("constrained instances (achieved / target)",
                  f"{tot['constrained_achieved_sum']:,} / {tot['constrained_target_sum']:,}")
    table.add_row(f"top-{tot['top_categories']} instances (achieved / target, {result.manifest['top_mode']})",
                  f"{tot['top_achieved_sum']:,} / {tot['top_target_sum']:,}")
    table.add_row(f"lowest top-{tot['top_categories']} fill (achieved / target)", f"{100 * tot['top_min_fill']:.0f}%")
    for name, n in tot["categories_per_instance_bin"].items():
        table.add_row(f"categories with {name} instances", str(n))
    console.print(table)
    for m in result.missed:
        console.print(f"[yellow]missed target:[/] {escape(str(m['name']))} (id {m['id']}): {m['achieved']} of "
                      f"{m['target']}")
    console.print(f"wrote [bold]{rel(out_path)}[/] and [bold]{rel(manifest_path)}[/]")
