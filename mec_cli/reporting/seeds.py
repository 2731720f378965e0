"""Report tables over seeds: a table made once per seed, then each cell as the mean and standard deviation over the
seeds that stand behind it, with the count in every row.

A row is the same row in every seed's table when its label cells (every column that is not a value column: model,
run, mode, marks) are the same, so a row missing from some seed's table (that seed's run not evaluated yet) is
averaged over the seeds that have it, and says so. Differences (the Δ rows of a comparison) are averaged as
differences, seed by seed, so their spread is that of the paired gains. The standard deviation is the sample one
(n - 1); over one seed there is none, and the cell shows the value alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mec_cli.reporting.figures import FONT, _style, group_colour
from mec_cli.reporting.tables import ReportTable

SEEDS = "seeds"
STD_NOTE = ("each value: mean ± standard deviation (sample, n-1) over the seeds of its row (column `seeds`); a cell "
            "over fewer seeds says n; one seed has no spread")


@dataclass
class SeedTable(ReportTable):
    """A :class:`ReportTable` whose value cells read "mean ± sd"; ``means`` holds the means (for the best values),
    ``machine`` the means, standard deviations and counts as numbers (the CSV)."""

    means: pd.DataFrame = field(default_factory=pd.DataFrame)
    machine: pd.DataFrame = field(default_factory=pd.DataFrame)

    def best_rows(self) -> Dict[str, List[int]]:
        return ReportTable(self.title, self.means, self.value_cols, self.highlight_best).best_rows()


def _cell(mean: float, sd: float, n: int, row_n: int, plain: bool) -> Optional[str]:
    if n == 0 or mean is None or math.isnan(mean):
        return None
    text = f"{mean:.1f}" if plain or n < 2 else f"{mean:.1f} ± {sd:.1f}"
    return text + (f" (n={n})" if n < row_n and not plain else "")


def aggregate(tables: Dict[int, ReportTable], title: Optional[str] = None) -> SeedTable:
    """One table from the same table made for each seed (``{seed: table}``), as the module docstring says."""
    if not tables:
        raise ValueError("no table to aggregate")
    first = next(iter(tables.values()))
    value_cols = list(first.value_cols)
    frames = []
    for seed, t in tables.items():
        df = t.df.copy()
        df["_seed"] = seed
        frames.append(df)
    data = pd.concat(frames, ignore_index=True)
    label_cols = [c for c in first.df.columns if c not in value_cols]
    for c in value_cols:
        data[c] = pd.to_numeric(data[c], errors="coerce")
    keys = data[label_cols].astype(str).agg("\x1f".join, axis=1) if label_cols else pd.Series(["all"] * len(data))
    display, means, machine = [], [], []
    for key in dict.fromkeys(keys):
        part = data[keys == key]
        row_n = int(part["_seed"].nunique())
        labels = {c: part.iloc[0][c] for c in label_cols}
        shown, mean_row, num_row = dict(labels), dict(labels), dict(labels)
        shown[SEEDS], num_row[SEEDS] = str(row_n), row_n  # text, so that added rows keep it an integer
        for c in value_cols:
            values = part[c].dropna()
            n = int(len(values))
            mean = float(values.mean()) if n else float("nan")
            sd = float(values.std(ddof=1)) if n > 1 else float("nan")
            shown[c] = _cell(mean, sd, n, row_n, plain=c.startswith("paper"))
            mean_row[c] = None if not n else round(mean, 1)
            num_row.update({c: None if not n else round(mean, 3), f"{c} sd": None if n < 2 else round(sd, 3),
                            f"{c} n": n})
        display.append(shown)
        means.append(mean_row)
        machine.append(num_row)
    order = label_cols + [SEEDS] + value_cols
    seeds = sorted(tables)
    notes = list(first.notes) + [STD_NOTE + f"; seeds {', '.join(map(str, seeds))}"]
    return SeedTable(title or first.title, pd.DataFrame(display, columns=order), value_cols, first.highlight_best,
                     notes, means=pd.DataFrame(means, columns=order), machine=pd.DataFrame(machine))


def mean_frame(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Cell-wise mean of frames of the same shape (index and columns), with the first one's attrs."""
    stacked = pd.concat([f.astype(float) for f in frames], keys=range(len(frames)))
    out = stacked.groupby(level=1, sort=False).mean().reindex(frames[0].index)[list(frames[0].columns)]
    out.attrs.update(frames[0].attrs)
    return out


def std_frame(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    stacked = pd.concat([f.astype(float) for f in frames], keys=range(len(frames)))
    out = stacked.groupby(level=1, sort=False).std(ddof=1).reindex(frames[0].index)[list(frames[0].columns)]
    out.attrs.update(frames[0].attrs)
    return out


def lambda_seeds_figure(machine: pd.DataFrame, groups, seeds: int,
                        title: str = "AP against lambda (Figure 4)") -> Figure:
    """Figure 4 over seeds: two panels (box, mask), the mean AP and group APs against lambda with error bars of one
    standard deviation. ``machine`` is :func:`aggregate`'s numeric frame of a lambda table (a row per lambda);
    ``groups`` the (box column, mask column, group) triples of :func:`mec_cli.reporting.tables.lambda_frame`."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    frame = machine.sort_values("lambda")
    for i, (kind, total) in enumerate((("box", "AP"), ("mask", "mAP^m"))):
        ax = fig.add_subplot(1, 2, i + 1)
        series = [(total, "black", "all")] + [(cols[i], group_colour(name), name) for *cols, name in groups]
        for col, colour, name in series:
            sd = frame.get(f"{col} sd")
            err = None if sd is None else np.nan_to_num(sd.astype(float).to_numpy())
            ax.errorbar(frame["lambda"].astype(float), frame[col].astype(float), yerr=err, marker="o", color=colour,
                        capsize=3, label=f"{col} ({name})")
        _style(ax, f"{kind} AP", "lambda", "AP (%)")
        ax.legend(fontsize=FONT - 2)
    fig.suptitle(title + (f", mean ± sd over {seeds} seeds" if seeds > 1 else ""), fontsize=FONT + 2)
    return fig
