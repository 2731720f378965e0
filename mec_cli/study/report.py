"""A study's report: its tables and figures from the runs evaluated so far, and an index that links them and says
what each shows (``DIR/report/README.md``; the demo keeps its ``reports/`` folder and its ``README.md``).

Each report of the study (:class:`mec_cli.study.spec.ReportSpec`) is made with the library's tables and figures
(:mod:`mec_cli.reporting`), once per seed, then aggregated over the seeds (:mod:`mec_cli.reporting.seeds`): every
table gives mean ± standard deviation and, in its ``seeds`` column, how many seeds stand behind each row. Tables are
written as Markdown, LaTeX and CSV (the CSV with the means, deviations and counts as numbers), figures as PNG and SVG
with the CSV of what they draw. A report whose runs are not evaluated yet is named in the index, with what it waits
for, instead of being drawn from part of its runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from mec_cli.errors import MecError
from mec_cli.io import write_json_atomic, write_text_atomic
from mec_cli.study import manifest as mf

WHAT = {
    "compare": "Table 1 style: each baseline (mean_logits, MMDetection's mean of the stage logits) against its MEC run "
               "(dynamic ensemble with group alignment), box and mask AP overall and per frequency group, with the "
               "gains (Δ: the mean of the per-seed gains)",
    "ablation": "Table 2(c) style ablation: each run scored with and without the dynamic/sparse ensembles and group "
                "alignment (marks read from the runs), mask AP overall and per frequency group, box mAP",
    "stage-count": "Table 3 style: the baseline and MEC with 3 and 4 stages (MEC runs scored with the dynamic "
                   "ensemble and group alignment)",
    "models": "Table 2(b) style: every run in its own scoring mode (baselines mean_logits, MEC dynamic_ga): mask AP, "
              "AP50, AP75 and per frequency group, box mAP",
    "lambda": "Figure 4 style: box and mask AP, overall and per frequency group, against the multi-expert loss's "
              "lambda",
}


def _runs(study_dir: Path, doc: Dict[str, Any]) -> Dict[Tuple[str, int], Any]:
    """The evaluated runs, by (label, seed), loaded for the reports (labelled without the seed)."""
    from mec_cli.reporting.runs import load_runs

    out = {}
    for run in doc["runs"]:
        metrics = run["eval"].get("metrics")
        if run["eval"]["status"] == "done" and metrics and (study_dir / metrics).is_file():
            out[(run["label"], run["seed"])] = load_runs([str(study_dir / metrics)], labels=[run["label"]])[0]
    return out


class ReportWriter:
    """Writes the files of one report folder and keeps the index's entries (paths relative to the index)."""

    def __init__(self, folder: Path, index_dir: Path):
        self.folder, self.index_dir = folder, index_dir
        self.items: List[Dict[str, str]] = []
        self.missing: List[str] = []

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.index_dir)

    def table(self, name: str, table, what: str) -> None:
        from mec_cli.reporting.render import render

        for fmt, ext in (("md", "md"), ("latex", "tex")):
            write_text_atomic(self.folder / f"{name}.{ext}", render(table, fmt))
        machine = getattr(table, "machine", None)
        csv = machine.to_csv(index=False) if machine is not None and len(machine) else render(table, "csv")
        write_text_atomic(self.folder / f"{name}.csv", csv)
        self.items.append({"path": self.rel(self.folder / f"{name}.md"),
                           "also": f"{self.rel(self.folder / f'{name}.tex')}, {self.rel(self.folder / f'{name}.csv')}",
                           "what": what})

    def figure(self, name: str, fig, frame, what: str, index: bool = False, extra: Optional[Dict[str, Any]] = None):
        from mec_cli.reporting.figures import save_figure

        paths = save_figure(fig, str(self.folder / f"{name}.png"))
        also = [Path(p).name for p in paths[1:]]
        if frame is not None:
            write_text_atomic(self.folder / f"{name}.csv", frame.to_csv(index=index))
            also.append(f"{name}.csv")
        for file_name, text in (extra or {}).items():
            write_text_atomic(self.folder / file_name, text)
            also.append(file_name)
        self.items.append({"path": self.rel(self.folder / f"{name}.png"), "also": ", ".join(also), "what": what})


