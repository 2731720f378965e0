"""`mec report ...`: the paper's tables and figures from saved metrics."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, console, data_table, print_table, rel
from mec_cli.data.groups import DEFAULT_BINS
from mec_cli.ops import modes

report_app = typer.Typer(help="The paper's tables and figures from saved metrics (mec eval --out).",
                         no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(report_app, name="report")

RUNS = typer.Argument(..., help="Metrics JSON files, run directories or globs.", show_default=False)
LABEL = typer.Option(None, "--label", "-l", help="Row label per run, in order (default: the recipe name).")
FORMAT = typer.Option(None, "--format", "-f", help="Also write the table as md, latex (booktabs) or csv.")
OUT = typer.Option(None, "--out", "-o", help="Output file (default: print the --format text on stdout).")
REFERENCE = typer.Option(None, "--reference",
                         help="'paper' adds the paper's published numbers beside runs of the recipe "
                         "and dataset they were measured with.")
BASELINE_MODE = typer.Option(None, "--baseline-mode", show_default=False,
                             help=f"How baselines score their stages: {modes.BASELINE_MODE} (the default; "
                             "MMDetection's Cascade/HTC, which made the paper's baseline numbers) or mean_probs "
                             "(Section 3.1's "
                             "formula). A run without it is an error; a results-file run uses its one mode when this "
                             "is not given.")
MEC_MODE = typer.Option(None, "--mec-mode", show_default=False,
                        help=f"Scoring mode of the MEC runs (default: {modes.MEC_MODE}, the paper's dynamic ensemble + "
                        "group alignment; a results-file run's one mode when not given).")
GROUPING = typer.Option("auto", "--grouping",
                        help="Group columns: lvis (APr/APc/APf, LVIS frequency by training images), "
                        "groups (groups.json, by training instances), or auto (lvis when every run has it).")


def _rich_table(t):
    """A report table for the terminal, the best value of each column in bold green."""
    from mec_cli.reporting.render import format_cell

    best = t.best_rows()
    table = data_table(escape(t.title), caption=escape("\n".join(t.notes)) or None)
    cols: List[str] = list(t.df.columns)
    for c in cols:  # numbers and run names are never wrapped; a narrow terminal wraps the other text
        table.add_column(escape(c), justify="right" if c in t.value_cols else "left",
                         no_wrap=c in t.value_cols or c in ("mode", "run"))
    for i, row in enumerate(t.df.itertuples(index=False)):
        table.add_row(*(f"[bold green]{escape(format_cell(v))}[/]" if i in best.get(c, []) else escape(format_cell(v))
                        for c, v in zip(cols, row)))
    return table


def _table_format(fmt: Optional[str], out: Optional[Path], runs: List[str]) -> Optional[str]:
    """The text format to write (from --format or the --out suffix), checked with the output path before any work."""
    from mec_cli.errors import MecError
    from mec_cli.reporting.render import FORMATS

    _check_outputs([out], runs)
    if fmt is None and out is not None:
        fmt = {".md": "md", ".tex": "latex", ".csv": "csv"}.get(out.suffix)
        if fmt is None:
            raise MecError("give --format md|latex|csv (or an --out ending in .md, .tex or .csv)", out)
    if fmt is not None and fmt not in FORMATS:
        raise MecError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _emit_table(table, fmt: Optional[str], out: Optional[Path], outputs=None, after=None) -> None:
    """Write the table's file and the command's other ``outputs`` together (first: a failure to write is then the
    only thing said), then show the table, then call ``after`` (more to show), then say what was written."""
    from mec_cli.io import text_writer
    from mec_cli.reporting.render import render

    text = render(table, fmt) if fmt is not None else None
    outputs = dict(outputs or {})
    if text is not None and out is not None:
        outputs[out] = text_writer(text)
    written = _commit(outputs) if outputs else []
    print_table(_rich_table(table))
    if text is not None and out is None:
        typer.echo(text)
    if after is not None:
        after()
    _wrote(written)


def _only_with_baseline(baseline: Optional[str], *options: str) -> None:
    """Refuse the options (Python names) that only a --baseline run uses, when there is none."""
    from mec_cli.cli._common import refuse_given

    if baseline is None:
        refuse_given(options, "without --baseline")


def _check_mode_names(**named: Optional[str]) -> None:
    """The mode names given (``modes``: comma-separated) must be mode names: stageN, an ensemble with an optional
    _ga, or results; checked before any work."""
    from mec_cli.cli._common import comma_list
    from mec_cli.errors import MecError

    for option, value in named.items():
        for name in (comma_list(value, option) or [] if option == "modes" else [] if value is None else [value]):
            if name.strip() == "results":
                continue
            try:
                modes.parse_mode(name.strip())
            except ValueError as e:
                raise MecError(str(e), option=option) from None


def _reference(value: Optional[str]) -> bool:
    from mec_cli.errors import MecError

    if value not in (None, "paper"):
        raise MecError(f"--reference takes 'paper', got {value!r}")
    return value == "paper"


def _commit(outputs) -> List[Path]:
    """Write a command's outputs together (all or none); the paths written. Commands write before they show
    anything, so that an output that cannot be written is the only line a failed command prints."""
    from mec_cli.io import write_outputs

    return write_outputs(outputs)


def _wrote(paths) -> None:
    for path in paths:
        console.print(f"wrote [bold]{rel(path)}[/]")


def _figure(fig, out: Path, csv: Optional[Path] = None, frame=None, index: bool = False):
    """A figure's writers (PNG, and SVG beside it), and ``frame`` as CSV at ``csv`` when one is asked for."""
    from mec_cli.io import text_writer
    from mec_cli.reporting.figures import figure_writers

    outputs = figure_writers(fig, str(out))
    if csv is not None:
        outputs[csv] = text_writer(frame.to_csv(index=index))
    return outputs


