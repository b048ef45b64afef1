"""Document: a report built block by block, written out as Markdown and as HTML."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
         "th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}code{background:#f3f3f3}")


@dataclass
class Document:
    """Headings, paragraphs, tables and images, in order; the same blocks make both documents."""

    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", headers, [[str(c) for c in r] for r in rows]))

    def img(self, rel: str, caption: str) -> None:
        """A PNG at `rel`, relative to the folder the documents are written to."""
        self.blocks.append(("img", rel, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append(_markdown_table(b[1], b[2]))
            else:
                out.append(f"![{b[2]}]({b[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str, folder: str | Path) -> str:
        """The page with every image inside it (a data: URI read from `folder`/rel): it shows its
        figures wherever it is opened, MLflow's artifact view included, where relative links break."""
        e = html.escape
        out = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{e(title)}</title>",
               f"<style>{STYLE}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{_inline_html(b[1])}</p>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
                           + "</table>")
            else:
                src = "data:image/png;base64," + base64.b64encode((Path(folder) / b[1]).read_bytes()).decode("ascii")
                out.append(f"<figure><img src='{src}' alt='{e(b[2])}'><figcaption>{e(b[2])}</figcaption></figure>")
        return "\n".join(out) + "\n</body></html>\n"


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:  # a | or a line break inside a cell would end it
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def _inline_html(text: str) -> str:
    """Escape, then `code` spans and **bold** as the Markdown shows them."""
    parts = html.escape(text).split("`")
    s = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    bold = s.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(bold))
