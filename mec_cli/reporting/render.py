"""Rendering report tables as text files: Markdown, LaTeX (booktabs) and CSV (the terminal table is the CLI's)."""
from __future__ import annotations

import math

from mec_cli.reporting.tables import ReportTable

FORMATS = ("md", "latex", "csv")


def format_cell(v) -> str:
    """A table cell as text: one decimal for numbers, '-' for a missing value."""
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
        cells = [f"**{format_cell(v)}**" if i in best.get(c, []) else format_cell(v) for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"_{n}_" for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def _tex(s: str) -> str:
    s = s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("#",
                                                                                                                 "\\#")
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
            text = _tex(format_cell(v))
            cells.append(f"\\textbf{{{text}}}" if i in best.get(c, []) else text)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"] + [f"% {n}" for n in t.notes] + ["\\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(t: ReportTable) -> str:
    return t.df.to_csv(index=False)


def render(t: ReportTable, fmt: str) -> str:
    return {"md": to_markdown, "latex": to_latex, "csv": to_csv}[fmt](t)