def _per_seed(runs, labels: List[str], seeds: List[int], complete: bool = True) -> Dict[int, List]:
    """{seed: the runs of ``labels`` evaluated for that seed}; with ``complete``, only seeds that have them all."""
    out = {}
    for seed in seeds:
        have = [runs[(x, seed)] for x in labels if (x, seed) in runs]
        if have and (len(have) == len(labels) or not complete):
            out[seed] = have
    return out


def _pairs_per_seed(runs, labels: List[str], seeds: List[int]) -> Dict[int, List]:
    out = {}
    for seed in seeds:
        have = [r for b, m in zip(labels[::2], labels[1::2]) if (b, seed) in runs and (m, seed) in runs
                for r in (runs[(b, seed)], runs[(m, seed)])]
        if have:
            out[seed] = have
    return out


def models_table(runs, reference: bool = False):
    """Table 2(b) style: a row per run in its own mode (baseline_mode for baselines, MEC_MODE for MEC runs)."""
    import pandas as pd

    from mec_cli.ops.modes import BASELINE_MODE, MEC_MODE
    from mec_cli.reporting import paper
    from mec_cli.reporting.runs import grouping_note, resolve_grouping
    from mec_cli.reporting.tables import CHECK, ReportTable, baseline_note, group_columns, pick_mode

    grouping = resolve_grouping(runs, "auto")
    gcols = group_columns(runs, grouping)
    names = {"r": "rare", "c": "common", "f": "frequent"}
    rows = []
    for run in runs:
        mode = pick_mode(run, None, MEC_MODE if run.mec_loss else BASELINE_MODE)
        row = {"model": run.label, "MEC": CHECK if run.mec_loss else "✗", "mode": mode}
        for col, key in (("mAP^m", "AP"), ("AP50^m", "AP50"), ("AP75^m", "AP75")):
            v = run.metric(mode, "segm", key)
            row[col] = None if v is None else round(100 * v, 1)
        for g in gcols:
            v = run.group_ap(mode, "segm", names.get(g, g) if grouping == "lvis" else g, grouping)
            row[f"AP^m_{g}"] = None if v is None else round(100 * v, 1)
        v = run.metric(mode, "bbox", "AP")
        row["mAP"] = None if v is None else round(100 * v, 1)
        if reference:
            ref = paper.lookup("1", run.recipe, run.dataset)
            row["paper mAP^m"], row["paper mAP"] = (ref["mAPm"], ref["AP"]) if ref else (None, None)
        rows.append(row)
    cols = ["mAP^m", "AP50^m", "AP75^m", *(f"AP^m_{g}" for g in gcols), "mAP"] + (
        ["paper mAP^m", "paper mAP"] if reference else [])
    notes = [baseline_note(BASELINE_MODE), grouping_note(runs, grouping)]
    if reference:
        notes.append(f"paper columns: {paper.SOURCES['2b']} or {paper.SOURCES['1']}, only beside runs of the same "
                     "recipe and dataset")
    return ReportTable("Models (Table 2(b) style)", pd.DataFrame(rows), cols, highlight_best=True, notes=notes)


def _seeds_phrase(seeds: List[int]) -> str:
    return f"mean ± sd over {len(seeds)} seeds" if len(seeds) > 1 else "one seed"


def _table_report(w: ReportWriter, name: str, kind: str, per_seed: Dict[int, List], make: Callable, what: str):
    from mec_cli.reporting.seeds import aggregate

    tables = {seed: make(runs) for seed, runs in per_seed.items()}
    w.table(name, aggregate(tables), what)
    return tables


