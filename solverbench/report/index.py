"""reports/index.md and the static reports/index.html: every table and figure, one line on each.

A table is introduced by its item's line (what it shows, and links to its files) alone:
the caption the table carries in its own files is left out here, where the section
heading already names the setting.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from solverbench.report.items import Item, Section
from solverbench.report.tables.render import to_html, to_markdown

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption,p.what{color:#444;font-style:italic}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
caption{text-align:left;font-style:italic;padding-bottom:.4em}
th,td{padding:.2em .7em}thead th{border-bottom:2px solid #333}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.block td{border-top:1px solid #999}
ul.notes{font-size:.85em;color:#555;margin-top:0}"""
CAPTION = re.compile(r"<caption>.*?</caption>", re.S)


def _links_md(item: Item) -> str:
    return " · ".join(f"[{p.suffix[1:]}]({p.as_posix()})" for p in item.files)


def _by_stem(item: Item) -> dict[str, list[Path]]:
    """An item's files by table: ``trajectory_error_nfe5`` -> its .md, .tex and .csv."""
    stems: dict[str, list[Path]] = {}
    for path in item.files:
        stems.setdefault(path.stem, []).append(path)
    return stems


def index_markdown(sections: list[Section], header: str) -> str:
    lines = ["# solverbench report", "", header, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for item in section.items:
            if item.figure is not None:
                lines += [f"![{item.description}]({item.figure.as_posix()})", "", f"*{item.description}*", ""]
            elif item.table is not None:
                lines += [f"**{item.description}** ({_links_md(item)})", "", _table_markdown(item), ""]
            elif item.files:
                lines += [f"**{item.description}**", ""] + [
                    f"- {stem}: " + " · ".join(f"[{p.suffix[1:]}]({p.as_posix()})" for p in paths)
                    for stem, paths in _by_stem(item).items()] + [""]
            else:
                lines += [f"*{item.description}*", ""]
    return "\n".join(lines)


def index_html(sections: list[Section], header: str) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>solverbench report</title>"
             f"<style>{CSS}</style></head><body><h1>solverbench report</h1><p>{html.escape(header)}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for item in section.items:
            what = html.escape(item.description)
            if item.figure is not None:
                parts.append(f'<figure><img src="{html.escape(item.figure.as_posix())}" alt="{what}">'
                             f"<figcaption>{what}</figcaption></figure>")
            elif item.table is not None:
                parts.append(_table_html(item))
            elif item.files:
                links = "".join(f"<li>{html.escape(stem)}: " + " · ".join(
                    f'<a href="{html.escape(p.as_posix())}">{p.suffix[1:]}</a>' for p in paths) + "</li>"
                    for stem, paths in _by_stem(item).items())
                parts.append(f'<p class="what">{what}</p><ul>{links}</ul>')
            else:
                parts.append(f'<p class="what">{what}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table_markdown(item: Item) -> str:
    """The table without its own caption line (the item's line above it says what it is)."""
    text = to_markdown(item.table)
    own = f"*{item.table.caption}*\n"
    return text[len(own):].lstrip("\n") if text.startswith(own) else text


def _table_html(item: Item) -> str:
    """The table with the item's line (and its files' links) as its one caption."""
    links = " · ".join(f'<a href="{html.escape(p.as_posix())}">{p.suffix[1:]}</a>' for p in item.files)
    caption = f"<caption>{html.escape(item.description)}" + (f" ({links})" if links else "") + "</caption>"
    table, found = CAPTION.subn(lambda _: caption, to_html(item.table), count=1)
    return table if found else table.replace("<table>", "<table>" + caption, 1)


def write_index(out_dir: Path, sections: list[Section], header: str) -> Path:
    (out_dir / "index.html").write_text(index_html(sections, header))
    path = out_dir / "index.md"
    path.write_text(index_markdown(sections, header))
    return path
