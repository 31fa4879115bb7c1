"""Runs of a study compared by run id, foreign model + encoder from the command line, and the
notebook API: rendering at the model's size, DataFrames, no side effects on import."""

import json
import os
import subprocess
import sys

import pytest

from nodulelearn.datasets import MODE_NAMES
from nodulelearn.sensitivity import (
    ANALYSED_MODES,
    ModelLoadError,
    permutation_sensitivity,
    probe_runs,
    run_labels,
    study_run_dirs,
    to_dataframe,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--n=40", "--repeats=1", "--bootstrap=20", "--partial_dependence_n=0",
         "--saliency_per_class=0", "--encoding_n=40", "--recover_n=30"]


def _probe(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "probe_features"), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )


def test_run_labels_use_the_run_id_where_folder_names_clash():
    assert run_labels(["s/runs/ce-s0/train", "s/runs/supcon-s0/train"]) == ["ce-s0", "supcon-s0"]
    assert run_labels(["a/run0", "b/run1"]) == ["run0", "run1"]
    assert run_labels(["a/x/train", "b/x/train"]) == ["a/x/train", "b/x/train"]
    with pytest.raises(ValueError, match="distinct run directories"):
        run_labels(["a/run0", "a/./run0"])


@pytest.fixture
def study_dir(tmp_path, make_run_dir, spec_path):
    """A study's --out with two finished runs and one unfinished (runs/<id>/train)."""
    study = tmp_path / "study"
    for i, run_id in enumerate(["ce-s0", "supcon-s0"]):
        (study / "runs" / run_id).mkdir(parents=True)
        made = make_run_dir(f"made{i}", [spec_path], seed=i)
        os.rename(made, study / "runs" / run_id / "train")
    (study / "runs" / "triplet-s0" / "train").mkdir(parents=True)  # not finished: no model
    return study


def test_study_runs_are_found_and_named_by_id(study_dir):
    runs = study_run_dirs(study_dir)
    assert list(runs) == ["ce-s0", "supcon-s0"]
    assert runs["ce-s0"] == str(study_dir / "runs" / "ce-s0" / "train")
    assert list(study_run_dirs(study_dir, ["supcon-s0"])) == ["supcon-s0"]
    with pytest.raises(ModelLoadError, match="triplet-s0.*Finished runs: ce-s0, supcon-s0"):
        study_run_dirs(study_dir, ["ce-s0", "triplet-s0"])
    with pytest.raises(ModelLoadError, match="Not a study directory"):
        study_run_dirs(study_dir / "runs")


def test_probe_runs_of_a_study_compares_by_run_id(study_dir, tmp_path):
    out = tmp_path / "cmp"
    dirs = [study_dir / "runs" / r / "train" for r in ("ce-s0", "supcon-s0")]
    compared = probe_runs(dirs, str(out), n=32, repeats=1, seed=0, bootstrap=10,
                          partial_dependence_n=0, saliency_per_class=0, encoding_n=30,
                          recover_dists=[])
    assert set(compared["runs"]) == {"ce-s0", "supcon-s0"}
    assert {"ce-s0", "supcon-s0", "comparison.csv", "encoding_comparison.csv"} <= set(
        os.listdir(out))
    frame = compared["runs"]["ce-s0"].to_frame()
    assert list(frame["mode"]) == list(ANALYSED_MODES)


def test_bin_study_dir_refuses_an_unknown_run_and_lists_the_finished_ones(study_dir, tmp_path):
    proc = _probe(f"--study_dir={study_dir}", "--runs=ce-s0,nope", *SMALL,
                  f"--out={tmp_path / 'out'}")
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "ce-s0, supcon-s0" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _probe("--encoder=e.keras", f"--run_dir={study_dir}", f"--out={tmp_path / 'o'}")
    assert proc.returncode != 0 and "--encoder goes with --model" in proc.stderr


