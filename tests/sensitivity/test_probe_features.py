"""bin/probe_features and the library calls behind it, end to end on tiny models."""

import csv
import json
import os
import subprocess
import sys

import keras

from nodulelearn.datasets import MODE_NAMES
from nodulelearn.sensitivity import ANALYSED_MODES, probe_run, probe_runs
from nodulelearn.sensitivity.report import sensitivity_csv_fields

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--n=48", "--repeats=2", "--bootstrap=20", "--partial_dependence_n=16"]


def _probe(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "probe_features"), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )


def _no_temporary_files(directory):
    for _, _, files in os.walk(directory):
        assert not [f for f in files if f.startswith(".")], files


def test_bin_on_a_model_file_writes_every_output(tmp_path, spec_path, make_run_dir):
    run_dir = make_run_dir("run", [spec_path])
    out = tmp_path / "out"
    proc = _probe(f"--model={run_dir}/model.keras", f"--dist={spec_path}", *SMALL,
                  "--saliency_per_class=2", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mode in ANALYSED_MODES:
        assert mode in proc.stdout
    assert "baseline accuracy" in proc.stdout
    assert sorted(os.listdir(out)) == [
        "partial_dependence.json", "partial_dependence.png", "report.html", "saliency.png",
        "sensitivity.csv", "sensitivity.json", "sensitivity.png",
    ]
    page = (out / "report.html").read_text()
    assert "sensitivity.csv" in page and "nuisance" in page
    _no_temporary_files(out)
    result = json.loads((out / "sensitivity.json").read_text())
    assert {"accuracy", "auc", "n"} <= set(result["baseline"])
    assert [r["mode"] for r in result["modes"]] == list(ANALYSED_MODES)
    for record in result["modes"]:
        assert {"mode", "delta_accuracy", "delta_auc", "flip_rate", "mean_abs_delta_p",
                "reliance", "varies"} <= set(record)
    with open(out / "sensitivity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == sensitivity_csv_fields() and len(rows) == len(ANALYSED_MODES)
    curves = json.loads((out / "partial_dependence.json").read_text())["modes"]
    assert curves["margin"]["labels"] == ["smooth", "lobulated", "spiculated"]
    assert len(curves["size"]["mean_p"]) == len(curves["size"]["values"])
    # Grad-CAM worked through the nested encoder: no "skipped" message in the log.
    assert "Grad-CAM skipped" not in proc.stderr


def test_bin_refuses_a_lambda_model_and_writes_nothing(tmp_path, spec_path):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Lambda(lambda t: 1.0 - t)(inputs)
    x = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, x).save(path)
    out = tmp_path / "out"
    proc = _probe(f"--model={path}", f"--dist={spec_path}", *SMALL, f"--out={out}")
    assert proc.returncode != 0
    assert "--unsafe_deserialization" in proc.stderr and "Lambda" in proc.stderr
    assert not out.exists()  # not even an empty folder


def test_probe_runs_compares_runs_and_decodes_from_the_encoder(tmp_path, spec_path,
                                                               make_run_dir):
    runs = [make_run_dir(f"run{i}", [spec_path], seed=i) for i in range(2)]
    out = str(tmp_path / "compare")
    compared = probe_runs(runs, out, n=40, repeats=2, seed=0, bootstrap=20,
                          partial_dependence_n=0, saliency_per_class=0,
                          comparison_metric="flip_rate", encoding_n=60, recover_n=40)
    assert sorted(os.listdir(out)) == [
        "comparison.csv", "comparison.png", "encoding_comparison.csv",
        "encoding_comparison.png", "run0", "run1"]
    with open(os.path.join(out, "comparison.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(ANALYSED_MODES) and {r["run"] for r in rows} == {"run0", "run1"}
    assert sorted(os.listdir(os.path.join(out, "run0"))) == [
        "decodability.json", "encoding.png", "encoding_layers.csv", "encoding_layers.png",
        "recoverability.csv", "recoverability.json", "sensitivity.csv", "sensitivity.json",
        "sensitivity.png"]
    decodability = json.loads(open(os.path.join(out, "run0", "decodability.json")).read())
    assert [r["mode"] for r in decodability["modes"]] == list(MODE_NAMES)
    assert decodability["embedding_dim"] == 8 and decodability["n"] == 60
    # Default: the decorrelated version of the run's training distribution (clinical).
    assert decodability["distribution"] == "clinical_independent"
    for record in decodability["modes"]:
        assert {"normalized", "normalized_ci_low", "normalized_ci_high"} <= set(record)
    recovered = json.loads(open(os.path.join(out, "run0", "recoverability.json")).read())
    # Default: the run's OOD test sets (its test_dists other than train_dist).
    assert [r["distribution"] for r in recovered["records"]] == ["sensitivity_test"]
    for key in ("original_accuracy", "retrained_accuracy"):
        record = recovered["records"][0]
        assert record[f"{key}_ci_low"] <= record[key] <= record[f"{key}_ci_high"]
    assert set(compared["runs"]) == {"run0", "run1"}
    _no_temporary_files(out)


def test_probe_run_with_several_distributions_writes_one_folder_each(
    tmp_path, spec_path, fixed_noise_spec_path, make_run_dir
):
    run_dir = make_run_dir("run", [spec_path, fixed_noise_spec_path])
    out = str(tmp_path / "probe")
    results = probe_run(run_dir, out, n=32, repeats=1, seed=0, bootstrap=10,
                        partial_dependence_n=0, saliency_per_class=0, encoding_n=40,
                        recover_n=20)
    assert sorted(results) == ["fixed_noise", "sensitivity_test"]
    # Per distribution: reliance; per model, once: encoding and recoverability.
    assert sorted(os.listdir(out)) == [
        "decodability.json", "encoding.png", "encoding_layers.csv", "encoding_layers.png",
        "fixed_noise", "recoverability.csv", "recoverability.json", "sensitivity_test"]
    assert [r["distribution"] for r in results.recoverability] == [
        "sensitivity_test", "fixed_noise"]
    assert results.encoding["n"] == 40
    noise = {r["mode"]: r for r in results["fixed_noise"]["modes"]}["noise"]
    assert noise["varies"] is False
    assert "does not vary" in results["fixed_noise"]["table"]


def test_run_distributions_are_rendered_at_the_runs_image_size(tmp_path, make_run_dir):
    # A --smoke run trains at 32 pixels; the 64-pixel preset is rendered at 32 pixels, same
    # field of view, as bin/train evaluated it (instead of an input-shape error).
    run_dir = make_run_dir("smoke_run", ["clinical"], image_size=32)
    results = probe_run(run_dir, str(tmp_path / "probe"), n=32, repeats=1, seed=0, bootstrap=10,
                        partial_dependence_n=0, saliency_per_class=0, encoding_n=20,
                        recover_dists=[])
    assert list(results) == ["clinical"]
    assert results["clinical"]["baseline"]["n"] == 32


def test_bin_refuses_an_out_that_is_a_file_before_any_work(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    # The model does not exist: the --out check must come first, so no model is ever loaded.
    proc = _probe(f"--model={tmp_path / 'absent.keras'}", "--dist=clinical", *SMALL,
                  f"--out={blocker}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(blocker) in errors[0] and "a file is in the way" in errors[0]
    assert "absent.keras" not in proc.stderr and "Traceback" not in proc.stderr
    assert blocker.read_text() == "x"
