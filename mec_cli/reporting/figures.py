"""The paper's figures as matplotlib Figure objects (no pyplot state). Group colours are the same everywhere."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

GROUP_COLOURS = {"rare": "#d62728", "common": "#ff7f0e", "frequent": "#1f77b4",
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


def compare_groups_figure(values: Dict[str, Dict[str, Optional[float]]], title: str = "Baseline vs MEC by group (Figure 1b)",
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
        bars = ax.bar(x + (k - (len(runs) - 1) / 2) * width, vals, width, label=run, color=[group_colour(g) for g in groups],
                      alpha=0.55 if k == 0 else 0.95, hatch=hatches[k % len(hatches)], edgecolor="black", linewidth=0.5)
        _label_bars(ax, bars)
    ax.set_xticks(x, groups)
    _style(ax, title, xlabel, f"{metric} (%)")
    ax.legend(fontsize=FONT - 1)
    return fig


def lambda_figure(frame: pd.DataFrame, title: str = "AP against lambda (Figure 4)") -> Figure:
    """Two panels (box, mask): AP and the group APs (``frame.attrs['groups']``) against the multi-expert loss's lambda."""
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


def distribution_figure(curves: Dict[str, Sequence[int]], bins: Sequence[int] = (10, 100),
                        title: str = "Instances per category, sorted (Figure 5 style)") -> Figure:
    """Sorted instance-count curves on a log axis, with the group edges as bands."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    palette = ["#2ca02c", "black", "#d62728", "#9467bd", "#8c564b", "#1f77b4"]
    top = max((max(c) for c in curves.values() if len(c)), default=10)
    edges = [0.8, *bins, top * 2]
    names = ["rare", "common", "frequent"] if len(bins) == 2 else [f"g{i}" for i in range(len(bins) + 1)]
    for lo, hi, name in zip(edges[:-1], edges[1:], names):
        ax.axhspan(lo, hi, color=group_colour(name), alpha=0.07, lw=0)
        ax.text(1.0, (lo * hi) ** 0.5 if lo > 0 else hi / 2, f" {name}", color=group_colour(name), transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=FONT - 1)
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


def figure_writers(fig: Figure, out: str) -> Dict[str, Callable]:
    """Writers of ``out`` (.png) and its vector twin (.svg beside it, or the .pdf/.svg asked for), for
    :func:`mec_cli.io.write_outputs`, so a figure's files are committed together with whatever goes with them."""
    from pathlib import Path

    out_path = Path(out)
    targets = [out_path] if out_path.suffix in (".pdf", ".svg") else [out_path.with_suffix(".png"), out_path.with_suffix(".svg")]
    return {str(t): (lambda tmp, fmt=t.suffix[1:]: fig.savefig(tmp, format=fmt, dpi=150)) for t in targets}


def save_figure(fig: Figure, out: str) -> List[str]:
    """Write ``out`` (.png) and its vector twin together, atomically."""
    from mec_cli.io import write_outputs

    return [str(p) for p in write_outputs(figure_writers(fig, out))]
