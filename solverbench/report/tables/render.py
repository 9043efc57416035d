"""Render a ``Table`` as Markdown, LaTeX (booktabs), CSV or an HTML fragment."""
from __future__ import annotations

import html
import re

import pandas as pd

from solverbench.report.tables.model import Table

LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "↓": r"$\downarrow$", "↑": r"$\uparrow$", "–": "--", "—": "---", "−": "$-$", "≤": r"$\leq$"}
SCIENTIFIC = re.compile(r"^(-?\d+(?:\.\d+)?)e([+-])0*(\d+)$")


def to_markdown(table: Table) -> str:
    def cell(text: str, bold: bool) -> str:
        text = text.replace("|", r"\|")
        return f"**{text}**" if bold and text else text

    lines = [f"*{table.caption}*", "", "| " + " | ".join(table.columns) + " |",
             "|" + "|".join(":--" if i in table.text_columns else "--:" for i in range(len(table.columns))) + "|"]
    lines += ["| " + " | ".join(cell(c.text, c.bold) for c in row.cells) + " |" for row in table.rows]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def latex_text(text: str) -> str:
    match = SCIENTIFIC.match(text)
    if match:
        mantissa, sign, exponent = match.groups()
        return f"${mantissa}\\times10^{{{'-' if sign == '-' else ''}{exponent}}}$"
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    def cell(text: str, bold: bool) -> str:
        text = latex_text(text)
        return f"\\textbf{{{text}}}" if bold and text else text

    spec = "".join("l" if i in table.text_columns else "r" for i in range(len(table.columns)))
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_text(table.caption)}}}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_text(c) for c in table.columns) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        if row.rule_above and i:
            lines.append(r"\midrule")
        lines.append(" & ".join(cell(c.text, c.bold) for c in row.cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines += [r"\par\smallskip\footnotesize", r" \\ ".join(latex_text(n) for n in table.notes)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    return pd.DataFrame([row.record for row in table.rows]).convert_dtypes().to_csv(index=False)


def to_html(table: Table) -> str:
    def cell(text: str, bold: bool) -> str:
        text = html.escape(text)
        return f"<b>{text}</b>" if bold and text else text

    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cls = ' class="block"' if row.rule_above else ""
        cells = "".join(f'<td class="{"text" if i in table.text_columns else "num"}">{cell(c.text, c.bold)}</td>'
                        for i, c in enumerate(row.cells))
        body.append(f"<tr{cls}>{cells}</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return (f"<table><caption>{html.escape(table.caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>" + (f"<ul class=\"notes\">{notes}</ul>" if notes else ""))

