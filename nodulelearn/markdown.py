"""The subset of Markdown that summary.md files use, to HTML; and how their writers escape names.

Headings, paragraphs, ``-`` / ``*`` lists, pipe tables, fenced code, inline code and ``**bold**``,
with CommonMark backslash escapes. ``markdown_text`` escapes a name (a loss id such as ``a|b``)
so that it stays one table cell; ``markdown_to_html`` (html_report.py) reads it back. Only the
standard library is used.
"""

from __future__ import annotations

import html
import re
from typing import Any


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


# Characters that would end a table cell, open a code span, bold or an HTML tag in a name.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*|<])")
_INLINE = re.compile(r"\\([!-/:-@\[-`{-~])|`([^`]+)`|\*\*((?:\\.|[^*])+)\*\*")


def markdown_text(value: Any) -> str:
    """``value`` as literal Markdown text: a loss id such as ``a|b`` or ``x*y*`` stays one table
    cell and shows as written (CommonMark backslash escapes, which ``markdown_to_html`` reads)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).splitlines()))


def markdown_code(value: Any) -> str:
    """``value`` as a code span, or as escaped text if it holds a backtick (outside tables)."""
    text = " ".join(str(value).splitlines())
    return f"`{text}`" if "`" not in text else markdown_text(text)


def _inline(text: str) -> str:
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(_esc(text[last:match.start()]))
        escaped, code, bold = match.groups()
        if escaped is not None:
            out.append(_esc(escaped))
        elif code is not None:
            out.append(f"<code>{_esc(code)}</code>")
        else:
            out.append(f"<b>{_inline(bold)}</b>")
        last = match.end()
    out.append(_esc(text[last:]))
    return "".join(out)


def _split_row(line: str) -> list[str]:
    """The cells of a pipe-table row; an escaped ``\\|`` stays inside its cell."""
    cells, cell, chars = [], "", iter(line.strip())
    for char in chars:
        if char == "\\":
            cell += char + next(chars, "")
        elif char == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += char
    cells.append(cell)
    if cells and not cells[0].strip():  # the leading and trailing pipes of the row
        cells = cells[1:]
    if cells and not cells[-1].strip():
        cells = cells[:-1]
    return [c.strip() for c in cells]


def markdown_to_html(text: str) -> str:
    """HTML for Markdown headings, paragraphs, ``-`` / ``*`` lists, pipe tables and code blocks."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre><code>" + _esc("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif heading := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            level = min(len(heading.group(1)) + 2, 6)  # below the report's h1 / section h2
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
        elif stripped.startswith("|") and i + 1 < len(lines) and \
                re.match(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$", lines[i + 1].strip()):
            header = _split_row(stripped)
            j, body = i + 2, []
            while j < len(lines) and lines[j].strip().startswith("|"):
                body.append(_split_row(lines[j]))
                j += 1
            head = "".join(f"<th>{_inline(c)}</th>" for c in header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for row in body)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            i = j
        elif re.match(r"^[-*]\s+", stripped):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip() and \
                        not re.match(r"^\s*[-*]\s+", lines[i]):
                    item += " " + lines[i].strip()
                    i += 1
                items.append(f"<li>{_inline(item)}</li>")
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines, i):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return "\n".join(out)


def _starts_block(lines: list[str], i: int) -> bool:
    s = lines[i].strip()
    return bool(s.startswith(("```", "|", "#")) or re.match(r"^[-*]\s+", s))
