"""The change from initialisation in the written outputs: decodability.json,
encoding_layers.csv / .png, recoverability records, and bin/probe_features' two flags."""

import csv
import json
import os
import subprocess
import sys

import pytest

from nodulelearn.models.encoders import compact_cnn
from nodulelearn.sensitivity import encoding_distribution, probe_encoding, probe_recoverability
from nodulelearn.sensitivity.layers import LAYER_FIELDS
from nodulelearn.sensitivity.retraining import FIELDS
from nodulelearn.sensitivity.untrained import CHANGE_FIELDS, GAIN_FIELDS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Numeric modes only vary (ridge read-outs, milliseconds): 4 layers x 3 encoders stay cheap.
NUMERIC_SPEC = """
name = "numeric_test"
image_size = 32
pixel_spacing_mm = 1.5
[modes.margin]
fixed = "smooth"
[modes.texture]
fixed = "solid"
[modes.calcification]
fixed = "none"
[modes.vessels]
fixed = 0
"""


@pytest.fixture
def numeric_spec(tmp_path):
    path = tmp_path / "numeric_test.toml"
    path.write_text(NUMERIC_SPEC)
    return str(path)


def test_probe_encoding_writes_the_change_per_mode_and_per_layer(tmp_path, numeric_spec):
    encoder = compact_cnn(32, width=4)
    result = probe_encoding(encoder, encoding_distribution(numeric_spec), str(tmp_path),
                            seed=0, n=60, baseline_inits=2)
    written = json.loads((tmp_path / "decodability.json").read_text())
    assert written["baseline_inits"] == 2 and "Bonferroni" in written["baseline"]
    for record in written["modes"]:
        assert set(CHANGE_FIELDS) <= set(record)
        if record["varies"]:
            assert record["verdict"] in ("enhanced", "suppressed", "unchanged")
            assert record["change"] == pytest.approx(
                record["normalized"] - record["baseline_normalized"])
            assert record["change_ci_low"] <= record["change"] <= record["change_ci_high"]
        else:
            assert record["verdict"] is None and record["change"] is None
    with open(tmp_path / "encoding_layers.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == list(LAYER_FIELDS)
    layers = ["block0_pool", "block1_pool", "block2_pool", "embedding"]
    assert list(dict.fromkeys(r["layer"] for r in rows)) == layers
    assert {r["depth"] for r in rows} == {"1", "2", "3", "4"}
    varying = [r["mode"] for r in written["modes"] if r["varies"]]
    assert len(rows) == len(layers) * len(varying)
    last = {r["mode"]: r for r in rows if r["layer"] == "embedding"}
    for record in written["modes"]:
        if record["varies"]:
            assert float(last[record["mode"]]["change"]) == pytest.approx(record["change"])
    assert (tmp_path / "encoding_layers.png").stat().st_size > 0
    assert result["layers"] == written["layers"]


def test_without_reference_and_layers_the_fields_are_empty(tmp_path, numeric_spec):
    result = probe_encoding(compact_cnn(32, width=4), encoding_distribution(numeric_spec),
                            str(tmp_path), seed=0, n=40, baseline_inits=0, encoding_layers=())
    assert all(r["change"] is None and r["verdict"] is None for r in result["modes"])
    assert result["layers"] == [] and not (tmp_path / "encoding_layers.csv").exists()


def test_recoverability_records_gain_over_the_untrained_encoder(tmp_path, spec_path,
                                                                 make_run_dir):
    from nodulelearn.sensitivity import load_run

    run = load_run(make_run_dir("run", [spec_path]))
    records = probe_recoverability(run.model, run.encoder, [spec_path], str(tmp_path), seed=0,
                                   n_test=40, n_fit=40, baseline_inits=2)
    record = records[0]
    assert set(GAIN_FIELDS) <= set(record) <= set(FIELDS)
    assert 0 <= record["baseline_accuracy"] <= 1
    assert record["gain_over_baseline"] == pytest.approx(
        record["retrained_accuracy"] - record["baseline_accuracy"])
    assert record["gain_over_baseline_ci_low"] <= record["gain_over_baseline"] \
        <= record["gain_over_baseline_ci_high"]
    with open(tmp_path / "recoverability.csv", newline="") as f:
        assert set(GAIN_FIELDS) <= set(csv.DictReader(f).fieldnames)


def _probe(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "probe_features"), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )


def test_bin_refuses_one_init_and_an_unknown_layer_in_one_line(tmp_path, spec_path,
                                                                make_run_dir):
    proc = _probe("--model=m.keras", f"--dist={spec_path}", "--baseline_inits=1",
                  f"--out={tmp_path / 'o1'}")
    assert proc.returncode != 0 and "--baseline_inits must be 0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    run_dir = make_run_dir("run", [spec_path])
    out = tmp_path / "o2"
    proc = _probe(f"--run_dir={run_dir}", "--n=16", "--encoding_n=20", "--recover_dists=none",
                  "--encoding_layers=nope", "--baseline_inits=2", f"--out={out}")
    assert proc.returncode != 0
    assert "Unknown encoding layer(s) 'nope'" in proc.stderr and "Valid layer names" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
