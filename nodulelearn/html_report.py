"""One self-contained ``report.html``: headings, text, tables and figures, nothing outside the file.

``write_report(path, title, sections)`` writes the page; every figure is embedded as a base64 PNG
``data:`` URI, so the file can be mailed or archived alone. ``study_report(out_dir)`` and
``probe_report(out_dir)`` build it from the files a study (``bin/run_study``) or a probe
(``bin/probe_features``) wrote into ``out_dir``. Only the standard library is used (``html``
escaping, ``csv``, ``base64``); the page is written atomically (``atomic_files``).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nodulelearn.atomic_files import write_text_atomic
from nodulelearn.markdown import markdown_to_html

REPORT_NAME = "report.html"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class Text:
    """A block of Markdown (headings, paragraphs, ``-`` lists, pipe tables, code, ``**bold**``)."""

    markdown: str


@dataclasses.dataclass(frozen=True)
class Table:
    """A table: ``rows`` is a list of dicts (columns: the union of their keys, in order) or the
    path of a CSV file with a header row."""

    rows: Sequence[Mapping[str, Any]] | str | os.PathLike
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Image:
    """A PNG figure: the path of a ``.png`` file or its bytes."""

    png: str | os.PathLike | bytes
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    """A heading and its blocks, in order."""

    heading: str
    blocks: Sequence[Text | Table | Image] = ()


class ReportError(ValueError):
    """An input of the report is missing or malformed (the message names it)."""


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section]) -> Path:
    """Writes a self-contained HTML page to ``path`` (atomically) and returns its path.

    Raises:
        ReportError: a block is of an unknown type, an image is not a PNG, a CSV file is missing.
    """
    return write_text_atomic(path, render_report(title, sections))


def render_report(title: str, sections: Sequence[Section]) -> str:
    """The HTML text of ``write_report``."""
    body = []
    for number, section in enumerate(sections):
        if not isinstance(section, Section):
            raise ReportError(f"Expected a Section. Received: {type(section).__name__} "
                              f"at position {number} of sections.")
        anchor = f"s{number}"
        body.append(f'<section id="{anchor}"><h2>{_esc(section.heading)}</h2>')
        body.extend(_block(block, section.heading) for block in section.blocks)
        body.append("</section>")
    toc = "".join(f'<li><a href="#s{i}">{_esc(s.heading)}</a></li>' for i, s in enumerate(sections))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p class=\"meta\">Written by nodulelearn on {generated}.</p>"
        f"<nav><ul>{toc}</ul></nav>{''.join(body)}</body></html>\n"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
    "color:#222;line-height:1.45}table{border-collapse:collapse;margin:.8rem 0;font-size:.85rem;"
    "display:block;overflow-x:auto}th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;"
    "white-space:nowrap}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}"
    "img{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1rem 0}"
    "figcaption,caption,.meta{color:#666;font-size:.85rem}code,pre{background:#f5f5f5;"
    "font-size:.85rem}pre{padding:.5rem;overflow-x:auto}section{margin-top:2rem}"
)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _block(block: Any, where: str) -> str:
    if isinstance(block, Text):
        return markdown_to_html(block.markdown)
    if isinstance(block, Table):
        return _table_html(_rows(block.rows), block.caption)
    if isinstance(block, Image):
        return _image_html(block.png, block.caption)
    raise ReportError(f"Unknown block in section {where!r}: expected Text, Table or Image. "
                      f"Received: {type(block).__name__}.")


def _rows(rows: Sequence[Mapping[str, Any]] | str | os.PathLike) -> list[dict[str, Any]]:
    if isinstance(rows, (str, os.PathLike)):
        return read_csv(rows)
    return [dict(row) for row in rows]


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file with a header row."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise ReportError(f"Table file not found: {os.fspath(path)!r}.") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise ReportError(f"Table file {os.fspath(path)!r} is not a UTF-8 CSV file ({err}).") \
            from None


def _table_html(rows: list[dict[str, Any]], caption: str = "") -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _image_html(png: str | os.PathLike | bytes, caption: str) -> str:
    if isinstance(png, bytes):
        data, name = png, caption or "figure"
    else:
        name = os.fspath(png)
        try:
            data = Path(png).read_bytes()
        except FileNotFoundError:
            raise ReportError(f"Figure not found: {name!r}.") from None
    if not data.startswith(_PNG_SIGNATURE):
        raise ReportError(f"Expected a PNG image. Received: {name!r}, which does not start with "
                          "the PNG signature.")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    alt = caption or Path(name).name
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{_esc(alt)}">{cap}</figure>'


# The reports of a study and of a probe.

def _visible(paths) -> list[Path]:
    """``paths`` without hidden files: temporaries of interrupted atomic writes
    (``.<name>.XXXXXXXX.<ext>``) and macOS' ``._<name>`` resource forks are not outputs."""
    return sorted(p for p in paths if not p.name.startswith("."))


def _figures(out_dir: Path, pattern: str = "*.png") -> list[Image]:
    return [Image(p, caption=p.relative_to(out_dir).as_posix())
            for p in _visible(out_dir.glob(pattern))]


def _settings_table(data: Any, prefix: str = "") -> list[dict[str, str]]:
    """A nested JSON object flattened into ``setting, value`` rows."""
    rows: list[dict[str, str]] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            rows.extend(_settings_table(value, f"{prefix}{key}."))
    else:
        value = json.dumps(data) if isinstance(data, (list, dict, bool)) or data is None else data
        rows.append({"setting": prefix.rstrip("."), "value": str(value)})
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path} is not valid JSON: {error}.") from None