def _compare(w: ReportWriter, rep, runs, seeds: List[int], name: str) -> None:
    """Table 1 style over the seeds, with the paired bootstrap interval over images of each gain, per seed
    (:func:`mec_cli.reporting.significance.compare_intervals`, the library call of `mec report compare --ci`): under
    each gain row with one seed; with several, each seed's verdicts in the notes, and every interval in
    ``compare_intervals.csv`` and the ``gain_intervals`` figure."""
    import pandas as pd

    from mec_cli.reporting.figures import intervals_figure
    from mec_cli.reporting.seeds import aggregate
    from mec_cli.reporting.significance import compare_intervals, with_intervals
    from mec_cli.reporting.tables import compare_table

    per_seed = _pairs_per_seed(runs, rep.labels, seeds)
    if not per_seed:
        w.missing.append(f"{name}: no baseline and MEC pair is evaluated for any seed yet")
        return
    table = aggregate({seed: compare_table(rs, reference=rep.reference) for seed, rs in per_seed.items()})
    intervals = {}
    for seed, rs in per_seed.items():
        try:
            intervals[seed] = compare_intervals(rs)
        except MecError as e:  # runs evaluated without per-image records
            w.missing.append(f"intervals of the gains, seed {seed}: {e.message}")
    what = WHAT["compare"] + f" ({_seeds_phrase(sorted(per_seed))}; `seeds` says how many per row)"
    if len(per_seed) == 1 and intervals:
        seed = next(iter(intervals))
        shown = with_intervals(table, intervals[seed])
        shown.machine = table.machine  # the CSV keeps the numbers
        shown.notes = [n.replace("per group: --csv", "per group: gain_intervals.csv") for n in shown.notes]
        table = shown
    elif intervals:
        pct = f"{100 * next(iter(intervals.values())).attrs['confidence']:g}%"
        for seed, frame in intervals.items():
            for _, r in frame[frame["group"] == "all"].iterrows():
                what_ap = "box AP" if r["iou type"] == "bbox" else "mask AP"
                table.notes.append(f"seed {seed}, {r['pair']}, {what_ap}: {r['verdict']}")
        table.notes.append(f"{pct} paired bootstrap intervals over the images, per seed and group: "
                           "compare_intervals.csv")
    if intervals:
        what += (", and the 95% paired bootstrap interval over the validation images of each gain, with whether it is "
                 "within noise (`mec report compare --ci`)")
    w.table(name, table, what + ".")
    if not intervals:
        return
    frames = []
    for seed, frame in intervals.items():
        frame = frame.copy()
        frame.insert(0, "seed", seed)
        if len(intervals) > 1:
            frame["pair"] = frame["pair"] + f" (seed {seed})"
        frames.append(frame)
    allf = pd.concat(frames, ignore_index=True)
    allf.attrs.update(next(iter(intervals.values())).attrs)
    if len(intervals) > 1:
        write_text_atomic(w.folder / "compare_intervals.csv", allf.to_csv(index=False))
        w.items[-1]["also"] += f", {w.rel(w.folder / 'compare_intervals.csv')}"
    w.figure("gain_intervals", intervals_figure(allf, "MEC against its baseline: gain and 95% bootstrap interval per "
                                                      "group"), allf,
             "MEC's gain over the baseline in each AP column (box and mask, per frequency group) with its 95% paired "
             "bootstrap interval over the validation images" + (", one panel per pair and seed" if len(intervals) > 1
                                                                else "") + ": a gain whose interval holds 0 is within "
             "noise.")


def _figures(w: ReportWriter, rep, runs, seeds: List[int]) -> None:
    """Figure 1(a) (each stage alone, per group) for each run of the pairs and 1(b) (baseline against MEC per
    group) for each pair, over the seeds (means; the CSVs add the deviations)."""
    from mec_cli.reporting.figures import compare_groups_figure, stages_figure
    from mec_cli.reporting.runs import grouping_axis, resolve_grouping
    from mec_cli.reporting.seeds import mean_frame, std_frame
    from mec_cli.reporting.tables import baseline_vs_mec, stages_frame

    pairs = list(zip(rep.labels[::2], rep.labels[1::2]))
    for label in [x for pair in pairs for x in pair[::-1]]:
        have = [runs[(label, s)] for s in seeds if (label, s) in runs]
        if not have:
            w.missing.append(f"stages_{label}: run {label} is not evaluated yet")
            continue
        frames = [stages_frame(r, "segm") for r in have]
        frame = mean_frame(frames)
        axis = grouping_axis(have[0], frame.attrs["grouping"])
        n = f", {_seeds_phrase(seeds[:len(have)])}" if len(have) > 1 else ""
        csv = frame.to_csv() if len(have) == 1 else frame.join(std_frame(frames).add_suffix(" sd")).to_csv()
        w.figure(f"stages_{label}", stages_figure(frame, f"{label}: per-stage mask AP by frequency group (Figure "
                                                         f"1a){n}", xlabel=axis), None,
                 f"Figure 1(a) for {label}: mask AP of each cascade stage alone, per frequency group (stage 1 has the "
                 f"lowest IoU threshold){n}.", extra={f"stages_{label}.csv": csv})
    for base, mec in pairs:
        both = [s for s in seeds if (base, s) in runs and (mec, s) in runs]
        if not both:
            w.missing.append(f"baseline_vs_mec ({base}, {mec}): the pair is not evaluated for any seed yet")
            continue
        values: Dict[str, Dict] = {}
        for s in both:
            for key, per_group in baseline_vs_mec(runs[(base, s)], runs[(mec, s)]).items():
                for g, v in per_group.items():
                    values.setdefault(key, {}).setdefault(g, []).append(v)
        means = {k: {g: (None if any(v is None for v in vs) else round(sum(vs) / len(vs), 1)) for g, vs in d.items()}
                 for k, d in values.items()}
        name = "baseline_vs_mec" if len(pairs) == 1 else f"baseline_vs_mec_{mec}"
        grouping = resolve_grouping([runs[(base, both[0])], runs[(mec, both[0])]])
        title = "Baseline vs MEC by group (Figure 1b)" + (f", {_seeds_phrase(both)}" if len(both) > 1 else "")
        w.figure(name, compare_groups_figure(means, title, xlabel=grouping_axis(runs[(mec, both[0])], grouping)),
                 None, "Figure 1(b): mask AP per frequency group, baseline against MEC" +
                 (f" ({_seeds_phrase(both)})" if len(both) > 1 else "") + ".")


