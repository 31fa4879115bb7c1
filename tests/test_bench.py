"""Every benchmark script runs (smoke-sized) and prints the JSON report its docs quote."""

import glob
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "bench", "*.py")))

#: The keys each report must hold (docs/performance.md quotes them).
EXPECTED_KEYS = {
    "bench_data.py": {"make_dataset", "render_only", "training", "ratio_generation_to_training",
                      "machine", "smoke"},
    "bench_executors.py": {"runs", "wall_s", "stage_s", "overhead_s", "same_records",
                           "load_average_before", "machine", "smoke"},
    "bench_encoding.py": {"seconds", "default_over_one_thread",
                          "default_over_one_thread_busy_cores", "machine", "smoke"},
    "bench_reference.py": {"today", "reference", "layers", "extrapolated_ratio", "machine",
                           "smoke"},
    "bench_losses.py": {"shapes", "seconds", "ratio_to_matmul", "machine", "smoke"},
    "bench_sensitivity.py": {"seconds_cold", "seconds_warm", "images_predicted",
                             "render_images_per_second", "predict_images_per_second", "smoke"},
    "bench_training.py": {"fit_images_per_s", "bare_train_on_batch_images_per_s", "fit_over_bare",
                          "train_flops_over_matmul", "without_augmentation", "machine", "smoke"},
}


def test_every_script_has_expected_keys():
    assert SCRIPTS == sorted(EXPECTED_KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_smoke_sized_and_prints_its_report(script):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", script), "--smoke"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stderr[-3000:]}"
    start = done.stdout.find("{")
    assert start >= 0, f"{script} printed no JSON:\n{done.stdout[-2000:]}"
    report = json.loads(done.stdout[start:])
    missing = EXPECTED_KEYS[script] - set(report)
    assert not missing, f"{script}'s report lacks {sorted(missing)}: {sorted(report)}"
    assert report["smoke"] is True
