"""The paper's figures as matplotlib Figure objects (no pyplot state). Group colours are the same everywhere."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mec_cli.data.groups import DEFAULT_BINS, GROUP_NAMES, group_names
from mec_cli.io import output_target, write_outputs
from mec_cli.reporting.studies import ERROR_NAMES, ERROR_TYPES

GROUP_COLOURS = {**dict(zip(GROUP_NAMES, ("#d62728", "#ff7f0e", "#1f77b4"))),  # rare, common, frequent
                 "g0": "#d62728", "g1": "#ff7f0e", "g2": "#2ca02c", "g3": "#1f77b4", "g4": "#9467bd"}
STAGE_COLOURS = ["#c6dbef", "#6baed6", "#2171b5", "#08306b", "#041a3a"]
FONT = 11


def group_colour(name: str) -> str:
    return GROUP_COLOURS.get(name, "#7f7f7f")


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _label_bars(ax, bars) -> None:
    for bar in bars:
        h = bar.get_height()
        if np.isfinite(h):
            ax.annotate(f"{h:.1f}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=FONT - 3,
                        xytext=(0, 2), textcoords="offset points")


def stages_figure(frame: pd.DataFrame, title: str = "Per-stage AP by frequency group (Figure 1a)",
                  metric: str = "mask AP", xlabel: str = "frequency group") -> Figure:
    """Grouped bars: x = frequency groups, one bar per cascade stage (stage 1 = lowest IoU threshold)."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    groups = list(frame.columns)
    x = np.arange(len(groups))
    width = 0.8 / len(frame.index)
    for k, stage in enumerate(frame.index):
        vals = frame.loc[stage].astype(float).to_numpy()
        bars = ax.bar(x + (k - (len(frame.index) - 1) / 2) * width, vals, width, label=stage,
                      color=STAGE_COLOURS[k % len(STAGE_COLOURS)], edgecolor="black", linewidth=0.5)
        _label_bars(ax, bars)
    ax.set_xticks(x, groups)
    for tick, g in zip(ax.get_xticklabels(), groups):
        tick.set_color(group_colour(g))
        tick.set_fontweight("bold")
    _style(ax, title, xlabel, f"{metric} (%)")
    ax.legend(title="cascade stage", fontsize=FONT - 1, title_fontsize=FONT - 1)
    return fig


def compare_groups_figure(values: Dict[str, Dict[str, Optional[float]]],
                          title: str = "Baseline vs MEC by group (Figure 1b)",
                          metric: str = "mask AP", xlabel: str = "frequency group") -> Figure:
    """Bars per group for each run (e.g. baseline hatched, MEC solid), in the group colours."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    runs = list(values)
    groups = list(next(iter(values.values())))
    x = np.arange(len(groups))
    width = 0.8 / len(runs)
    hatches = ["//", "", "..", "xx"]
    for k, run in enumerate(runs):
        vals = [np.nan if values[run][g] is None else values[run][g] for g in groups]
        bars = ax.bar(x + (k - (len(runs) - 1) / 2) * width, vals, width, label=run,
                      color=[group_colour(g) for g in groups],
                      alpha=0.55 if k == 0 else 0.95, hatch=hatches[k % len(hatches)], edgecolor="black", linewidth=0.5)
        _label_bars(ax, bars)
    ax.set_xticks(x, groups)
    _style(ax, title, xlabel, f"{metric} (%)")
    ax.legend(fontsize=FONT - 1)
    return fig


def lambda_figure(frame: pd.DataFrame, title: str = "AP against lambda (Figure 4)") -> Figure:
    """Two panels (box, mask): AP and the group APs (``frame.attrs['groups']``) against the multi-expert loss's
    lambda."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    groups = frame.attrs.get("groups", [])
    for i, (kind, total) in enumerate((("box", "AP"), ("mask", "mAP^m"))):
        ax = fig.add_subplot(1, 2, i + 1)
        series = [(total, "black", "all")] + [(cols[i], group_colour(name), name) for *cols, name in groups]
        for col, colour, name in series:
            ax.plot(frame["lambda"], frame[col].astype(float), marker="o", color=colour, label=f"{col} ({name})")
        _style(ax, f"{kind} AP", "lambda", "AP (%)")
        ax.legend(fontsize=FONT - 2)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig


def distribution_figure(curves: Dict[str, Sequence[int]], bins: Sequence[int] = DEFAULT_BINS,
                        title: str = "Instances per category, sorted (Figure 5 style)") -> Figure:
    """Sorted instance-count curves on a log axis, with the group edges as bands."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    palette = ["#2ca02c", "black", "#d62728", "#9467bd", "#8c564b", "#1f77b4"]
    top = max((max(c) for c in curves.values() if len(c)), default=10)
    edges = [0.8, *bins, top * 2]
    names = group_names(len(bins) + 1)
    for lo, hi, name in zip(edges[:-1], edges[1:], names):
        ax.axhspan(lo, hi, color=group_colour(name), alpha=0.07, lw=0)
        ax.text(1.0, (lo * hi) ** 0.5 if lo > 0 else hi / 2, f" {name}", color=group_colour(name),
                transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=FONT - 1)
    for b in bins:
        ax.axhline(b, color="grey", ls="--", lw=0.8)
    for k, (label, counts) in enumerate(curves.items()):
        vals = np.sort(np.asarray(counts, dtype=float))[::-1]
        ax.plot(np.arange(1, len(vals) + 1), np.maximum(vals, 0.8), color=palette[k % len(palette)], lw=1.8,
                label=f"{label} ({len(vals)} categories)")
    ax.set_yscale("log")
    ax.set_ylim(0.8, top * 2)
    _style(ax, title, "category rank (most frequent first)", "training instances (log)")
    ax.legend(fontsize=FONT - 1, loc="upper right", bbox_to_anchor=(0.93, 1.0))
    return fig


def _group_title(ax, group: str, text: Optional[str] = None) -> None:
    ax.set_title(text or group, fontsize=FONT + 1, color=group_colour(group) if group != "all" else "black",
                 fontweight="bold")


def iou_profile_figure(frame: pd.DataFrame, title: str = "AP against the IoU threshold, per frequency group",
                       metric: str = "mask AP") -> Figure:
    """One panel per group: AP (%) against the IoU threshold, a line per stage (stage colours, stage 1 = lowest
    IoU threshold), the chosen ensemble in black and a baseline's ensemble dashed (``iou_profile_frame``)."""
    groups = frame.attrs["groups"]
    fig = Figure(figsize=(4.2 * len(groups) + 2.6, 4.2), layout="constrained")
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    stage_k = 0
    styles = {}
    for series in frame.attrs["series"]:
        kind = frame.loc[frame["series"] == series, "kind"].iloc[0]
        if kind == "stage":
            styles[series] = dict(color=STAGE_COLOURS[stage_k % len(STAGE_COLOURS)], marker="o", lw=2, ms=6,
                                  markeredgecolor="black", markeredgewidth=0.6)
            stage_k += 1
        elif kind == "ensemble":
            styles[series] = dict(color="black", marker="s", lw=2.2, ms=5)
        else:
            styles[series] = dict(color="#7f7f7f", marker="x", lw=1.8, ls="--", ms=6)
    for ax, group in zip(axes, groups):
        part = frame[frame["group"] == group]
        for series in frame.attrs["series"]:
            line = part[part["series"] == series]
            ax.plot(line["iou"], line["AP"].astype(float), label=series, **styles[series])
        _style(ax, "", "IoU threshold", f"{metric} (%)" if ax is axes[0] else "")
        _group_title(ax, group)
        ax.set_xticks(sorted(part["iou"].unique())[::2])
        ax.grid(axis="x", alpha=0.3)
    # beside the last panel, never on it: the lines fill the top of every panel at low thresholds
    axes[-1].legend(fontsize=FONT - 2, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=FONT + 2)
    return fig


ERROR_COLOURS = {"cls": "#8c564b", "loc": "#e377c2", "both": "#bcbd22", "dupe": "#17becf", "bkg": "#7f7f7f",
                 "miss": "#393b79"}


