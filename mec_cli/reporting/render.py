"""Rendering report tables: Rich on the terminal, Markdown, LaTeX (booktabs) and CSV."""
from __future__ import annotations

import math
from typing import List

from mec_cli.reporting.tables import ReportTable

FORMATS = ("md", "latex", "csv")


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def to_markdown(t: ReportTable) -> str:
    best = t.best_rows()
    cols = list(t.df.columns)
    lines = [f"**{t.title}**", "", "| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if c in t.value_cols else ":---" for c in cols) + "|"]
    for i, row in enumerate(t.df.itertuples(index=False)):
        cells = [f"**{_cell(v)}**" if i in best.get(c, []) else _cell(v) for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"_{n}_" for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def _tex(s: str) -> str:
    s = s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("#", "\\#")
    s = s.replace("✓", "\\checkmark").replace("✗", "$\\times$").replace("Δ", "$\\Delta$")
    if "^" in s:  # AP^m_r -> AP$^{m}_{r}$
        head, _, tail = s.partition("^")
        sup, _, sub = tail.partition("\\_")
        s = f"{head}$^{{{sup}}}" + (f"_{{{sub}}}$" if sub else "$")
    return s


def to_latex(t: ReportTable) -> str:
    best = t.best_rows()
    cols = list(t.df.columns)
    spec = "".join("r" if c in t.value_cols else "l" for c in cols)
    lines = ["% requires \\usepackage{booktabs} and \\usepackage{amssymb}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{_tex(t.title)}}}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(_tex(c) for c in cols) + " \\\\", "\\midrule"]
    for i, row in enumerate(t.df.itertuples(index=False)):
        cells = []
        for c, v in zip(cols, row):
            text = _tex(_cell(v))
            cells.append(f"\\textbf{{{text}}}" if i in best.get(c, []) else text)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"] + [f"% {n}" for n in t.notes] + ["\\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(t: ReportTable) -> str:
    return t.df.to_csv(index=False)


def render(t: ReportTable, fmt: str) -> str:
    return {"md": to_markdown, "latex": to_latex, "csv": to_csv}[fmt](t)


def to_rich(t: ReportTable):
    from rich import box
    from rich.table import Table

    best = t.best_rows()
    table = Table(title=t.title, caption="\n".join(t.notes) or None, box=box.SIMPLE_HEAVY, show_edge=False,
                  collapse_padding=True)
    cols: List[str] = list(t.df.columns)
    for c in cols:  # numbers and run names are never wrapped; a narrow terminal wraps the other text
        table.add_column(c, justify="right" if c in t.value_cols else "left", no_wrap=c in t.value_cols or c in ("mode", "run"))
    for i, row in enumerate(t.df.itertuples(index=False)):
        table.add_row(*(f"[bold green]{_cell(v)}[/]" if i in best.get(c, []) else _cell(v) for c, v in zip(cols, row)))
    return table