def _studies(w: ReportWriter, rep, runs, seeds: List[int]) -> None:
    """The study figures (AP against the IoU threshold, errors, calibration, stage weights) of the first pair, for
    its first evaluated seed: they show one model's behaviour, which an average would blur."""
    from mec_cli.ops.modes import BASELINE_MODE, MEC_MODE
    from mec_cli.reporting.figures import (
        calibration_figure,
        confusion_figure,
        errors_figure,
        iou_profile_figure,
        lrp_figure,
        weights_figure,
    )
    from mec_cli.reporting.studies import (
        calibration_frames,
        confusion_frames,
        errors_frame,
        iou_profile_frame,
        lrp_frame,
        weights_frame,
    )

    base_label, mec_label = rep.labels[0], rep.labels[1]
    seed = next((s for s in seeds if (base_label, s) in runs and (mec_label, s) in runs), None)
    if seed is None:
        w.missing.append(f"studies ({base_label}, {mec_label}): the pair is not evaluated yet")
        return
    base, mec = runs[(base_label, seed)], runs[(mec_label, seed)]
    of_seed = f" (seed {seed})" if len(seeds) > 1 else ""
    frame = iou_profile_frame(mec, base, MEC_MODE, BASELINE_MODE, "segm")
    w.figure("iou_profile", iou_profile_figure(frame, f"{mec.label}: mask AP against the IoU threshold, per frequency "
                                               f"group{of_seed}", "mask AP"), frame,
             "The paper's claim tested on this model: mask AP at each IoU threshold 0.50:0.95 per frequency group, a "
             f"line per cascade stage alone, MEC's {MEC_MODE} ensemble and the baseline's {BASELINE_MODE} (dashed). "
             f"If rare categories favour the low-IoU stage, stage 1 leads in the rare panel{of_seed}.")
    for run, mode in ((mec, MEC_MODE), (base, BASELINE_MODE)):
        frame = errors_frame(run, mode, "segm")
        w.figure(f"errors_{run.label}", errors_figure(frame, f"{run.label}, {frame.attrs['mode']} (mask AP): where "
                                                            f"the AP goes, per frequency group{of_seed}"), frame,
                 f"Errors of {run.label} ({frame.attrs['mode']}) per frequency group, TIDE-style under the LVIS "
                 "federated rules: the AP50 points each error type costs (classification, localisation, both, "
                 "duplicate, background, missed); the CSV adds the shares, counts and the classification errors that "
                 f"went to a more frequent group{of_seed}.")
    bins, ece = calibration_frames(mec, [BASELINE_MODE, "dynamic", MEC_MODE], "segm")
    w.figure("calibration", calibration_figure(bins, ece, f"{mec.label}: reliability per frequency group (mask, "
                                                          f"precision at IoU 0.5){of_seed}"), bins,
             f"Reliability diagrams of {mec.label} per frequency group for {BASELINE_MODE}, dynamic and {MEC_MODE}, "
             "with each one's expected calibration error: are rare and frequent scores on one scale after group "
             f"alignment{of_seed}?", extra={"calibration_ece.csv": ece.to_csv(index=False)})
    w.items[-1]["also"] = w.items[-1]["also"].replace("calibration.csv", "calibration.csv (bins)")
    matrix, pairs = confusion_frames(mec, MEC_MODE, "segm")
    w.figure("confusion", confusion_figure(matrix, pairs, f"{mec.label}, {matrix.attrs['mode']} (mask): which class "
                                                          f"the detector gives each object{of_seed}"), matrix,
             f"Is a rare object taken for a frequent class? Every object of {mec.label}'s validation set by the label "
             f"its highest-scoring detection gives it ({matrix.attrs['mode']}, mask IoU >= 0.5, LVIS federated rules), "
             f"per frequency group, and the most frequent category confusions{of_seed}.")
    frame = lrp_frame([base, mec], [BASELINE_MODE, MEC_MODE], "segm")
    w.figure("lrp", lrp_figure(frame, f"Optimal LRP per frequency group, baseline and MEC (mask; lower is better)"
                                      f"{of_seed}"), frame,
             f"Optimal LRP (Oksuz et al.) per frequency group for the baseline ({BASELINE_MODE}) and MEC ({MEC_MODE}), "
             "with its localisation, false-positive and false-negative components at each category's best score "
             f"threshold (lower is better){of_seed}.")
    frame = weights_frame(mec)
    w.figure("weights", weights_figure(frame, f"{mec.label}: which stage the dynamic ensemble trusts, per frequency "
                                              f"group{of_seed}"), frame,
             f"The dynamic ensemble's mean stage weight w^k (eq. 5) per frequency group over the detections "
             f"{mec.label} kept, as stacked bars (stage 1 = lowest IoU threshold){of_seed}.")