def errors_figure(frame: pd.DataFrame,
                  title: str = "Where the AP goes, per frequency group (TIDE-style errors)") -> Figure:
    """Left: dAP (AP points gained by fixing each error type alone) per type, a bar per group in the group
    colours. Right: each group's AP gap split into the error types (share, %), with how many of the group's
    classification errors went to a more frequent group (``errors_frame``)."""
    rows = frame.set_index("group")
    groups = [*frame.attrs["groups"], "all"]
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    x = np.arange(len(ERROR_TYPES))
    width = 0.8 / len(groups)
    for k, g in enumerate(groups):
        vals = [np.nan if rows.loc[g, f"dAP {t}"] is None else rows.loc[g, f"dAP {t}"] for t in ERROR_TYPES]
        bars = left.bar(x + (k - (len(groups) - 1) / 2) * width, np.asarray(vals, float), width, label=g,
                        color="white" if g == "all" else group_colour(g), edgecolor="black", linewidth=0.6,
                        hatch="//" if g == "all" else "")
        for bar in bars:
            h = bar.get_height()
            if np.isfinite(h):
                left.annotate(f"{h:.1f}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom",
                              fontsize=FONT - 5, xytext=(0, 1), textcoords="offset points")
    left.set_xticks(x, [f"{t}\n{ERROR_NAMES[t]}" for t in ERROR_TYPES], fontsize=FONT - 2)
    _style(left, "dAP: AP50 gained by fixing each error type alone", "", "dAP (AP points)")
    left.legend(fontsize=FONT - 2, title="group", title_fontsize=FONT - 2)
    y = np.arange(len(groups))[::-1]
    for k, g in enumerate(groups):
        start = 0.0
        for t in ERROR_TYPES:
            share = rows.loc[g, f"share {t}"]
            if share is None or not np.isfinite(share) or share <= 0:
                continue
            right.barh(y[k] + 0.12, share, 0.5, left=start, color=ERROR_COLOURS[t], edgecolor="white", linewidth=0.6,
                       label=t if k == 0 or t not in right.get_legend_handles_labels()[1] else None)
            if share >= 6:
                right.text(start + share / 2, y[k] + 0.12, f"{share:.0f}", ha="center", va="center", fontsize=FONT - 3,
                           color="white")
            start += share
        ap, to_freq, n = rows.loc[g, "AP50"], rows.loc[g, "cls to more frequent"], rows.loc[g, "cls objects"]
        note = f"AP50 {ap:.1f}" if ap is not None and np.isfinite(ap) else "no ground truth"
        shares = [rows.loc[g, f"share {t}"] for t in ERROR_TYPES]
        if ap is not None and np.isfinite(ap) and not any(v is not None and np.isfinite(v) and v > 0 for v in shares):
            note += "; no single fix raises it"
        if to_freq is not None and np.isfinite(to_freq) and g != "all":
            note += f"; cls errors on its objects to a more frequent group: {to_freq:.0f}% of {int(n)}"
        elif to_freq is not None and np.isfinite(to_freq):
            note += f"; cls errors to a more frequent group: {to_freq:.0f}% of {int(n)}"
        right.text(0.5, y[k] - 0.3, note, fontsize=FONT - 3, va="center", color="#333333")
    right.set_yticks(y + 0.12, groups)
    for tick, g in zip(right.get_yticklabels(), groups):
        tick.set_color(group_colour(g) if g != "all" else "black")
        tick.set_fontweight("bold")
    right.set_xlim(0, 100)
    right.set_ylim(-0.55, len(groups) - 0.4)
    _style(right, "Share of each group's AP gap (%)", "share of the sum of dAPs (%)", "")
    right.grid(axis="x", alpha=0.3)
    right.grid(axis="y", visible=False)
    right.legend(fontsize=FONT - 2, ncols=6, loc="lower center", bbox_to_anchor=(0.5, 1.06), frameon=False,
                 handlelength=1.2, columnspacing=0.8)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig


def calibration_figure(bins: pd.DataFrame, ece: pd.DataFrame,
                       title: str = "Reliability per frequency group (precision at IoU 0.5 against score)") -> Figure:
    """A panel per mode: precision of the detections in each score bin against their mean score, a line per
    group in the group colours ('all' grey), the diagonal = perfect calibration; ECE (x100) in the legend; the
    marker area grows with the bin's number of detections."""
    modes = bins.attrs["modes"]
    groups = [*bins.attrs["groups"], "all"]
    cols = min(len(modes), 4)
    rows_n = (len(modes) + cols - 1) // cols
    fig = Figure(figsize=(3.9 * cols + 0.4, 4.1 * rows_n + 0.9), layout="constrained")
    axes = fig.subplots(rows_n, cols, squeeze=False)
    eces = ece.set_index("mode")
    most = max(1, int(bins["count"].max()))
    for i, mode in enumerate(modes):
        ax = axes[i // cols][i % cols]
        ax.plot([0, 1], [0, 1], color="#bbbbbb", ls="--", lw=1)
        for g in groups:
            part = bins[(bins["mode"] == mode) & (bins["group"] == g) & (bins["count"] > 0)]
            e = eces.loc[mode, g]
            label = f"{g} (ECE {e:.1f})" if e is not None and np.isfinite(e) else f"{g} (no detections)"
            colour = "#7f7f7f" if g == "all" else group_colour(g)
            x, y = part["score"].astype(float), part["precision"].astype(float)
            ax.plot(x, y, lw=1.2 if g == "all" else 1.8, color=colour, ls=":" if g == "all" else "-", label=label)
            # marker area grows with the bin's detections, so thin bins read as the noise they are
            ax.scatter(x, y, s=8 + 60 * np.sqrt(part["count"].to_numpy() / most), color=colour,
                       zorder=2.5 if g == "all" else 3, edgecolors="white", linewidths=0.4)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.04)
        ax.set_aspect("equal")
        _style(ax, mode, "mean score in bin", "precision at IoU 0.5" if i % cols == 0 else "")
        ax.legend(fontsize=FONT - 3, loc="upper left")
    for j in range(len(modes), rows_n * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig


def weights_figure(frame: pd.DataFrame,
                   title: str = "Which stage the dynamic ensemble trusts, per frequency group "
                                "(mean $w^k$, eq. 5)") -> Figure:
    """A panel per dynamic mode: a stacked bar per group (then 'all'), one segment per stage in the stage colours
    (stage 1 = lowest IoU threshold), height the mean stage weight over the detections the model kept."""
    modes = frame.attrs["modes"]
    k = frame.attrs["stages"]
    groups = [*frame.attrs["groups"], "all"]
    fig = Figure(figsize=(max(4.8, 1.1 * len(groups) + 1.8) * len(modes), 4.4), layout="constrained")
    axes = fig.subplots(1, len(modes), squeeze=False, sharey=True)[0]
    for ax, mode in zip(axes, modes):
        part = frame[frame["mode"] == mode].set_index("group")
        x = np.arange(len(groups))
        bottom = np.zeros(len(groups))
        for s in range(k):
            vals = np.array([np.nan if part.loc[g, f"stage {s + 1}"] is None else part.loc[g, f"stage {s + 1}"]
                             for g in groups], float)
            colour = STAGE_COLOURS[s % len(STAGE_COLOURS)]
            ax.bar(x, np.nan_to_num(vals), 0.65, bottom=bottom, color=colour, edgecolor="black", linewidth=0.5,
                   label=f"stage {s + 1}")
            for xi, (v, b0) in enumerate(zip(vals, bottom)):
                if np.isfinite(v) and v >= 0.07:
                    ax.text(xi, b0 + v / 2, f"{v:.2f}", ha="center", va="center", fontsize=FONT - 3,
                            color="white" if s >= 2 else "black")
            bottom += np.nan_to_num(vals)
        for xi, g in enumerate(groups):
            n = part.loc[g, "detections"]
            ax.text(xi, 1.01, f"n={int(n)}", ha="center", va="bottom", fontsize=FONT - 4, color="#555555")
            if not n:
                ax.text(xi, 0.5, "no\ndetections", ha="center", va="center", fontsize=FONT - 3, color="#555555")
        ax.set_xticks(x, groups)
        for tick, g in zip(ax.get_xticklabels(), groups):
            tick.set_color(group_colour(g) if g != "all" else "black")
            tick.set_fontweight("bold")
        ax.set_ylim(0, 1.08)
        _style(ax, mode, "frequency group", "mean stage weight $w^k$" if ax is axes[0] else "")
    axes[-1].legend(fontsize=FONT - 2, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="stage",
                    title_fontsize=FONT - 2)
    fig.suptitle(title, fontsize=FONT + 1)
    return fig


def figure_writers(fig: Figure, out: str) -> Dict[str, Callable]:
    """Writers of ``out`` (.png) and its vector twin (.svg beside it, or the .pdf/.svg asked for), for
    :func:`mec_cli.io.write_outputs`, so a figure's files are committed together with whatever goes with them."""
    out_path = Path(out)
    if output_target(out_path).in_place:  # /dev/null, a pipe, /dev/stdout: one file, as asked, and nothing beside it
        fmt = out_path.suffix[1:] if out_path.suffix in (".pdf", ".svg") else "png"
        return {str(out_path): lambda tmp: fig.savefig(tmp, format=fmt, dpi=150)}
    targets = [out_path] if out_path.suffix in (".pdf", ".svg") else [out_path.with_suffix(".png"),
                                                                      out_path.with_suffix(".svg")]
    return {str(t): (lambda tmp, fmt=t.suffix[1:]: fig.savefig(tmp, format=fmt, dpi=150)) for t in targets}


def figure_paths(out) -> list:
    """The files a figure at ``out`` is written to (:func:`figure_writers`), for checking them before any work."""
    out_path = Path(out)
    if output_target(out_path).in_place or out_path.suffix in (".pdf", ".svg"):
        return [out_path]
    return [out_path.with_suffix(".png"), out_path.with_suffix(".svg")]


def save_figure(fig: Figure, out: str) -> List[str]:
    """Write ``out`` (.png) and its vector twin together, atomically."""
    return [str(p) for p in write_outputs(figure_writers(fig, out))]


def confusion_figure(matrix: pd.DataFrame, pairs: pd.DataFrame,
                     title: str = "Which class the detector gives each object, per frequency group") -> Figure:
    """Left: each group's objects (rows, then 'all') by the label the detector gives them: their own category, a
    category of each group, or none, as % of the row (cell text: % and count). Right: the most frequent category
    confusions (object -> label), bars coloured by the object's group (``confusion_frames``)."""
    groups = matrix.attrs["groups"]
    cols = ["correct", *(f"as {g}" for g in groups), "none"]
    fig = Figure(figsize=(14, max(4.2, 0.75 * len(matrix) + 2.2, 0.32 * len(pairs) + 1.8)), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.1]})
    share = np.array([[np.nan if r[f"{c} %"] is None else r[f"{c} %"] for c in cols]
                      for r in matrix.to_dict("records")], float)
    left.imshow(np.nan_to_num(share), cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for i, r in enumerate(matrix.to_dict("records")):
        for j, c in enumerate(cols):
            v = share[i, j]
            text = "-" if np.isnan(v) else f"{v:.0f}%\n({int(r[c])})"
            left.text(j, i, text, ha="center", va="center", fontsize=FONT - 3,
                      color="white" if np.isfinite(v) and v > 60 else "black")
    left.set_xticks(range(len(cols)), ["own class", *(f"a {g}\nclass" for g in groups), "no label"],
                    fontsize=FONT - 2)
    for tick, c in zip(left.get_xticklabels(), cols):
        if c.startswith("as "):
            tick.set_color(group_colour(c[3:]))
            tick.set_fontweight("bold")
    rows = matrix["group"].tolist()
    left.set_yticks(range(len(rows)), [f"{g}\n{int(n):,} objects" for g, n in zip(rows, matrix["objects"])],
                    fontsize=FONT - 2)
    for tick, g in zip(left.get_yticklabels(), rows):
        tick.set_color(group_colour(g) if g != "all" else "black")
        tick.set_fontweight("bold")
    left.set_title("Objects of each group by the label they get (% of the row)", fontsize=FONT + 1)
    left.set_xlabel("label: the highest-scoring detection on the object (IoU >= 0.5)", fontsize=FONT - 1)
    if len(pairs):
        y = np.arange(len(pairs))[::-1]
        colours = [group_colour(g) if g else "#7f7f7f" for g in pairs["object group"]]
        right.barh(y, pairs["objects"], color=colours, edgecolor="black", linewidth=0.5)
        labels = [f"{o} -> {lab}" + (f"  ({og} -> {lg})" if og and lg else "")
                  for o, lab, og, lg in zip(pairs["object"], pairs["label"], pairs["object group"],
                                            pairs["label group"])]
        right.set_yticks(y, labels, fontsize=FONT - 3)
        for yi, n, s in zip(y, pairs["objects"], pairs["of its objects %"]):
            right.annotate(f"{int(n)} ({s:.0f}%)", (n, yi), xytext=(3, 0), textcoords="offset points", va="center",
                           fontsize=FONT - 4)
        right.set_xlim(0, pairs["objects"].max() * 1.25)
    else:
        right.text(0.5, 0.5, "no object was labelled with another category", ha="center", va="center",
                   transform=right.transAxes, fontsize=FONT)
        right.set_yticks([])
    _style(right, "Most frequent confusions: object -> label (objects, % of the object's category)", "objects", "")
    right.grid(axis="x", alpha=0.3)
    right.grid(axis="y", visible=False)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig


LRP_TITLES = {"oLRP": "oLRP", "loc": "localisation error", "fp": "false-positive error", "fn": "false-negative error"}


def lrp_figure(frame: pd.DataFrame, title: str = "Optimal LRP per frequency group (lower is better)") -> Figure:
    """One panel per quantity (oLRP, then its localisation, FP and FN components, x100): x = the groups (then
    'all'), a bar per series (run/mode) in the group colours, series told apart by hatching (``lrp_frame``)."""
    groups = [*frame.attrs["groups"], "all"]
    series = frame.attrs["series"]
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axes = fig.subplots(1, 4, sharey=True)
    hatches = ["", "//", "..", "xx", "\\\\", "--"]
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for ax, comp in zip(axes, ("oLRP", "loc", "fp", "fn")):
        for k, s in enumerate(series):
            part = frame[frame["series"] == s].set_index("group")
            vals = np.array([np.nan if g not in part.index or part.loc[g, comp] is None else part.loc[g, comp]
                             for g in groups], float)
            bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width,
                          color=["white" if g == "all" else group_colour(g) for g in groups], edgecolor="black",
                          linewidth=0.5, hatch=hatches[k % len(hatches)], label=s)
            _label_bars(ax, bars)
        ax.set_xticks(x, groups)
        for tick, g in zip(ax.get_xticklabels(), groups):
            tick.set_color(group_colour(g) if g != "all" else "black")
            tick.set_fontweight("bold")
        ax.set_ylim(0, 105)
        _style(ax, LRP_TITLES[comp], "", "error (x100, lower is better)" if ax is axes[0] else "")
    if len(series) > 1:
        axes[-1].legend(fontsize=FONT - 2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title, fontsize=FONT + 2)
    return fig