def _check_outputs(outputs, runs, figures=()) -> None:
    """No output may overwrite an input run (a metrics file a run names, through its directory or glob too) or
    another output, checked before any work: every file written counts, the SVG beside a figure's PNG included
    (``figures``: the figure paths as given)."""
    from mec_cli.errors import MecError
    from mec_cli.io import check_outputs
    from mec_cli.reporting.figures import figure_paths
    from mec_cli.reporting.runs import find_metrics

    roles = {}
    for p in [p for p in outputs if p is not None] + [f for fig in figures if fig is not None
                                                      for f in figure_paths(fig)]:
        role = f"output {p}"
        if role in roles:  # the same path twice (--csv X.png --out X.png)
            raise MecError(f"is asked for twice (two outputs are the same file): {p}", p)
        roles[role] = p
    inputs = {}
    for r in runs:
        try:
            files = find_metrics(r)
        except MecError:  # reported, with its own words, when the runs are loaded
            files = [Path(r)]
        inputs.update({f"run {f}": f for f in files})
    check_outputs(roles, inputs)


@report_app.command("ablation", epilog="Example: [bold]mec report ablation runs/tiny_baseline runs/tiny --format md "
                    "--out ablation.md[/]")
@cli_errors
def ablation(runs: List[str] = RUNS, labels: Optional[List[str]] = LABEL, fmt: Optional[str] = FORMAT,
             out: Optional[Path] = OUT,
             reference: Optional[str] = REFERENCE, baseline_mode: Optional[str] = BASELINE_MODE,
             grouping: str = GROUPING,
             modes: Optional[str] = typer.Option(None, help="Modes to show per run (default: the baseline mode "
                                                 "without and with GA, dynamic, sparse_ga, dynamic_ga).")) -> None:
    """Table 2(c): rows per run and mode, marked Exp./DI/SI/GA; mask AP by group and box mAP."""
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.tables import ablation_table

    _check_mode_names(baseline_mode=baseline_mode, modes=modes)
    fmt = _table_format(fmt, out, runs)
    chosen = [m.strip() for m in modes.split(",")] if modes else None
    table = ablation_table(load_runs(runs, labels), chosen, _reference(reference), baseline_mode, grouping)
    _emit_table(table, fmt, out)


