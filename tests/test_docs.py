"""The documentation site: it builds strictly, and its registry tables match the registries.

A table that lists a registry's contents is marked in its page by
``<!-- registry-table: NAME ... -->`` on the line above it; the tests below read those tables and
compare them with the registries, so that a loss, encoder, augmentation or preset added without
its row (or a row left behind) fails here.
"""

import ast
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).parent / "mkdocs"
PAGES = ("index", "datasets", "rendering", "losses", "training", "sensitivity", "study",
         "results", "performance", "architecture", "extending", "reliability")


def registry_table(page: str, name: str) -> list[list[str]]:
    """The body rows (cells stripped) of the table marked ``registry-table: name`` in ``page``."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith(f"<!-- registry-table: {name} ")]
    assert len(marks) == 1, f"docs/{page} needs one '<!-- registry-table: {name} ...' marker"
    rows = []
    for line in lines[marks[0] + 3:]:  # marker, header, separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"the {name} table of docs/{page} has no rows"
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise AssertionError(f"{text!r} in a docs table is not a Python literal") from None


def same_names(documented, registered, what, page):
    missing, stale = sorted(set(registered) - set(documented)), sorted(set(documented) - set(registered))
    assert not missing and not stale, (
        f"docs/{page}, {what} table: rows missing for {missing}, rows for unknown names {stale}")


def test_every_page_of_the_nav_exists():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert (DOCS / f"{page}.md").is_file(), page
        assert f" {page}.md" in nav, f"{page}.md is not in mkdocs.yml's nav"


def test_losses_table_matches_the_registry():
    from nodulelearn import losses
    from nodulelearn.training.protocols import protocol_for

    rows = registry_table("losses.md", "losses")
    documented = {ticked(row[0])[0]: row for row in rows}
    same_names(documented, losses.names(), "losses", "losses.md")
    for name, row in documented.items():
        info = losses.info(name)
        protocol = protocol_for(name).name
        assert row[1] == protocol, f"{name}: protocol {row[1]!r}, registry {protocol!r}"
        assert row[2].split()[0] == info.consumes, f"{name}: consumes {row[2]!r} vs {info.consumes!r}"
        views = re.search(r"V = (\d+)", row[2])
        assert (int(views.group(1)) if views else None) == info.views, f"{name}: {row[2]!r}"
        params = dict(token.split("=", 1) for token in ticked(row[3]))
        assert {k: literal(v) for k, v in params.items()} == info.hparams, \
            f"{name}: documented hyperparameters {params}, registry {info.hparams}"


def test_encoders_table_matches_the_registry():
    from nodulelearn import models

    rows = registry_table("training.md", "encoders")
    documented = {ticked(row[0])[0]: row for row in rows}
    same_names(documented, models.names(), "encoders", "training.md")
    for name, row in documented.items():
        params = {k: literal(v) for k, v in re.findall(r"`(\w+)` \(([^)]*)\)", row[2])}
        assert params == models.encoder_params(name), \
            f"{name}: documented {params}, registry {models.encoder_params(name)}"


def test_augmentations_table_matches_the_registry():
    from nodulelearn.training.augment import AUGMENTATIONS, DEFAULT_AUGMENT

    rows = registry_table("training.md", "augmentations")
    documented = {}
    for row in rows:
        name, _, params = ticked(row[0])[0].partition(":")
        documented[name] = ({k: literal(v) for k, v in
                             (item.split("=", 1) for item in filter(None, params.split(";")))},
                            row[1].strip("*"))
    same_names(documented, AUGMENTATIONS.names(), "augmentations", "training.md")
    for name, (params, default) in documented.items():
        signature = inspect.signature(AUGMENTATIONS.get(name))
        defaults = {p.name: p.default for p in signature.parameters.values()
                    if p.default is not inspect.Parameter.empty}
        assert params == defaults, f"{name}: documented {params}, registered {defaults}"
        assert default == ("on" if name in DEFAULT_AUGMENT else "off"), f"{name}: {default!r}"


def test_dataset_presets_table_names_every_preset():
    from nodulelearn.datasets import preset_names

    presets = set(preset_names())
    tokens = [t for row in registry_table("datasets.md", "dataset-presets") for t in ticked(" ".join(row))]
    patterns = [t for t in tokens if "*" in t or "<" in t]
    names = {t for t in tokens if t not in patterns}
    unknown = sorted(names - presets)
    assert not unknown, f"docs/datasets.md presets table names unknown presets {unknown}"
    covered = names | {p for p in presets for pattern in patterns
                       if re.fullmatch(re.sub(r"\\\*|<[^>]*>", ".+", re.escape(pattern)), p)}
    assert sorted(presets - covered) == [], \
        f"docs/datasets.md presets table misses {sorted(presets - covered)}"


def test_study_presets_table_matches_the_presets():
    from nodulelearn import study

    rows = registry_table("study.md", "study-presets")
    documented = {ticked(row[0])[0]: row for row in rows}
    same_names(documented, study.preset_names(), "study presets", "study.md")
    for name, row in documented.items():
        spec = study.load_study(name)
        assert ticked(row[1]) == [entry.id for entry in spec.losses], f"{name}: losses {row[1]!r}"
        assert int(row[3]) == len(spec.seeds), f"{name}: seeds {row[3]!r}"


def test_margin_size_flip_is_not_cited_anywhere():
    """A preset name that never existed (the old README and study/spec.py cited it)."""
    for path in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        assert "margin_size_flip" not in path.read_text(encoding="utf-8"), path


def test_mkdocs_builds_strictly(tmp_path):
    if not MKDOCS.is_file():
        pytest.fail(f"mkdocs is not installed in {MKDOCS.parent}: pip install -e '.[test]'")
    result = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(MKDOCS.parent)})
    assert result.returncode == 0, result.stderr[-4000:]
    for page in PAGES:
        target = tmp_path / "site" / ("index.html" if page == "index" else f"{page}/index.html")
        assert target.is_file(), f"{page} was not built"
    assert (tmp_path / "site" / "images" / "preview_margin_size.png").is_file()


def test_mkdocs_build_fails_on_a_broken_link(tmp_path):
    """The strict build is a real check: a page linking to a missing page fails it."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    (docs / "reliability.md").write_text("# Reliability\n\nSee [nowhere](no_such_page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(MKDOCS.parent)})
    assert result.returncode != 0
    assert "no_such_page.md" in result.stderr


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quickstart, re.DOTALL)
    assert len(commands) == 2, "the quickstart holds two commands"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    first_test = next(line for line in ci if "pytest" in line)
    assert first_test == commands[1]
