"""report.html: self-contained, and it renders in a real browser (headless Chromium).

Chromium is a CI requirement (`.ci/run` installs Debian's `chromium`): without it these tests
fail, they do not skip.
"""

import html
import io
import json
import re
import shutil
import subprocess

import pytest
from matplotlib.figure import Figure

from nodulelearn import html_report
from nodulelearn.html_report import Image, ReportError, Section, Table, Text, write_report

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")

#: Appended to a copy of the page: once it has loaded, records every image and table in the DOM.
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, loaded: img.complete && img.naturalWidth > 0};
  });
  var tables = Array.prototype.map.call(document.querySelectorAll('table'), function (t) {
    return t.querySelectorAll('tbody tr').length;
  });
  var headings = Array.prototype.map.call(document.querySelectorAll('h2'), function (h) {
    return h.textContent;
  });
  var out = document.createElement('pre');
  out.id = 'nodulelearn-check';
  out.textContent = JSON.stringify({images: images, table_rows: tables, headings: headings});
  document.body.appendChild(out);
});
</script>
"""


def browser_view(report, tmp_path):
    """What headless Chromium sees in ``report``: its images (loaded or not), tables, headings."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (.ci/run does).")
    page = tmp_path / "checked_page.html"
    page.write_text(report.read_text(encoding="utf-8") + CHECK_SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    match = re.search(r'<pre id="nodulelearn-check">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, f"Chromium did not render the page (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def assert_renders(report, tmp_path, *, tables, images):
    """Fails unless the page shows ``tables`` non-empty tables and ``images`` images, all loaded."""
    view = browser_view(report, tmp_path)
    broken = [image["alt"] for image in view["images"] if not image["loaded"]]
    assert not broken, f"broken image(s) in {report.name}: {broken}"
    assert len(view["images"]) == images, f"expected {images} images, found {len(view['images'])}"
    assert len(view["table_rows"]) == tables, \
        f"expected {tables} tables, found {len(view['table_rows'])}"
    assert all(rows > 0 for rows in view["table_rows"]), f"an empty table: {view['table_rows']}"
    return view


def png_bytes(color="tab:blue"):
    figure = Figure(figsize=(2, 1.5), dpi=50)
    figure.add_subplot().bar([0, 1, 2], [3, 1, 2], color=color)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture
def report(tmp_path):
    (tmp_path / "figure.png").write_bytes(png_bytes("tab:red"))
    (tmp_path / "table.csv").write_text("loss,accuracy\nce,0.98\nsupcon,0.97\n")
    path = write_report(tmp_path / "out" / "report.html", "A <test> report", [
        Section("Tables", [
            Table([{"loss": "ce", "accuracy": 0.98154}, {"loss": "supcon", "auc": 0.99}], "dicts"),
            Table(tmp_path / "table.csv", "from a CSV file"),
            Text("Markdown: **bold**, `code` and <script>alert(1)</script>.\n\n"
                 "| mode | reliance |\n| --- | --- |\n| margin | 0.61 |\n| size | 0.39 |\n\n"
                 "- one item\n- another"),
        ]),
        Section("Figures", [Image(png_bytes(), "from bytes"), Image(tmp_path / "figure.png")]),
    ])
    return path


def test_report_renders_every_table_and_image_in_chromium(report, tmp_path):
    view = assert_renders(report, tmp_path, tables=3, images=2)
    assert view["table_rows"] == [2, 2, 2]
    assert view["headings"][:2] == ["Tables", "Figures"]


def test_report_is_self_contained_and_escaped(report):
    text = report.read_text()
    assert re.findall(r'<img src="([a-z]+:[^;,]+)', text) == ["data:image/png"] * 2
    assert not re.search(r'(?:src|href)="(?!data:|#)', text)  # no file or URL outside the page
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<title>A &lt;test&gt; report</title>" in text
    assert "<b>bold</b>" in text and "<code>code</code>" in text
    assert "<td>0.9815</td>" in text  # floats shown with 4 significant digits
    assert not list(report.parent.glob("*.tmp*")) and [p.name for p in report.parent.iterdir()] \
        == ["report.html"]


def test_browser_check_fails_on_a_broken_image(report, tmp_path):
    text = report.read_text()
    payloads = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', text)
    broken = text.replace(payloads[1], payloads[1][:40] + "AAAA" * 50)  # a truncated PNG
    report.write_text(broken)
    with pytest.raises(AssertionError, match=r"broken image\(s\) in report.html: \['figure.png'\]"):
        assert_renders(report, tmp_path, tables=3, images=2)


def test_browser_check_fails_on_a_missing_table(report, tmp_path):
    text = report.read_text()
    start = text.index("<table>")
    report.write_text(text[:start] + text[text.index("</table>") + len("</table>"):])
    with pytest.raises(AssertionError, match="expected 3 tables, found 2"):
        assert_renders(report, tmp_path, tables=3, images=2)


def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path):
    out = tmp_path / "report.html"
    (tmp_path / "not.png").write_text("a text file")
    cases = [
        ([Section("x", [Image(tmp_path / "not.png")])], r"Expected a PNG image. Received: .*not.png"),
        ([Section("x", [Image(tmp_path / "missing.png")])], r"Figure not found: .*missing.png"),
        ([Section("x", [Table(tmp_path / "missing.csv")])], r"Table file not found: .*missing.csv"),
        ([Section("x", ["just a string"])], r"Unknown block in section 'x': expected Text, Table "
                                            r"or Image. Received: str"),
        (["not a section"], r"Expected a Section. Received: str at position 0"),
    ]
    for sections, message in cases:
        with pytest.raises(ReportError, match=message):
            write_report(out, "t", sections)
        assert not out.exists()


def write_study_outputs(out):
    """The files a finished two-run study writes (see docs/study.md, Outputs)."""
    out.mkdir()
    (out / "summary.md").write_text(
        "# Study quick\n\n## margin_size\n\n| loss | test set | accuracy |\n| --- | --- | --- |\n"
        "| ce | margin_size | 0.98 |\n| supcon | margin_size | 0.97 |\n\n"
        "- ce relies on size (0.61)\n")
    (out / "results.csv").write_text(
        "run_id,loss,test_dist,accuracy\nce__margin_size__s0,ce,margin_size,0.98\n"
        "supcon__margin_size__s0,supcon,margin_size,0.97\n")
    (out / "sweep.csv").write_text("run_id,modes.noise.alignment,accuracy\nce__p0__s0,0.5,0.7\n")
    (out / "heatmap.png").write_bytes(png_bytes())
    (out / "ood.png").write_bytes(png_bytes("tab:green"))
    (out / "study.json").write_text(json.dumps(
        {"name": "quick", "seeds": [0], "budget": {"n_train": 1024, "epochs": 6}}))
    for run, finished in (("ce__margin_size__s0", True), ("supcon__margin_size__s0", False)):
        (out / "runs" / run).mkdir(parents=True)
        if finished:
            (out / "runs" / run / "record.json").write_text("{}")


def test_study_report_holds_summary_figures_runs_and_settings(tmp_path):
    out = tmp_path / "study"
    write_study_outputs(out)
    path = html_report.study_report(out)
    assert path == out / "report.html"
    # summary.md's table, results.csv, sweep.csv, the runs, the settings
    view = assert_renders(path, tmp_path, tables=5, images=2)
    assert view["headings"][:5] == ["Summary", "Figures", "Results", "Runs", "Settings"]
    text = path.read_text()
    assert "<title>Study quick</title>" in text
    assert text.index("<caption>results.csv</caption>") < text.index("<caption>sweep.csv</caption>")
    assert "<td>supcon__margin_size__s0</td><td>not finished</td>" in text
    assert "<td>budget.n_train</td><td>1024</td>" in text


def test_study_report_of_a_partly_written_study_and_of_a_wrong_folder(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    with pytest.raises(ReportError, match="holds none of a study's outputs"):
        html_report.study_report(out)
    assert not (out / "report.html").exists()
    with pytest.raises(ReportError, match="Not a directory"):
        html_report.study_report(tmp_path / "nowhere")
    (out / "study.json").write_text('{"name": "quick", ')
    with pytest.raises(ReportError, match=r"study.json is not valid JSON"):
        html_report.study_report(out)
    (out / "study.json").write_text('{"name": "quick"}')
    (out / "heatmap.png").write_bytes(png_bytes())
    view = assert_renders(html_report.study_report(out), tmp_path, tables=1, images=1)
    assert view["headings"][:2] == ["Figures", "Settings"]


def test_hidden_files_are_not_outputs(tmp_path):
    # macOS' ._<name> resource forks and interrupted writes' .<name>.XXXXXXXX.<ext> temporaries.
    out = tmp_path / "study"
    write_study_outputs(out)
    junk = {"._heatmap.png": b"\x00\x05\x16\x07", "._results.csv": b"\x00\x05\x16\x07\xff",
            ".ood.png.abcdefgh.png": png_bytes()[:40], ".results.csv.abcdefgh.csv": b"a,b\n1"}
    for name, data in junk.items():
        (out / name).write_bytes(data)
    (out / "runs" / "._ce__margin_size__s0").mkdir()
    text = html_report.study_report(out).read_text()
    assert not [name for name in (*junk, "._ce__margin_size__s0") if name in text]
    assert "<caption>results.csv</caption>" in text and 'alt="ood.png"' in text
    # Given the files to show, nothing else is read, visible or not.
    (out / "extra.csv").write_text("a,b\n1,2\n")
    text = html_report.study_report(out, files=[out / "results.csv"], runs=[("r1", "finished")])
    text = text.read_text()
    assert "extra.csv" not in text and "sweep.csv" not in text and "heatmap.png" not in text
    assert "<td>r1</td><td>finished</td>" in text and "<td>not finished</td>" not in text
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sensitivity.csv").write_text("mode,reliance\nmargin,0.4\n")
    (probe / "._sensitivity.csv").write_bytes(b"\x00\x05\x16\x07\xff")
    (probe / "._sensitivity.png").write_bytes(b"\x00\x05\x16\x07")
    assert "._sensitivity" not in html_report.probe_report(probe).read_text()


def test_a_table_that_is_not_utf8_is_a_report_error(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(ReportError, match="t.csv' is not a UTF-8 CSV file"):
        html_report.read_csv(tmp_path / "t.csv")


def test_probe_report_of_two_distributions_and_a_comparison(tmp_path):
    out = tmp_path / "probe"
    for dist in ("margin_size", "margin_size_decorrelated"):
        folder = out / dist
        folder.mkdir(parents=True)
        (folder / "sensitivity.csv").write_text("mode,reliance\nmargin,0.4\nsize,0.6\n")
        (folder / "decodability.json").write_text(json.dumps(
            {"modes": [{"mode": "margin", "normalized": 0.3}, {"mode": "size", "normalized": 0.9}]}))
        (folder / "sensitivity.png").write_bytes(png_bytes())
    (out / "comparison.csv").write_text("run,mode,reliance\na,margin,0.4\n")
    (out / "comparison.png").write_bytes(png_bytes("tab:purple"))
    path = html_report.probe_report(out)
    view = assert_renders(path, tmp_path, tables=5, images=3)
    assert view["headings"][:3] == ["Sensitivity: margin_size",
                                    "Sensitivity: margin_size_decorrelated",
                                    "Comparison of the runs"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="holds no sensitivity.csv"):
        html_report.probe_report(empty)