@report_app.command("compare", epilog="Examples:\n\n"
                    "  [bold]mec report compare runs/cascade_r50_baseline runs/cascade_r50 --reference paper[/]\n\n"
                    "  [bold]mec report compare runs/tiny_baseline runs/tiny --ci --figure gain.png --csv gain.csv[/]"
                    "   (runs evaluated with `mec eval --per-image`)")
@cli_errors
def compare(runs: List[str] = RUNS, labels: Optional[List[str]] = LABEL, fmt: Optional[str] = FORMAT,
            out: Optional[Path] = OUT,
            reference: Optional[str] = REFERENCE, baseline_mode: Optional[str] = BASELINE_MODE,
            mec_mode: Optional[str] = MEC_MODE, grouping: str = GROUPING,
            ci: bool = typer.Option(False, "--ci", help="Add paired bootstrap intervals of each gain, resampling "
                                    "images, and say whether it is within noise (runs from `mec eval --per-image`)."),
            resamples: int = typer.Option(1000, help="Bootstrap resamples for --ci."),
            confidence: float = typer.Option(0.95, help="Confidence level of the --ci intervals, in (0, 1)."),
            seed: int = typer.Option(0, help="Random seed of the --ci resamples (same seed, same intervals)."),
            figure: Optional[Path] = typer.Option(None, help="With --ci: also draw the gains and their intervals per "
                                                  "group (.png writes a .svg beside it)."),
            csv: Optional[Path] = typer.Option(None, help="With --ci: also write every interval (per group, box and "
                                               "mask) as CSV.")) -> None:
    """Table 1: baseline and +MEC rows per model, with the deltas (runs in pairs BASELINE MEC ...); with --ci, whether
    each gain is within noise."""
    from mec_cli.cli._common import refuse_given
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.tables import compare_table

    _check_mode_names(baseline_mode=baseline_mode, mec_mode=mec_mode)
    if not ci:
        refuse_given(("resamples", "confidence", "seed", "figure", "csv"),
                     "without --ci (it shows the intervals: add --ci)")
    else:
        from mec_cli.evaluation.bootstrap import check_bootstrap_options

        check_bootstrap_options(resamples, confidence, seed)
    fmt = _table_format(fmt, out, runs)
    _check_outputs([out, csv], runs, [figure])
    loaded = load_runs(runs, labels)
    table = compare_table(loaded, baseline_mode, mec_mode, _reference(reference), grouping)
    if not ci:
        _emit_table(table, fmt, out)
        return
    from mec_cli.cli._common import step_progress
    from mec_cli.io import text_writer
    from mec_cli.reporting.figures import intervals_figure
    from mec_cli.reporting.significance import compare_intervals, with_intervals

    with step_progress() as report:
        intervals = compare_intervals(loaded, baseline_mode, mec_mode, grouping, resamples, confidence, seed,
                                      progress=lambda done, total: report("bootstrap resamples", done, total))
    outputs = {}
    if figure is not None:
        outputs.update(_figure(intervals_figure(intervals), figure))
    if csv is not None:
        outputs[csv] = text_writer(intervals.to_csv(index=False))

    def verdicts():
        for r in intervals.to_dict("records"):
            console.print(f"{r['pair']}, {r['column']} ({'box' if r['iou type'] == 'bbox' else 'mask'}): "
                          f"{r['verdict']}", markup=False, soft_wrap=True)

    _emit_table(with_intervals(table, intervals), fmt, out, outputs, verdicts)


@report_app.command("stage-count",
                    epilog="Example: [bold]mec report stage-count runs/r50_* runs/r50_4stage* --reference paper[/]")
