"""The study reports as pandas DataFrames: AP per IoU threshold, errors, calibration and the dynamic ensemble's
stage weights, per frequency group (the sections of the metrics JSON documented in
:mod:`mec_cli.evaluation.api`). Figures are in :mod:`mec_cli.reporting.figures`; the CLI writes the files.

Every frame records its grouping (``frame.attrs['grouping']``: 'lvis' or 'groups') and its groups in order
from rare to frequent (``frame.attrs['groups']``). AP values are x100 like the other reports.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import pandas as pd

from mec_cli.errors import MecError
from mec_cli.ops.modes import BASELINE_MODE, MEC_MODE
from mec_cli.reporting.runs import GROUPINGS, LVIS_KEYS, Run, resolve_grouping
from mec_cli.reporting.tables import pick_mode

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
ERROR_NAMES = {"cls": "wrong class", "loc": "box", "both": "class + box", "dupe": "duplicate", "bkg": "background",
               "miss": "missed GT"}
ANALYSIS_HINT = "evaluate it with `mec eval --analysis`"


def _pct(v: Optional[float], digits: int = 1) -> Optional[float]:
    return None if v is None or v < 0 else round(100.0 * v, digits)


def _iou_type(run: Run, mode: str, iou_type: str) -> Dict:
    metrics = run.doc["modes"].get(mode, {}).get(iou_type)
    if not isinstance(metrics, dict):
        held = ", ".join(t for t in run.doc["modes"].get(mode, {}) if t != "stage_weights")
        raise MecError(f"run {run.label}, mode {mode}, has no {iou_type} metrics (it has {held})", run.path)
    return metrics


def stage_modes(run: Run) -> List[str]:
    """The run's single-stage modes, stage 1 (lowest IoU threshold) first."""
    return sorted((m for m in run.modes if m.startswith("stage") and m[5:].isdigit()), key=lambda m: int(m[5:]))


# --- AP against the IoU threshold ------------------------------------------------------------------------------

def iou_profile_frame(run: Run, baseline: Optional[Run] = None, mec_mode: Optional[str] = None,
                      baseline_mode: Optional[str] = None, iou_type: str = "segm",
                      grouping: str = "auto") -> pd.DataFrame:
    """AP (x100) at each IoU threshold, per group: a row per (series, group, threshold).

    The series are the run's stages (``--per-stage``), its ``mec_mode`` ensemble and, with ``baseline``, the
    baseline run's ``baseline_mode`` ensemble. Columns: series, kind ('stage', 'ensemble', 'baseline'), mode,
    group, iou, AP. Needs ``AP_per_iou`` (metrics schema /2).
    """
    runs = [run] + ([baseline] if baseline is not None else [])
    grouping = resolve_grouping(runs, grouping)
    groups = run.group_names(grouping)
    thresholds = run.doc.get("iou_thresholds") or [round(0.5 + 0.05 * t, 2) for t in range(10)]
    series = [(f"stage {m[5:]}", "stage", run, m) for m in stage_modes(run)]
    mm = pick_mode(run, mec_mode, MEC_MODE)
    series.append((mm, "ensemble", run, mm))
    if baseline is not None:
        bm = pick_mode(baseline, baseline_mode, BASELINE_MODE)
        series.append((f"baseline {baseline.label} ({bm})", "baseline", baseline, bm))
    rows = []
    for label, kind, r, mode in series:
        per_iou = _iou_type(r, mode, iou_type).get("AP_per_iou")
        if per_iou is None:
            raise MecError(f"run {r.label} has no AP per IoU threshold (schema {r.doc.get('schema')}): evaluate "
                           "again with mec eval (schema /2)", r.path)
        for g in groups:
            key = LVIS_KEYS[g] if grouping == "lvis" else f"AP_{g}"
            values = per_iou.get(key)
            if not isinstance(values, list) or len(values) != len(thresholds):
                raise MecError(f"run {r.label}: modes.{mode}.{iou_type}.AP_per_iou has no {key} for each threshold",
                               r.path)
            rows += [{"series": label, "kind": kind, "mode": mode, "group": g, "iou": float(t), "AP": _pct(v)}
                     for t, v in zip(thresholds, values)]
    frame = pd.DataFrame(rows)
    frame.attrs.update(grouping=grouping, groups=groups, iou_type=iou_type, series=[s[0] for s in series])
    return frame