def _distribution(w: ReportWriter, doc: Dict[str, Any], study_dir: Path) -> None:
    from mec_cli import launch, recipes
    from mec_cli.data.groups import DEFAULT_BINS
    from mec_cli.reporting.distribution import distribution_curves
    from mec_cli.reporting.figures import distribution_figure

    first = doc["runs"][0]
    opts = doc["options"]
    cfg, _, _ = launch.resolve_config(launch.LaunchOptions(recipe=first["recipe"], dataset=first["settings"]["dataset"],
                                                           data_root=opts.get("data_root")))
    train = recipes.annotation_path(cfg, "train")
    if not train.is_file():
        w.missing.append(f"distribution: the training annotations {train} are not on this machine")
        return
    curves = distribution_curves([str(train), "lvis_v1", "coco2017"])
    w.figure("distribution", distribution_figure(curves), None,
             "Figure 5 style: sorted training instances per category of the training set, LVIS v1 and COCO, with "
             f"the group edges {' and '.join(map(str, DEFAULT_BINS))}.")


def _lambda(w: ReportWriter, rep, runs, seeds: List[int]) -> None:
    from mec_cli.ops.modes import MEC_MODE
    from mec_cli.reporting.seeds import aggregate, lambda_seeds_figure
    from mec_cli.reporting.tables import ReportTable, lambda_frame, model_columns

    mode = rep.mode or MEC_MODE
    per_seed = _per_seed(runs, rep.labels, seeds, complete=False)
    if not per_seed:
        w.missing.append("lambda: none of its runs is evaluated yet")
        return
    tables, groups = {}, None
    for seed, rs in per_seed.items():
        frame = lambda_frame(rs, mode)
        groups = frame.attrs["groups"]
        cols = model_columns(rs, frame.attrs["grouping"])
        tables[seed] = ReportTable(f"AP against lambda ({mode}; Figure 4 style)", frame, cols)
    agg = aggregate(tables)
    what = WHAT["lambda"] + f", scored with {mode} ({_seeds_phrase(sorted(per_seed))})."
    w.table("lambda", agg, what)
    w.figure("lambda_figure", lambda_seeds_figure(agg.machine, groups, len(per_seed)), None,
             what + " Error bars: one standard deviation over the seeds.")