@cli_errors
def stage_count(runs: List[str] = RUNS, labels: Optional[List[str]] = LABEL, fmt: Optional[str] = FORMAT,
                out: Optional[Path] = OUT, reference: Optional[str] = REFERENCE,
                baseline_mode: Optional[str] = BASELINE_MODE, mec_mode: Optional[str] = MEC_MODE,
                grouping: str = GROUPING) -> None:
    """Table 3: 3 against 4 stages, baseline and MEC."""
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.tables import stage_count_table

    _check_mode_names(baseline_mode=baseline_mode, mec_mode=mec_mode)
    fmt = _table_format(fmt, out, runs)
    _emit_table(stage_count_table(load_runs(runs, labels), baseline_mode, mec_mode, _reference(reference), grouping),
                fmt, out)


@report_app.command("stages", epilog="Examples:\n\n  [bold]mec report stages runs/tiny --out stages.png[/]\n\n"
                    "  [bold]mec report stages runs/tiny --baseline runs/tiny_baseline --out stages.png[/]   "
                    "(also Figure 1b)")
@cli_errors
def stages(run: str = typer.Argument(..., help="A metrics JSON or run directory from `mec eval --per-stage`."),
           baseline: Optional[str] = typer.Option(None, help="Baseline run: also draw Figure 1(b), baseline vs MEC "
                                                  "per group."),
           iou_type: str = typer.Option("segm", help="segm (mask AP, as the paper) or bbox."),
           mec_mode: Optional[str] = MEC_MODE, baseline_mode: Optional[str] = BASELINE_MODE, grouping: str = GROUPING,
           out: Path = typer.Option(Path("stages.png"), "--out", "-o",
                                    help="Figure path (.png writes a .svg beside it)."),
           csv: Optional[Path] = typer.Option(None, help="Also write the plotted numbers as CSV.")) -> None:
    """Figure 1(a): per-stage AP for each frequency group (and 1(b) with --baseline)."""
    from mec_cli.io import output_target
    from mec_cli.reporting.figures import compare_groups_figure, stages_figure
    from mec_cli.reporting.runs import grouping_axis, load_runs
    from mec_cli.reporting.tables import baseline_vs_mec, stages_frame

    _only_with_baseline(baseline, "baseline_mode", "mec_mode")
    _check_mode_names(baseline_mode=baseline_mode, mec_mode=mec_mode)
    # beside a file; a device or pipe (/dev/null) takes Figure 1(b) too, as it takes anything
    vs_out = out if output_target(out).in_place else out.with_name(out.stem + "_vs_baseline" + out.suffix)
    _check_outputs([csv], [run] + ([baseline] if baseline else []), [out, vs_out if baseline else None])
    mec = load_runs([run])[0]
    base = load_runs([baseline])[0] if baseline is not None else None
    frame = stages_frame(mec, iou_type, grouping)
    axis = grouping_axis(mec, frame.attrs["grouping"])
    metric = "mask AP" if iou_type == "segm" else "box AP"
    outputs = _figure(stages_figure(frame, f"{mec.label}: per-stage {metric} by frequency group (Figure 1a)", metric,
                                    axis), out, csv, frame, index=True)
    if base is not None:
        values = baseline_vs_mec(base, mec, baseline_mode, mec_mode, iou_type, frame.attrs["grouping"])
        outputs.update(_figure(compare_groups_figure(values, metric=metric, xlabel=axis), vs_out))
    written = _commit(outputs)
    console.print(f"{metric} x100 per stage; columns: {axis}", markup=False)
    console.print(frame.to_string(float_format=lambda v: f"{v:.1f}"), markup=False)
    _wrote(written)


@report_app.command("lambda", epilog="Example: [bold]mec report lambda runs/lam_0.5 runs/lam_0.7 runs/lam_0.9 "
                    "--out lambda.png[/]")