def test_bin_on_a_foreign_model_and_its_encoder(tmp_path, spec_path, fixed_noise_spec_path,
                                                make_run_dir):
    run_dir = make_run_dir("foreign", [spec_path])
    out = tmp_path / "out"
    proc = _probe(f"--model={run_dir}/model.keras", f"--encoder={run_dir}/encoder.keras",
                  f"--dist={spec_path}", f"--recover_dists={fixed_noise_spec_path}", *SMALL,
                  f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"decodability.json", "encoding.png", "recoverability.json", "recoverability.csv",
            "sensitivity.json", "report.html"} <= set(os.listdir(out))
    page = (out / "report.html").read_text()
    assert "decodability.json" in page and "retrained_accuracy" in page
    encoding = json.loads((out / "decodability.json").read_text())
    # --model: the decorrelated version of the first --dist.
    assert encoding["distribution"] == "sensitivity_test_independent"
    assert [r["mode"] for r in encoding["modes"]] == list(MODE_NAMES)
    assert "normalized" in proc.stdout and "Recoverability" in proc.stdout
    records = json.loads((out / "recoverability.json").read_text())["records"]
    assert [r["distribution"] for r in records] == ["fixed_noise"]
    # Without an encoder, encoding and recoverability cannot be asked for.
    proc = _probe(f"--model={run_dir}/model.keras", f"--dist={spec_path}",
                  f"--recover_dists={spec_path}", *SMALL, f"--out={tmp_path / 'no'}")
    assert proc.returncode != 0 and "--encoder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_32_pixel_model_is_analysed_on_a_64_pixel_preset(make_tiny_cnn):
    model = make_tiny_cnn(image_size=32)
    result = permutation_sensitivity(model, "margin_size", n=24, repeats=1, seed=0,
                                     bootstrap=10, modes=["margin", "size", "nuisance"])
    assert result["image_size"] == 32
    frame = to_dataframe(result)
    assert list(frame["mode"]) == ["margin", "size", "nuisance"]
    assert set(frame["distribution"]) == {"margin_size"}
    assert {"reliance", "reliance_ci_low", "flip_rate"} <= set(frame.columns)
    with pytest.raises(ValueError, match="Valid modes: margin.*nuisance"):
        permutation_sensitivity(model, "margin_size", n=4, repeats=1, seed=0, modes=["colour"])
    with pytest.raises(TypeError, match="Expected a result of the sensitivity analysis"):
        to_dataframe(42)


def test_to_dataframe_of_encoding_and_recoverability_records():
    encoding = {"distribution": "d", "embedding_dim": 2, "modes": [
        {"mode": "size", "normalized": 0.8}, {"mode": "noise", "normalized": 0.1}]}
    frame = to_dataframe(encoding)
    assert list(frame["normalized"]) == [0.8, 0.1] and set(frame["distribution"]) == {"d"}
    frame = to_dataframe({"records": [{"distribution": "a", "retrained_accuracy": 0.9}]})
    assert frame.loc[0, "retrained_accuracy"] == 0.9


def test_importing_the_analysis_switches_no_backend_and_configures_no_logging():
    code = (
        "import logging, matplotlib\n"
        "matplotlib.use('svg')\n"
        "handlers = list(logging.getLogger().handlers)\n"
        "import nodulelearn.sensitivity\n"
        "import nodulelearn.sensitivity.figures\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert logging.getLogger().handlers == handlers\n"
        "import nodulelearn.sensitivity.encoding as e\n"
        "assert callable(nodulelearn.sensitivity.decodability)\n"
        "assert e.__name__ == 'nodulelearn.sensitivity.encoding'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_name_is_both_a_module_and_a_function():
    import importlib
    import pkgutil

    import nodulelearn.sensitivity as package

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        value = getattr(package, info.name)
        assert value is module, f"nodulelearn.sensitivity.{info.name} is {value!r}"
    for name in ("decodability", "partial_dependence", "saliency", "recoverability"):
        assert callable(getattr(package, name)) and name in package.__all__


def test_encoding_dist_overrides_the_distribution_as_given(tmp_path, spec_path,
                                                           fixed_noise_spec_path, make_run_dir):
    from nodulelearn.sensitivity import load_run, probe_dists

    run = load_run(make_run_dir("run", [spec_path]))
    small = dict(n=24, repeats=1, seed=0, bootstrap=10, partial_dependence_n=0,
                 saliency_per_class=0)
    results = probe_dists(run.model, [spec_path], str(tmp_path / "o"), encoder=run.encoder,
                          encoding_dist=fixed_noise_spec_path, encoding_n=30, **small)
    # As given: not decorrelated (its name and its pinned noise are kept).
    assert results.encoding["distribution"] == "fixed_noise"
    noise = {r["mode"]: r for r in results.encoding["modes"]}["noise"]
    assert noise["varies"] is False and noise["normalized"] is None
    assert results.recoverability is None
    with pytest.raises(ModelLoadError, match="--encoder"):
        probe_dists(run.model, [spec_path], str(tmp_path / "p"),
                    encoding_dist=fixed_noise_spec_path, **small)
    assert not (tmp_path / "p").exists()  # refused before any work
