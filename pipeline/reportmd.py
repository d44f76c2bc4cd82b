"""Markdown tables rendered as tables in the Snakemake report.

The tables stage writes GitHub markdown (``results/tables/<dataset>.md``), which reads well on
GitHub, but the report's description (``report/workflow.rst``) is reStructuredText, and docutils
has no markdown parser of its own: ``.. include:: ... :literal:`` showed the table as a code block.
``register()`` (called by the Snakefile, so ``snakemake --report`` has it) adds the directive

    .. markdown-tables:: results/tables/digits-ci.md

which reads the file when the report is built and turns its pipe tables into docutils tables, its
``#`` headings into rubrics and its other paragraphs into paragraphs. It only presents a file the
tables stage wrote: no stage imports this module and it changes no result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DIRECTIVE = "markdown-tables"

_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*$")


@dataclass(frozen=True)
class Block:
    """One block of a markdown file: a heading, a paragraph or a table (header row, then body rows)."""

    kind: str  # "heading", "paragraph" or "table"
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()
    align: tuple[str, ...] = ()  # per column: "left", "right" or "center"


def split_row(line: str) -> tuple[str, ...]:
    """The cells of one pipe-table row; ``\\|`` is a literal pipe inside a cell."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = re.split(r"(?<!\\)\|", line)
    return tuple(c.strip().replace("\\|", "|") for c in cells)


def _alignment(separator: str) -> tuple[str, ...]:
    out = []
    for cell in split_row(separator):
        left, right = cell.startswith(":"), cell.endswith(":")
        out.append("center" if left and right else "right" if right else "left")
    return tuple(out)


def parse(text: str) -> list[Block]:
    """The blocks of a markdown file as the tables stage writes it (headings, pipe tables, paragraphs).

    A table is a block of lines starting with '|' whose second line is a separator (|---|---:|);
    anything else that is not a heading is a paragraph, its lines joined by spaces.
    """
    blocks: list[Block] = []
    for chunk in re.split(r"\n\s*\n", text.strip("\n")):
        lines = [ln.rstrip() for ln in chunk.splitlines() if ln.strip()]
        if not lines:
            continue
        heading = _HEADING.match(lines[0])
        if heading and len(lines) == 1:
            blocks.append(Block("heading", heading.group(2)))
        elif (len(lines) >= 2 and all(ln.lstrip().startswith("|") for ln in lines)
              and _SEPARATOR.match(lines[1].strip())):
            header = split_row(lines[0])
            body = [split_row(ln) for ln in lines[2:]]
            width = len(header)
            # A short row is padded, a long one cut: the header decides the columns, as on GitHub.
            rows = tuple(tuple((list(r) + [""] * width)[:width]) for r in [header, *body])
            blocks.append(Block("table", rows=rows, align=(_alignment(lines[1]) + ("left",) * width)[:width]))
        else:
            blocks.append(Block("paragraph", " ".join(ln.strip() for ln in lines)))
    return blocks


def to_rst_inline(text: str) -> str:
    """Markdown inline text as reStructuredText inline text: code spans become ``literals``; bold and
    italics are written alike; characters rst would read as markup elsewhere are escaped."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"``{part[1:-1]}``")
        else:
            # A trailing '_' makes a reference and '|' a substitution in rst; '\' escapes in both.
            part = part.replace("\\", "\\\\").replace("|", "\\|")
            part = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", part)
            out.append(part)
    return "".join(out)


def register() -> None:
    """Register the ``markdown-tables`` directive with docutils (idempotent)."""
    from docutils import nodes
    from docutils.parsers.rst import Directive, directives

    class MarkdownTables(Directive):
        """``.. markdown-tables:: PATH``: PATH (relative to the working directory, as ``include``)
        rendered: tables as tables, headings as rubrics, other text as paragraphs."""

        required_arguments = 1
        has_content = False

        def inline(self, text: str) -> list:
            parsed, messages = self.state.inline_text(to_rst_inline(text), self.lineno)
            return [*parsed, *messages]

        def run(self) -> list:
            path = Path(directives.path(self.arguments[0]))
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as err:
                raise self.severe(f"{DIRECTIVE}: cannot read {path} ({err}); run the tables stage "
                                  "first (snakemake --cores all digits)")
            out: list = []
            for block in parse(text):
                if block.kind == "heading":
                    out.append(nodes.rubric(block.text, "", *self.inline(block.text)))
                elif block.kind == "paragraph":
                    out.append(nodes.paragraph(block.text, "", *self.inline(block.text)))
                else:
                    out.append(self.table(block))
            return out

        def table(self, block: Block):
            width = len(block.rows[0])
            # colwidths-auto: the browser sizes the columns (docutils would make them equal).
            table = nodes.table(classes=["markdown-table", "colwidths-auto"])
            group = nodes.tgroup(cols=width)
            table += group
            for _ in range(width):
                group += nodes.colspec(colwidth=1)
            for section, rows in ((nodes.thead(), block.rows[:1]), (nodes.tbody(), block.rows[1:])):
                for cells in rows:
                    row = nodes.row()
                    for cell, align in zip(cells, block.align):
                        entry = nodes.entry(classes=[f"align-{align}"])
                        if cell:
                            entry += nodes.paragraph(cell, "", *self.inline(cell))
                        row += entry
                    section += row
                group += section
            return table

    directives.register_directive(DIRECTIVE, MarkdownTables)