@cli_errors
def lambda_cmd(runs: List[str] = RUNS, labels: Optional[List[str]] = LABEL, mode: Optional[str] = MEC_MODE,
               grouping: str = GROUPING,
               out: Path = typer.Option(Path("lambda.png"), "--out", "-o", help="Figure path."),
               csv: Optional[Path] = typer.Option(None, help="Also write the plotted numbers as CSV.")) -> None:
    """Figure 4: AP against the multi-expert loss's lambda."""
    from mec_cli.reporting.figures import lambda_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.tables import lambda_frame

    _check_mode_names(mode=mode)
    _check_outputs([csv], runs, [out])
    frame = lambda_frame(load_runs(runs, labels), mode, grouping)
    written = _commit(_figure(lambda_figure(frame), out, csv, frame))
    console.print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}"), markup=False)
    _wrote(written)


@report_app.command("distribution",
                    epilog="Examples:\n\n"
                    "  [bold]mec report distribution coco2017 coco_lt_train.manifest.json lvis_v1[/]\n\n"
                    "  [bold]mec report distribution data/synth/annotations/lvis_v1_train.json --bins 10,100 "
                    "--out dist.png[/]")
@cli_errors
def distribution(items: List[str] = typer.Argument(..., help="Annotation files, COCO-LT manifests or profiles "
                                                   "(lvis_v1, lvis_v0.5, coco2017)."),
                 bins: str = typer.Option(",".join(map(str, DEFAULT_BINS)), help="Group edges drawn on the plot."),
                 out: Path = typer.Option(Path("distribution.png"), "--out", "-o", help="Figure path.")) -> None:
    """Figure 5: sorted instance-count curves on a log axis, with the group edges."""
    from mec_cli.data.groups import parse_bins
    from mec_cli.io import check_outputs
    from mec_cli.reporting.distribution import distribution_curves
    from mec_cli.reporting.figures import distribution_figure, figure_paths

    edges = parse_bins(bins)
    check_outputs({f"output {p}": p for p in figure_paths(out)}, {f"input {i}": i for i in items})
    curves = distribution_curves(items)
    written = _commit(_figure(distribution_figure(curves, edges), out))
    for name, counts in curves.items():
        console.print(f"{escape(name)}: {len(counts)} categories, {sum(counts):,} instances, "
                      f"max {max(counts, default=0):,}, min {min(counts, default=0):,}")
    _wrote(written)


STUDY_IOU = typer.Option("segm", "--iou-type", help="segm (mask AP), bbox or boundary (Boundary AP).")
STUDY_CSV = typer.Option(None, "--csv", help="Also write the plotted numbers as CSV.")


def _metric_name(iou_type: str) -> str:
    return {"segm": "mask AP", "bbox": "box AP", "boundary": "Boundary AP"}.get(iou_type, f"{iou_type} AP")


def _print_frame(title: str, frame, notes=(), digits: int = 1) -> None:
    """A study frame as a terminal table: numbers right-aligned with ``digits`` decimals ('-' where missing)."""
    import math

    from mec_cli.reporting.tables import ReportTable

    values = [c for c in frame.columns if frame[c].dtype.kind in "fi" or c.startswith(("stage ", "dAP "))]
    shown = frame.copy()
    for c in values:
        shown[c] = [("-" if v is None or (isinstance(v, float) and math.isnan(v)) else
                     str(v) if isinstance(v, int) else f"{v:.{digits}f}") for v in frame[c].tolist()]
    print_table(_rich_table(ReportTable(title, shown, values, highlight_best=False, notes=list(notes))))


@report_app.command("iou-profile", epilog="Examples:\n\n"
                    "  [bold]mec report iou-profile runs/tiny --out iou_profile.png[/]\n\n"
                    "  [bold]mec report iou-profile runs/tiny --baseline runs/tiny_baseline --csv iou_profile.csv[/]")
