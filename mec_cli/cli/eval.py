"""`mec eval`."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import typer
from rich.markup import escape

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, cli_text, console, data_table, print_table, rel, step_progress
from mec_cli.cli._launch import CONFIG, DATA_ROOT, DATASET, GROUPS, PROCS, RECIPE, launch_fields
from mec_cli.evaluation.checkpoint import EvalOptions

SHOWN = ("AP", "AP50", "AP75", "APr", "APc", "APf")  # the terminal table; the JSON has every metric
IOU_LABEL = {"bbox": "box AP", "segm": "mask AP", "boundary": "Boundary AP"}


def print_metrics(doc: Dict) -> None:
    """One Rich table per IoU type: a row per mode, AP columns and one column per frequency group."""
    from mec_cli.evaluation.api import IOU_TYPES, iou_types_of

    modes = doc["modes"]
    present = {t for m in modes.values() for t in iou_types_of(m)}
    iou_types = [t for t in IOU_TYPES if t in present] + sorted(present - set(IOU_TYPES))
    for iou_type in iou_types:
        sample = next(m[iou_type] for m in modes.values() if iou_type in m)
        groups = [k for k in sample if k.startswith("AP_") and k != "AP_per_iou" and not k.endswith("_fixed")]
        cols = [c for c in SHOWN if c in sample] + groups + (["AP_fixed"] if "AP_fixed" in sample else [])
        # with no vertical rules every column, group names included, fits an 80-column terminal
        label = IOU_LABEL.get(iou_type, iou_type)
        if iou_type == "boundary" and "boundary_dilation" in doc:
            label += f", dilation ratio {doc['boundary_dilation']:g}"
        table = data_table(f"{escape(label)} x100 ({doc['protocol']} protocol; APr/APc/APf: LVIS frequency; "
                           "other group columns: groups.json)")
        table.add_column("mode", no_wrap=True)
        for c in cols:
            name = "AP fixed" if c == "AP_fixed" else (c[3:] if c.startswith("AP_") else c)
            table.add_column(escape(name), justify="right", min_width=len(name), no_wrap=True)
        for mode, by_type in modes.items():
            m = by_type.get(iou_type)
            if m is None:
                continue
            table.add_row(mode, *("-" if m[c] < 0 else f"{100 * m[c]:.1f}" for c in cols))
        print_table(table)
    if "detection_cap" in doc:
        from mec_cli.evaluation.api import describe_cap

        console.print(describe_cap(doc["protocol"], doc["detection_cap"]), markup=False)
    held = {k for m in modes.values() for t in iou_types_of(m) for k in m[t]} | {k for m in modes.values() for k in m}
    reports = [r for r, key in (("errors", "errors"), ("calibration", "calibration"), ("confusion", "confusion"),
                                ("lrp", "lrp"), ("compare --ci", "per_image"), ("weights", "stage_weights"))
               if key in held]
    if reports:
        console.print("Studies per frequency group stored: " + ", ".join(f"`mec report {r}`" for r in reports) + ".",
                      markup=False)


@app.command("eval", epilog="Examples:\n\n"
             "  [bold]mec eval --checkpoint work_dirs/tiny/iter_300.pth --recipe tiny --data-root data/synth "
             "--per-stage --out metrics.json[/]\n\n"
             "  [bold]mec eval --checkpoint ckpt.pth --recipe htc_r101 --gpus 8 --modes dynamic --group-align on[/]\n\n"
             "  [bold]mec eval --results dets.json --ann lvis_v1_val.json --groups groups.json --iou-type segm[/]\n\n"
             "  [bold]mec eval --results dets.json --ann lvis_v1_val.json --iou-type segm,boundary --analysis "
             "--out m.json[/]\n\n"
             "  [bold]mec eval --results dets.json --ann lvis_v1_val.json --per-image --out m.json[/]   "
             "(then `mec report compare A B --ci`)\n\n"
             "  [bold]mec eval --results rank0.json --results rank1.json --ann lvis_v1_val.json --out m.json[/]   "
             "(shards of one results file)\n\n"
             "  [bold]mec eval --results rank0.json --ann lvis_v1_val.json --partial rank0.partial.npz[/]   "
             "(on each machine)\n\n"
             "  [bold]mec eval --merge rank0.partial.npz --merge rank1.partial.npz --out m.json[/]   "
             "(later, anywhere)")
@cli_errors
def eval_cmd(
    checkpoint: Optional[Path] = typer.Option(None, help="Model checkpoint (with --recipe or --config)."),
    recipe: Optional[str] = RECIPE,
    config: Optional[Path] = CONFIG,
    results: Optional[List[Path]] = typer.Option(None, help="An LVIS/COCO results JSON to evaluate instead of a "
                                                 "checkpoint; several: shards of one (each image's detections in "
                                                 "one of them), merged exactly."),
    ann: Optional[Path] = typer.Option(None, help="Ground-truth annotations for --results."),
    per_stage: bool = typer.Option(EvalOptions.per_stage, "--per-stage", help="Also score every cascade stage alone."),
    modes: str = typer.Option(",".join(EvalOptions.modes), help="Stage ensembles to score."),
    group_align: str = typer.Option(EvalOptions.group_align,
                                    help="Group alignment before the ensemble: on, off or both."),
    tau: Optional[float] = typer.Option(EvalOptions.tau,
                                        help="Temperature of the dynamic ensemble (default: the recipe's)."),
    groups: Optional[Path] = GROUPS,
    iou_type: Optional[str] = typer.Option(None, help="bbox, segm, boundary (Boundary AP, from masks), "
                                           "comma-separated; default: what the results hold (--results), "
                                           f"{','.join(EvalOptions.iou_types)} for a checkpoint."),
    boundary_dilation: float = typer.Option(EvalOptions.boundary_dilation, help="Boundary AP's dilation ratio: the "
                                            "boundary width as a fraction of the image diagonal (Cheng et al. "
                                            "2021), in (0, 1)."),
    analysis: bool = typer.Option(EvalOptions.analysis, "--analysis", help="Also store, per frequency group, "
                                  "TIDE-style errors, the calibration of the scores, a confusion matrix of the "
                                  "objects' labels and oLRP (for `mec report errors`, `calibration`, `confusion` "
                                  "and `lrp`)."),
    per_image: bool = typer.Option(EvalOptions.per_image, "--per-image", help="Also store each image's matched "
                                   "detections (compact), for `mec report compare --ci` (bootstrap intervals)."),
    partial: Optional[Path] = typer.Option(None, help="With --results: write this shard's partial evaluation "
                                           "(.npz) here instead of metrics, to merge later with --merge."),
    merge: Optional[List[Path]] = typer.Option(None, help="Partial evaluations (--partial) to merge into the "
                                               "metrics of all their shards; needs no --ann."),
    protocol: Optional[str] = typer.Option(EvalOptions.protocol,
                                           help="lvis or coco (default: from the annotation format)."),
    dataset: Optional[str] = DATASET,
    data_root: Optional[str] = DATA_ROOT,
    gpus: int = typer.Option(EvalOptions.gpus, help="GPUs for inference (>1 runs torchrun); 0 (CPU) or 1 runs in "
                             "this process."),
    procs: int = PROCS,
    master_port: int = typer.Option(EvalOptions.master_port, help="torchrun port for --gpus/--procs > 1."),
    max_images: Optional[int] = typer.Option(EvalOptions.max_images,
                                             help="Evaluate only the first N val images (quick checks)."),
    dump_dir: Optional[Path] = typer.Option(None, help="Also write each mode's detections as an LVIS/COCO results "
                                            "JSON here."),
    fixed_ap: bool = typer.Option(False, "--fixed-ap", help="Also compute Fixed AP (Dave et al.): the top "
                                  "--dets-per-class detections of each category over the dataset, no per-image cap; "
                                  "beside the standard metrics."),
    dets_per_class: int = typer.Option(10000, help="Detections kept per category for --fixed-ap."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the metrics JSON here."),
) -> None:
    """Per-stage and per-group AP of every scoring mode from one inference pass, or of a results file."""
    from mec_cli.cli._common import comma_list, refuse_given
    from mec_cli.errors import MecError, check_number
    from mec_cli.io import check_output_dir, check_outputs, write_json_atomic

    results, merge = list(results or []), list(merge or [])
    # every option must apply to the evaluation asked for: one that would change nothing is refused, not ignored
    if results or merge:
        refuse_given(("recipe", "config", "per_stage", "modes", "group_align", "tau", "dataset", "data_root", "gpus",
                      "procs", "master_port", "max_images", "dump_dir"),
                     "to --results or --merge (a results file has no model, stages or ensembles)")
    else:
        refuse_given(("ann",), "to --checkpoint (its annotations are the recipe's, under --data-root)")
        if gpus <= 1 and procs <= 1:
            refuse_given(("master_port",), "to one process (it is torchrun's port, for --gpus or --procs > 1)")
    if not fixed_ap:
        refuse_given(("dets_per_class",), "without --fixed-ap")
    if "boundary" not in (comma_list(iou_type, "iou_type") or []):
        refuse_given(("boundary_dilation",), "without --iou-type boundary")
    check_outputs({"--out": out, "--partial": partial},
                  {**{f"--results {r}": r for r in results}, **{f"--merge {m}": m for m in merge}, "--ann": ann,
                   "--checkpoint": checkpoint, "--groups": groups, "--config": config})
    if dump_dir is not None:
        check_output_dir(dump_dir)

    from mec_cli.evaluation.api import IOU_TYPES
    from mec_cli.evaluation.boundary import check_dilation

    iou_types = comma_list(iou_type, "iou_type") or []
    ensembles = comma_list(modes, "modes")
    if iou_type is not None and any(t not in IOU_TYPES for t in iou_types):
        raise MecError(f"--iou-type must be {', '.join(IOU_TYPES)} or several of them, comma-separated; "
                       f"got {iou_type!r}")
    check_dilation(boundary_dilation)
    if merge:
        if results or checkpoint is not None or partial is not None:
            raise MecError("--merge takes partial evaluations alone: no --results, --checkpoint or --partial")
        if analysis or fixed_ap:
            from mec_cli.evaluation.partial import PARTIAL_REFUSED

            raise MecError(f"--merge: {PARTIAL_REFUSED}")
        from mec_cli.evaluation.partial import evaluate_partial_files

        doc = evaluate_partial_files(merge, per_image)
    elif partial is not None:
        if len(results) != 1 or checkpoint is not None or ann is None:
            raise MecError("--partial needs one --results and --ann (no --checkpoint)")
        if analysis or fixed_ap or per_image:
            raise MecError("--partial writes matches only: give --per-image to --merge; Fixed AP and --analysis need "
                           "the whole results in one process")
        from mec_cli.evaluation.partial import write_partial

        with step_progress() as report:
            written = write_partial(results[0], ann, partial, iou_types, protocol, str(groups) if groups else None,
                                    boundary_dilation, progress=report)
        counts = ", ".join(f"{t} {n:,}" for t, n in written["detections"].items())
        console.print(f"wrote [bold]{rel(partial)}[/]: {written['images']:,} images; detections that count: "
                      f"{escape(counts)}. Merge the parts with `mec eval --merge`.", soft_wrap=True)
        return
    elif results:
        if checkpoint is not None or ann is None:
            raise MecError("--results needs --ann and no --checkpoint")
        from mec_cli.evaluation.api import evaluate_results_file

        check_number("dets_per_class", dets_per_class, 1, integer=True)
        with step_progress() as report:
            doc = evaluate_results_file(results if len(results) > 1 else results[0], ann, iou_types, protocol,
                                        str(groups) if groups else None, dets_per_class if fixed_ap else None,
                                        analysis, boundary_dilation, progress=report, per_image=per_image)
    else:
        if checkpoint is None:
            raise MecError("give --checkpoint (with --recipe or --config), --results with --ann, or --merge")
        from mec_cli.evaluation.checkpoint import evaluate_checkpoint

        opts = EvalOptions(
            **launch_fields(recipe, config, dataset, data_root, groups, procs), gpus=gpus, master_port=master_port,
            checkpoint=str(checkpoint), per_stage=per_stage, modes=ensembles,
            group_align=group_align, tau=tau, iou_types=iou_types or list(EvalOptions.iou_types), protocol=protocol,
            max_images=max_images, dump_dir=str(dump_dir) if dump_dir else None,
            dets_per_class=dets_per_class if fixed_ap else None, analysis=analysis,
            boundary_dilation=boundary_dilation, per_image=per_image)
        doc = evaluate_checkpoint(opts,
                                  on_note=lambda note: console.print(f"[yellow]{escape(cli_text(note, eval_cmd))}[/]"))
    if out is not None:  # written before anything is shown: a failure to write is then the one line printed
        write_json_atomic(out, doc)
    print_metrics(doc)
    if out is not None:
        console.print(f"wrote [bold]{rel(out)}[/]")