def iou_profile_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The profile wide: a row per (group, series), a column per IoU threshold."""
    wide = frame.pivot_table(index=["group", "series"], columns="iou", values="AP", sort=False, dropna=False)
    rows = pd.MultiIndex.from_product([frame.attrs["groups"], frame.attrs["series"]], names=["group", "series"])
    wide = wide.reindex(rows)
    wide.columns = [f"{c:.2f}" for c in wide.columns]
    return wide.reset_index()


# --- study sections: errors, calibration, stage weights -------------------------------------------------------

def study_grouping(available: Sequence[str], grouping: str, what: str, run: Run) -> str:
    """The grouping a study section is shown by: 'lvis' or 'groups' when asked for, else LVIS when present."""
    if grouping not in GROUPINGS:
        raise MecError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    if grouping == "auto":
        grouping = "lvis" if "lvis" in available else "groups"
    if grouping not in available:
        name = "LVIS frequency groups (its annotations have no 'frequency')" if grouping == "lvis" else \
            "groups.json groups (evaluate it with --groups)"
        raise MecError(f"run {run.label} has no {what} by {name}", run.path)
    return grouping


def _section(run: Run, mode: str, iou_type: str, key: str) -> Dict:
    metrics = _iou_type(run, mode, iou_type)
    if key not in metrics:
        raise MecError(f"run {run.label}, mode {mode}, {iou_type}, has no {key}: {ANALYSIS_HINT}", run.path)
    return metrics[key]


def errors_frame(run: Run, mode: Optional[str] = None, iou_type: str = "segm", grouping: str = "auto") -> pd.DataFrame:
    """TIDE-style errors of one mode: a row per group (then 'all') with AP50, each type's dAP (AP points), its
    share of the AP gap (%), its count, and the cls errors on the group's objects that went to a more frequent
    group (%)."""
    mode = pick_mode(run, mode, MEC_MODE)
    section = _section(run, mode, iou_type, "errors")
    grouping = study_grouping(list(section["groupings"]), grouping, "error analysis", run)
    groups = section["groupings"][grouping]
    rows = []
    for g, s in groups.items():
        row = {"group": g, "AP50": _pct(s["AP50"])}
        row.update({f"dAP {t}": None if s["dAP"][t] is None else round(100 * s["dAP"][t], 2) for t in ERROR_TYPES})
        row.update({f"share {t}": _pct(s["share"][t]) for t in ERROR_TYPES})
        row.update({f"n {t}": s["count"][t] for t in ERROR_TYPES})
        row["cls objects"] = s["cls_objects"]
        row["cls to more frequent"] = _pct(s["cls_to_more_frequent"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update(grouping=grouping, groups=[g for g in groups if g != "all"], mode=mode, iou_type=iou_type,
                       fg_iou=section["fg_iou"], bg_iou=section["bg_iou"])
    return frame


def calibration_frames(run: Run, modes: Optional[Sequence[str]] = None, iou_type: str = "segm",
                       grouping: str = "auto"):
    """Reliability diagrams of ``modes`` (default: every mode with a calibration section).

    Returns (bins, ece): ``bins`` a row per (mode, group, bin) with lo, hi, count, score, precision; ``ece`` a row
    per mode, a column per group (then 'all'), ECE x100.
    """
    have = [m for m in run.modes if isinstance(run.doc["modes"][m].get(iou_type), dict)
            and "calibration" in run.doc["modes"][m][iou_type]]
    if modes:
        modes = [pick_mode(run, m) for m in dict.fromkeys(modes)]
    else:
        modes = have
    if not modes:
        raise MecError(f"run {run.label} has no {iou_type} calibration: {ANALYSIS_HINT}", run.path)
    bins_rows, ece_rows, grouping_used, groups = [], [], None, []
    for mode in modes:
        section = _section(run, mode, iou_type, "calibration")
        g_used = study_grouping(list(section["groupings"]), grouping, "calibration", run)
        grouping_used, n = g_used, section["bins"]
        sections = section["groupings"][g_used]
        groups = [g for g in sections if g != "all"]
        ece = {"mode": mode}
        for g, s in sections.items():
            ece[g] = _pct(s["ece"])
            for b in range(n):
                bins_rows.append({"mode": mode, "group": g, "bin": b, "lo": b / n, "hi": (b + 1) / n,
                                  "count": s["count"][b], "score": s["score"][b], "precision": s["precision"][b]})
        ece["detections"] = sections["all"]["detections"]
        ece_rows.append(ece)
    bins, ece = pd.DataFrame(bins_rows), pd.DataFrame(ece_rows)
    for f in (bins, ece):
        f.attrs.update(grouping=grouping_used, groups=groups, iou_type=iou_type, modes=list(modes))
    return bins, ece


def weights_frame(run: Run, grouping: str = "auto") -> pd.DataFrame:
    """Mean stage weights of the dynamic ensemble: a row per (dynamic mode, group), a column per stage."""
    modes = [m for m in run.modes if "stage_weights" in run.doc["modes"][m]]
    if not modes:
        raise MecError(f"run {run.label} records no stage weights (evaluate a checkpoint with a dynamic mode: "
                       "`mec eval --checkpoint ... --modes dynamic`)", run.path)
    rows, used, groups, k = [], None, [], 0
    for mode in modes:
        section = run.doc["modes"][mode]["stage_weights"]
        used = study_grouping(list(section["groupings"]), grouping, "stage weights", run)
        k = section["stages"]
        sections = section["groupings"][used]
        groups = [g for g in sections if g != "all"]
        for g, s in sections.items():
            row = {"mode": mode, "group": g, "detections": s["detections"]}
            row.update({f"stage {i + 1}": None if s["mean"] is None else round(s["mean"][i], 4) for i in range(k)})
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update(grouping=used, groups=groups, stages=k, modes=modes)
    return frame


# --- confusion between groups, oLRP ---------------------------------------------------------------------------

def confusion_frames(run: Run, mode: Optional[str] = None, iou_type: str = "segm", grouping: str = "auto",
                     top: int = 15):
    """The object-label confusion of one mode (``mec eval --analysis``, :mod:`mec_cli.evaluation.confusion`).

    Returns (matrix, pairs). ``matrix``: a row per group of the objects (then 'all') with the counts ``objects``,
    ``correct``, ``as <group>`` for each group, ``none``, the same as % of the row's objects, and ``to more
    frequent %``: of the row's objects labelled with another category, those labelled with a category of a more
    frequent group. ``pairs``: the ``top`` most frequent (object category -> label category) confusions, with the
    share of the object category's objects (%).
    """
    mode = pick_mode(run, mode, MEC_MODE)
    section = _section(run, mode, iou_type, "confusion")
    grouping = study_grouping(list(section["groupings"]), grouping, "confusion matrix", run)
    rows_in = section["groupings"][grouping]
    groups = [g for g in rows_in if g != "all"]
    rows, more_all, wrong_all = [], 0, 0
    for g, r in rows_in.items():
        row = {"group": g, "objects": r["objects"], "correct": r["correct"],
               **{f"as {h}": r["as"].get(h, 0) for h in groups}, "none": r["none"]}
        n = max(r["objects"], 1)
        row.update({"correct %": round(100 * r["correct"] / n, 1) if r["objects"] else None,
                    **{f"as {h} %": round(100 * r["as"].get(h, 0) / n, 1) if r["objects"] else None for h in groups},
                    "none %": round(100 * r["none"] / n, 1) if r["objects"] else None})
        wrong = sum(r["as"].get(h, 0) for h in groups)
        if g != "all":
            more = sum(r["as"].get(h, 0) for h in groups[groups.index(g) + 1:])
            more_all, wrong_all = more_all + more, wrong_all + wrong
        else:
            more, wrong = more_all, wrong_all
        row["to more frequent %"] = round(100 * more / wrong, 1) if wrong else None
        rows.append(row)
    matrix = pd.DataFrame(rows)
    pair_rows = []
    for i, p in enumerate(section["pairs"][:top]):
        names = p.get(grouping) or [None, None]
        share = round(100 * p["objects"] / max(p["gt_objects"], 1), 1)
        pair_rows.append({"rank": i + 1, "object": p.get("gt_name") or str(p["gt"]),
                          "label": p.get("label_name") or str(p["label"]), "object group": names[0],
                          "label group": names[1], "objects": p["objects"], "of its objects %": share})
    pairs = pd.DataFrame(pair_rows, columns=["rank", "object", "label", "object group", "label group", "objects",
                                             "of its objects %"])
    for f in (matrix, pairs):
        f.attrs.update(grouping=grouping, groups=groups, mode=mode, iou_type=iou_type, iou=section["iou"])
    return matrix, pairs


LRP_COMPONENTS = ("oLRP", "loc", "fp", "fn")
LRP_NAMES = {"oLRP": "oLRP", "loc": "localisation", "fp": "false positives", "fn": "false negatives"}


def lrp_frame(runs: Sequence[Run], modes: Optional[Sequence[str]] = None, iou_type: str = "segm",
              grouping: str = "auto") -> pd.DataFrame:
    """oLRP and its components (x100, lower is better) per group (then 'all') for each run and mode with an ``lrp``
    section (``mec eval --analysis``, :mod:`mec_cli.evaluation.lrp`): a row per (series, group), columns
    oLRP, loc, fp, fn and the number of categories measured."""
    rows, used, groups, series = [], None, [], []
    for run in runs:
        have = [m for m in run.modes if isinstance(run.doc["modes"][m].get(iou_type), dict)
                and "lrp" in run.doc["modes"][m][iou_type]]
        chosen = [pick_mode(run, m) for m in dict.fromkeys(modes)] if modes else have
        if not chosen:
            raise MecError(f"run {run.label} has no {iou_type} oLRP: {ANALYSIS_HINT}", run.path)
        for mode in chosen:
            section = _section(run, mode, iou_type, "lrp")
            if section["groupings"]:
                used = study_grouping(list(section["groupings"]), grouping, "oLRP", run)
                blocks = section["groupings"][used]
            else:  # no groups to split by (COCO annotations, no groups.json): overall only
                used, blocks = None, {"all": section["overall"]}
            groups = [g for g in blocks if g != "all"]
            label = f"{run.label} ({mode})" if len(runs) > 1 else mode
            series.append(label)
            for g, b in blocks.items():
                rows.append({"series": label, "run": run.label, "mode": mode, "group": g,
                             **{c: _pct(b[c]) for c in LRP_COMPONENTS}, "categories": b["categories"]})
    frame = pd.DataFrame(rows)
    frame.attrs.update(grouping=used, groups=groups, iou_type=iou_type, series=series)
    return frame


def lrp_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The oLRP frame wide: a row per series, oLRP overall and per group, then the components overall."""
    rows = []
    for s in frame.attrs["series"]:
        part = frame[frame["series"] == s].set_index("group")
        row = {"series": s, "oLRP": part.loc["all", "oLRP"]}
        row.update({f"oLRP {g}": part.loc[g, "oLRP"] for g in frame.attrs["groups"]})
        row.update({f"{LRP_NAMES[c]}": part.loc["all", c] for c in LRP_COMPONENTS[1:]})
        rows.append(row)
    return pd.DataFrame(rows)
