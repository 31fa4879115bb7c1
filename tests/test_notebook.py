"""The notebook API: `import nodulelearn` is cheap and exports the entry points; the README's
Python example runs as written (dataset, smoke training, sensitivity analysis, a DataFrame)."""

import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nodulelearn
from nodulelearn.datasets import MODE_NAMES

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- notebook-example .*?-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "README.md lost its marked Python example"
    return match.group(1)


def test_readme_example_is_at_most_ten_lines():
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert len(lines) <= 10, f"{len(lines)} lines"


def test_readme_example_trains_analyses_and_gives_a_dataframe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md example", "exec"), namespace)
    table = namespace["table"]
    assert isinstance(table, pd.DataFrame)
    # One record per mode of variation, plus the pseudo-mode `nuisance` (other noise seeds).
    assert sorted(table.index) == sorted([*MODE_NAMES, "nuisance"])
    varying = table[table["varies"]]
    assert abs(varying["reliance"].sum() - 1.0) < 1e-6  # reliance shares over the modes
    assert ((table["flip_rate"].dropna() >= 0) & (table["flip_rate"].dropna() <= 1)).all()
    run = namespace["run"]  # what train() returned: the trained run, used without reloading
    assert set(run.metrics) >= {"margin_size"}  # evaluated on its training distribution
    assert (tmp_path / "runs" / "ce" / "model.keras").is_file()
    reloaded = nodulelearn.load_run(tmp_path / "runs" / "ce")
    assert reloaded.metrics == run.metrics and reloaded.config == run.config
    for a, b in zip(run.model.get_weights(), reloaded.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert table["distribution"].eq("margin_size").all()
    assert tuple(namespace["images"].shape) == (16, 64, 64, 1) and namespace["labels"].shape == (16,)
    assert "reliance" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(nodulelearn.EXPORTS))
def test_every_export_resolves_to_the_object_of_its_module(name):
    value = getattr(nodulelearn, name)
    assert value is getattr(importlib.import_module(nodulelearn.EXPORTS[name]), name)
    assert name in dir(nodulelearn) and name in nodulelearn.__all__


def test_subpackages_are_attributes_and_unknown_names_raise():
    assert nodulelearn.losses is importlib.import_module("nodulelearn.losses")
    with pytest.raises(AttributeError, match="module 'nodulelearn' has no attribute 'trian'"):
        nodulelearn.trian  # noqa: B018


def test_import_has_no_side_effects():
    code = textwrap.dedent("""
        import logging, sys
        import matplotlib
        backend, handlers = matplotlib.get_backend(), list(logging.getLogger().handlers)
        import nodulelearn
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "heavy import"
        assert matplotlib.get_backend() == backend, "backend switched"
        assert logging.getLogger().handlers == handlers, "root logger configured"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