@cli_errors
def iou_profile(run: str = typer.Argument(..., help="A metrics JSON or run directory (best from `mec eval "
                                          "--per-stage`)."),
                baseline: Optional[str] = typer.Option(None, help="Baseline run: add its ensemble (--baseline-mode), "
                                                       "dashed."),
                iou_type: str = STUDY_IOU, mec_mode: Optional[str] = MEC_MODE,
                baseline_mode: Optional[str] = BASELINE_MODE,
                grouping: str = GROUPING,
                out: Path = typer.Option(Path("iou_profile.png"), "--out", "-o", help="Figure path (.png writes a .svg "
                                         "beside it)."),
                csv: Optional[Path] = STUDY_CSV) -> None:
    """AP against the IoU threshold for each frequency group: a line per stage and per ensemble (the paper's claim:
    rare groups favour the low-IoU stage)."""
    from mec_cli.reporting.figures import iou_profile_figure
    from mec_cli.reporting.runs import grouping_note, load_runs
    from mec_cli.reporting.studies import iou_profile_frame, iou_profile_table

    _only_with_baseline(baseline, "baseline_mode")
    _check_mode_names(baseline_mode=baseline_mode, mec_mode=mec_mode)
    _check_outputs([csv], [run] + ([baseline] if baseline else []), [out])
    mec = load_runs([run])[0]
    base = load_runs([baseline])[0] if baseline is not None else None
    frame = iou_profile_frame(mec, base, mec_mode, baseline_mode, iou_type, grouping)
    metric = _metric_name(iou_type)
    fig = iou_profile_figure(frame, f"{mec.label}: {metric} against the IoU threshold, per frequency group", metric)
    written = _commit(_figure(fig, out, csv, frame))
    _print_frame(f"{mec.label}: {metric} x100 at each IoU threshold", iou_profile_table(frame),
                 [grouping_note([mec], frame.attrs["grouping"])])
    _wrote(written)


@report_app.command("errors", epilog="Example: [bold]mec report errors runs/tiny --mode dynamic_ga --out errors.png[/]")
@cli_errors
def errors(run: str = typer.Argument(..., help="A metrics JSON or run directory from `mec eval --analysis`."),
           mode: Optional[str] = typer.Option(None, show_default=False, help=f"Scoring mode to analyse (default: "
                                              f"{modes.MEC_MODE}, or a results-file run's one mode, results)."),
           iou_type: str = STUDY_IOU, grouping: str = GROUPING,
           out: Path = typer.Option(Path("errors.png"), "--out", "-o", help="Figure path (.png writes a .svg beside "
                                    "it)."),
           csv: Optional[Path] = STUDY_CSV) -> None:
    """Where the AP goes per frequency group: TIDE-style errors (cls, loc, both, dupe, bkg, miss) under the LVIS
    federated rules, and how often a group's objects are taken for a more frequent group's class."""
    from mec_cli.reporting.figures import errors_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import errors_frame

    _check_mode_names(mode=mode)
    _check_outputs([csv], [run], [out])
    r = load_runs([run])[0]
    frame = errors_frame(r, mode, iou_type, grouping)
    shown = ["group", "AP50"] + [c for c in frame.columns if c.startswith("dAP ")] + ["cls to more frequent"]
    fig = errors_figure(frame, f"{r.label}, {frame.attrs['mode']} ({_metric_name(iou_type)}): where the AP goes, "
                               "per frequency group")
    written = _commit(_figure(fig, out, csv, frame))
    _print_frame(f"{r.label}, {frame.attrs['mode']}: dAP (AP50 points) per error type ({_metric_name(iou_type)})",
                 frame[shown], [f"errors at IoU {frame.attrs['fg_iou']:g} (background at most "
                                f"{frame.attrs['bg_iou']:g}); definitions: mec_cli/evaluation/errors.py; shares and "
                                "counts: --csv"])
    _wrote(written)


@report_app.command("calibration", epilog="Example: [bold]mec report calibration runs/tiny --modes "
                    "mean_logits,dynamic_ga --out calibration.png[/]")