def build_report(study_dir, layout: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write the report of the study in ``study_dir`` from its evaluated runs; returns {"index", "outputs",
    "missing"}. ``layout`` changes where it goes (the demo: ``{"folder": "reports", "index": "README.md",
    "title": ..., "intro": [...], "links": [...], "tail": "compare"}``)."""
    study_dir = Path(study_dir)
    doc = mf.read_manifest(study_dir)
    layout = {"folder": "report", "index": "report/README.md", **(layout or {})}
    folder, index = study_dir / layout["folder"], study_dir / layout["index"]
    study = doc["study"]
    seeds = list(study["seeds"])
    runs = _runs(study_dir, doc)
    if not runs:
        raise MecError("no run of this study is evaluated yet: nothing to report", study_dir)
    from mec_cli.study.spec import ReportSpec

    w = ReportWriter(folder, index.parent)
    for raw in study["reports"]:
        rep = ReportSpec(**raw)
        if rep.kind == "compare":
            _compare(w, rep, runs, seeds, "compare")
        elif rep.kind in ("ablation", "stage-count", "models"):
            from mec_cli.reporting.tables import ablation_table, stage_count_table

            make = {"ablation": lambda rs: ablation_table(rs, reference=rep.reference),
                    "stage-count": lambda rs: stage_count_table(rs, reference=rep.reference),
                    "models": lambda rs: models_table(rs, reference=rep.reference)}[rep.kind]
            per_seed = _per_seed(runs, rep.labels, seeds, complete=False)
            name = rep.kind.replace("-", "_")
            if not per_seed:
                w.missing.append(f"{name}: none of its runs is evaluated yet")
                continue
            what = WHAT[rep.kind] + f" ({_seeds_phrase(sorted(per_seed))}; `seeds` says how many per row)."
            if rep.kind == "ablation" and not rep.reference:
                what += " The paper's numbers belong to its Cascade R50 on LVIS, so none stand beside these runs."
            _table_report(w, name, rep.kind, per_seed, make, what)
        elif rep.kind == "lambda":
            _lambda(w, rep, runs, seeds)
        elif rep.kind == "figures":
            _figures(w, rep, runs, seeds)
        elif rep.kind == "studies":
            _studies(w, rep, runs, seeds)
        elif rep.kind == "distribution":
            _distribution(w, doc, study_dir)
    runs_table = _runs_table(study_dir, doc)
    write_text_atomic(folder / "runs.csv", runs_table.to_csv(index=False))
    w.items.append({"path": w.rel(folder / "runs.csv"), "also": "",
                    "what": "every run of the study: label, seed, recipe, the status of its training and evaluation, "
                            "their wall times, and its metrics file"})
    _write_index(index, w, doc, study_dir, layout, runs, seeds)
    summary = {"index": str(index), "outputs": w.items, "missing": w.missing}
    write_json_atomic(folder / "report.json", summary)
    return summary


def _runs_table(study_dir: Path, doc: Dict[str, Any]):
    import pandas as pd

    rows = []
    for run in doc["runs"]:
        rows.append({"run": run["name"], "label": run["label"], "seed": run["seed"], "recipe": run["recipe"],
                     "train": mf.effective_status(study_dir, run, "train"), "train_s": run["train"].get("wall_s"),
                     "eval": mf.effective_status(study_dir, run, "eval"), "eval_s": run["eval"].get("wall_s"),
                     "metrics": run["eval"].get("metrics") or ""})
    return pd.DataFrame(rows)


def _write_index(index: Path, w: ReportWriter, doc, study_dir: Path, layout, runs, seeds: List[int]) -> None:
    study = doc["study"]
    lines = [layout.get("title", f"# mec study {study['name']}"), ""]
    lines += layout.get("intro") or [f"{study['description'][0].upper()}{study['description'][1:]}.", ""]
    evaluated = sum(1 for r in doc["runs"] if r["eval"]["status"] == "done")
    if "intro" not in layout:
        lines += [f"{len(doc['runs'])} runs ({len(study['runs'])} configurations x {len(seeds)} seed"
                  f"{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))}), {evaluated} evaluated. Tables give "
                  "the mean ± standard deviation over seeds and, in their `seeds` column, how many seeds stand behind "
                  "each row. `mec study status` shows every run; the manifest is `study.json`.", ""]
        lines += [f"- {n}" for n in study.get("notes") or []] + ([""] if study.get("notes") else [])
    lines += ["## Outputs", ""]
    for it in w.items:
        also = f" (also {it['also']})" if it["also"] else ""
        lines.append(f"- [{it['path']}]({it['path']}){also}: {it['what']}")
    lines += layout.get("links", [])
    if w.missing:
        lines += ["", "## Not yet", ""] + [f"- {m}" for m in w.missing]
    tail = [it for it in w.items if it["path"].endswith("compare.md")]
    if tail:
        lines += ["", "## Baseline against MEC", "", (index.parent / tail[0]["path"]).read_text().rstrip()]
    write_text_atomic(index, "\n".join(lines) + "\n")