def intervals_figure(frame: pd.DataFrame, title: str = "Gain over the baseline, with bootstrap intervals") -> Figure:
    """A panel per pair of runs: each AP column's difference (AP points) with its paired bootstrap interval, box AP
    above mask AP, groups in their colours and 'all' in black; the dashed line is no difference
    (:func:`mec_cli.reporting.significance.compare_intervals`)."""
    pairs = list(dict.fromkeys(frame["pair"]))
    height = max(3.2, 0.42 * frame.groupby("pair").size().max() + 1.6)
    fig = Figure(figsize=(6.8 * len(pairs), height), layout="constrained")
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    pct = f"{100 * frame.attrs.get('confidence', 0.95):g}%"
    for ax, pair in zip(axes, pairs):
        part = frame[frame["pair"] == pair].reset_index(drop=True)
        y = np.arange(len(part))[::-1]
        for yi, r in zip(y, part.to_dict("records")):
            colour = "black" if r["group"] == "all" else group_colour(r["group"])
            if pd.notna(r["low"]) and pd.notna(r["high"]):
                ax.plot([r["low"], r["high"]], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
            if pd.notna(r["delta"]):
                ax.plot([r["delta"]], [yi], "o", color=colour, ms=7, markeredgecolor="black", markeredgewidth=0.6)
        ax.axvline(0, color="#555555", ls="--", lw=1)
        ax.set_yticks(y, [f"{c} ({'box' if t == 'bbox' else 'mask'})" for c, t in zip(part["column"],
                                                                                     part["iou type"])],
                      fontsize=FONT - 2)
        for tick, g in zip(ax.get_yticklabels(), part["group"]):
            tick.set_color("black" if g == "all" else group_colour(g))
        _style(ax, pair, f"difference in AP points (dot) and its {pct} interval", "")
        ax.grid(axis="x", alpha=0.3)
        ax.grid(axis="y", visible=False)
    fig.suptitle(title, fontsize=FONT + 2)
    return fig