@cli_errors
def calibration(run: str = typer.Argument(..., help="A metrics JSON or run directory from `mec eval --analysis`."),
                modes_: Optional[str] = typer.Option(None, "--modes", help="Modes to draw, comma-separated (default: "
                                                     "every mode analysed)."),
                iou_type: str = STUDY_IOU, grouping: str = GROUPING,
                out: Path = typer.Option(Path("calibration.png"), "--out", "-o", help="Figure path (.png writes a .svg "
                                         "beside it)."),
                csv: Optional[Path] = STUDY_CSV) -> None:
    """Reliability diagrams per mode and frequency group, with the expected calibration error (ECE): are rare and
    frequent scores on one scale after group alignment and the ensembles?"""
    from mec_cli.reporting.figures import calibration_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import calibration_frames

    _check_mode_names(modes=modes_)
    _check_outputs([csv], [run], [out])
    chosen = [m.strip() for m in modes_.split(",")] if modes_ is not None else None
    r = load_runs([run])[0]
    bins, ece = calibration_frames(r, chosen, iou_type, grouping)
    fig = calibration_figure(bins, ece, f"{r.label}: reliability per frequency group ({_metric_name(iou_type)}, "
                                        "precision at IoU 0.5)")
    written = _commit(_figure(fig, out, csv, bins))
    _print_frame(f"{r.label}: expected calibration error x100 per group ({_metric_name(iou_type)}, IoU 0.5)", ece,
                 ["ECE = sum over score bins of n_b / N * |precision_b - mean score_b|; 0 = calibrated"])
    _wrote(written)


@report_app.command("weights", epilog="Example: [bold]mec report weights runs/tiny --out weights.png "
                    "--csv weights.csv[/]")
@cli_errors
def weights(run: str = typer.Argument(..., help="A metrics JSON or run directory from `mec eval --checkpoint` with a "
                                      "dynamic mode."),
            grouping: str = GROUPING,
            out: Path = typer.Option(Path("weights.png"), "--out", "-o", help="Figure path (.png writes a .svg beside "
                                     "it)."),
            csv: Optional[Path] = STUDY_CSV) -> None:
    """The dynamic ensemble's mean stage weight w^k (eq. 5) per frequency group, as stacked bars: which stage it
    trusts for each group."""
    from mec_cli.reporting.figures import weights_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import weights_frame

    _check_outputs([csv], [run], [out])
    r = load_runs([run])[0]
    frame = weights_frame(r, grouping)
    written = _commit(_figure(weights_figure(frame, f"{r.label}: which stage the dynamic ensemble trusts, per "
                                                    "frequency group"), out, csv, frame))
    _print_frame(f"{r.label}: mean stage weight per group (dynamic ensemble, eq. 5)", frame,
                 ["over the detections the model kept; stage 1 = lowest IoU threshold"], digits=3)
    _wrote(written)



@report_app.command("confusion", epilog="Examples:\n\n"
                    "  [bold]mec report confusion runs/tiny --mode dynamic_ga --out confusion.png[/]\n\n"
                    "  [bold]mec report confusion metrics.json --mode results --iou-type bbox --top 25 "
                    "--csv confusion.csv[/]")