def study_report(
    out_dir: str | os.PathLike,
    *,
    files: Sequence[str | os.PathLike] | None = None,
    runs: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Writes ``out_dir/report.html`` from a study's outputs and returns its path.

    Uses ``summary.md`` (the summary tables), the figures and tables, the run list and
    ``study.json`` (the settings). Files that a study has not written yet are left out, so a
    report of a partly finished study shows what there is.

    Args:
        out_dir: the study's output directory.
        files: the ``.png`` and ``.csv`` files to show (what the aggregation wrote; nothing else
            in ``out_dir`` is read). ``None``: every visible ``*.png`` and ``*.csv`` at the top
            of ``out_dir`` (hidden files, such as interrupted writes' temporaries, left out).
        runs: ``(run id, state)`` of every run of the study. ``None``: the visible folders of
            ``runs/``, "finished" when they hold a ``record.json``.

    Raises:
        ReportError: ``out_dir`` is not a directory, or holds none of the study's outputs.
    """
    out = _existing_dir(out_dir)
    if files is None:
        files = _visible(p for p in out.iterdir() if p.suffix in (".png", ".csv"))
    files = [Path(f) for f in files]
    sections = []
    if (out / "summary.md").is_file():
        sections.append(Section("Summary", [Text((out / "summary.md").read_text("utf-8"))]))
    figures = [Image(p, caption=p.name) for p in files if p.suffix == ".png"]
    if figures:
        sections.append(Section("Figures", figures))
    tables = sorted((p for p in files if p.suffix == ".csv"),
                    key=lambda p: (p.name != "results.csv", p.name))
    if tables:
        sections.append(Section("Results", [Table(p, p.name) for p in tables]))
    if runs is None:
        runs = [(p.name, "finished" if (p / "record.json").is_file() else "not finished")
                for p in _visible((out / "runs").glob("*")) if p.is_dir()]
    if runs:
        rows = [{"run": run_id, "state": state} for run_id, state in runs]
        sections.append(Section("Runs", [Table(rows, f"{len(rows)} run(s) in runs/")]))
    if (out / "study.json").is_file():
        settings = _settings_table(_read_json(out / "study.json"))
        sections.append(Section("Settings", [Table(settings, "study.json")]))
    if not sections:
        raise ReportError(f"{out} holds none of a study's outputs (summary.md, results.csv, "
                          "*.png, runs/, study.json): is it a study's --out?")
    name = _study_name(out)
    return write_report(out / REPORT_NAME, f"Study {name}" if name else f"Study in {out}", sections)


def _study_name(out: Path) -> str:
    if (out / "study.json").is_file():
        data = _read_json(out / "study.json")
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            return data["name"]
    return ""


def probe_report(out_dir: str | os.PathLike) -> Path:
    """Writes ``out_dir/report.html`` from ``bin/probe_features``' outputs and returns its path.

    Per analysed folder (``out_dir`` itself, or one sub-folder per distribution or run): the
    sensitivity table (``sensitivity.csv``) and every other CSV, the decodability and
    recoverability records (``decodability.json``, ``recoverability.json``) and every figure; then
    the comparison of several runs (``comparison.csv`` / ``.png``) when there is one.

    Raises:
        ReportError: ``out_dir`` is not a directory, or holds no probe output.
    """
    out = _existing_dir(out_dir)
    folders = sorted({p.parent for p in out.rglob("sensitivity.csv")
                      if not any(part.startswith(".") for part in p.relative_to(out).parts)})
    sections = []
    for folder in folders:
        name = folder.relative_to(out).as_posix()
        csvs = sorted(_visible(folder.glob("*.csv")),
                      key=lambda p: (p.name != "sensitivity.csv", p.name))
        if folder == out:
            csvs = [p for p in csvs if p.name != "comparison.csv"]
        blocks: list[Text | Table | Image] = [Table(p, p.name) for p in csvs]
        for record in ("decodability.json", "recoverability.json"):
            if (folder / record).is_file() and not (folder / record).with_suffix(".csv").is_file():
                blocks.append(Table(_records(_read_json(folder / record)), record))
        blocks.extend(Image(p, caption=p.relative_to(out).as_posix())
                      for p in _visible(folder.glob("*.png")))
        sections.append(Section("Sensitivity" if name == "." else f"Sensitivity: {name}", blocks))
    comparison: list[Text | Table | Image] = []
    if (out / "comparison.csv").is_file():
        comparison.append(Table(out / "comparison.csv", "comparison.csv"))
    if (out / "comparison.png").is_file() and not (out / "sensitivity.csv").is_file():
        comparison.append(Image(out / "comparison.png", caption="comparison.png"))
    if comparison:
        sections.append(Section("Comparison of the runs", comparison))
    if not sections:
        raise ReportError(f"{out} holds no sensitivity.csv: is it a bin/probe_features --out?")
    return write_report(out / REPORT_NAME, f"Feature sensitivity in {out.name}", sections)


def _records(data: Any) -> list[dict[str, Any]]:
    """Table rows from a JSON result: a list of records, or an object with one list of them."""
    if isinstance(data, list):
        return [r if isinstance(r, Mapping) else {"value": r} for r in data]
    if isinstance(data, Mapping):
        lists = [v for v in data.values() if isinstance(v, list) and v and
                 all(isinstance(r, Mapping) for r in v)]
        if len(lists) == 1:
            return [dict(r) for r in lists[0]]
        return _settings_table(data)
    return [{"value": data}]


def _existing_dir(path: str | os.PathLike) -> Path:
    out = Path(path)
    if not out.is_dir():
        raise ReportError(f"Not a directory: {os.fspath(path)!r}.")
    return out