@cli_errors
def confusion(run: str = typer.Argument(..., help="A metrics JSON or run directory from `mec eval --analysis`."),
              mode: Optional[str] = typer.Option(None, show_default=False, help=f"Scoring mode (default: "
                                                 f"{modes.MEC_MODE}, or a results-file run's one mode, results)."),
              iou_type: str = STUDY_IOU, grouping: str = GROUPING,
              top: int = typer.Option(15, help="Category confusions to show (at most the 30 stored)."),
              out: Path = typer.Option(Path("confusion.png"), "--out", "-o", help="Figure path (.png writes a .svg "
                                       "beside it)."),
              csv: Optional[Path] = typer.Option(None, help="Also write the matrix as CSV (and the category "
                                                 "confusions beside it, *_pairs.csv).")) -> None:
    """Is a rare object taken for a frequent class? Each object's label (the highest-scoring detection on it) by
    frequency group, under the LVIS federated rules, and the most frequent category confusions."""
    from mec_cli.errors import COUNT_MAX, check_number
    from mec_cli.io import text_writer
    from mec_cli.reporting.figures import confusion_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import confusion_frames

    check_number("top", top, 1, COUNT_MAX, integer=True)
    _check_mode_names(mode=mode)
    pairs_csv = csv.with_name(csv.stem + "_pairs" + csv.suffix) if csv is not None else None
    _check_outputs([csv, pairs_csv], [run], [out])
    r = load_runs([run])[0]
    matrix, pairs = confusion_frames(r, mode, iou_type, grouping, top)
    shown = ["group", "objects", "correct %", *(f"as {g} %" for g in matrix.attrs["groups"]), "none %",
             "to more frequent %"]
    fig = confusion_figure(matrix, pairs, f"{r.label}, {matrix.attrs['mode']} ({_metric_name(iou_type)}): which "
                                          "class the detector gives each object")
    outputs = _figure(fig, out, csv, matrix)
    if pairs_csv is not None:
        outputs[pairs_csv] = text_writer(pairs.to_csv(index=False))
    written = _commit(outputs)
    _print_frame(f"{r.label}, {matrix.attrs['mode']}: the label each object gets, % of its group's objects "
                 f"({_metric_name(iou_type)} IoU >= {matrix.attrs['iou']:g})", matrix[shown],
                 ["label = the highest-scoring counted detection on the object (a true positive of another object "
                  "and ignored detections excepted); to more frequent = of the objects labelled with another "
                  "category, those with one of a more frequent group; definitions: mec_cli/evaluation/confusion.py"])
    if len(pairs):
        _print_frame("most frequent confusions (object -> label)", pairs)
    _wrote(written)


@report_app.command("lrp", epilog="Examples:\n\n"
                    "  [bold]mec report lrp runs/tiny --out lrp.png[/]\n\n"
                    "  [bold]mec report lrp runs/tiny_baseline runs/tiny --modes mean_logits,dynamic_ga "
                    "--iou-type bbox --csv lrp.csv[/]")
@cli_errors
def lrp(runs: List[str] = RUNS, labels: Optional[List[str]] = LABEL,
        modes_: Optional[str] = typer.Option(None, "--modes", help="Modes to show, comma-separated (default: every "
                                             "mode analysed)."),
        iou_type: str = STUDY_IOU, grouping: str = GROUPING,
        out: Path = typer.Option(Path("lrp.png"), "--out", "-o", help="Figure path (.png writes a .svg beside it)."),
        csv: Optional[Path] = STUDY_CSV) -> None:
    """Optimal LRP (Oksuz et al.) per frequency group: one error for localisation, false positives and misses at
    each category's best score threshold (lower is better), with its three components."""
    from mec_cli.reporting.figures import lrp_figure
    from mec_cli.reporting.runs import load_runs
    from mec_cli.reporting.studies import lrp_frame, lrp_table

    _check_mode_names(modes=modes_)
    _check_outputs([csv], runs, [out])
    loaded = load_runs(runs, labels)
    chosen = [m.strip() for m in modes_.split(",")] if modes_ is not None else None
    frame = lrp_frame(loaded, chosen, iou_type, grouping)
    written = _commit(_figure(lrp_figure(frame), out, csv, frame))
    _print_frame(f"oLRP x100 per group ({_metric_name(iou_type)}, IoU 0.5; lower is better)", lrp_table(frame),
                 ["oLRP = min over score thresholds of (sum of (1 - IoU)/(1 - 0.5) over true positives + false "
                  "positives + misses) / (true positives + false positives + misses), per category, then averaged; "
                  "definitions: mec_cli/evaluation/lrp.py"])
    _wrote(written)
