"""bin/train and bin/evaluate end to end (subprocesses), grouped so TensorFlow starts few times."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
       "CUDA_VISIBLE_DEVICES": ""}


def _run(args, *, env=None, timeout=240, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, cwd=cwd or REPO)


@pytest.fixture(scope="module")
def supcon_run(tmp_path_factory):
    """One smoke run of `bin/train --loss=supcon`, shared by the tests below."""
    out = tmp_path_factory.mktemp("cli") / "supcon"
    result = _run(["bin/train", "--loss=supcon", "--smoke", "--test_dists=clinical",
                   "--strategy=mirrored", f"--out_dir={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_bin_train_writes_a_run_and_prints_a_summary(supcon_run):
    out, result = supcon_run
    assert "test distribution" in result.stdout and "clinical" in result.stdout
    config = json.loads((out / "config.json").read_text())
    for flag in ("loss", "loss_params", "loss_module", "train_dist", "test_dists", "n_train",
                 "n_val", "n_test", "epochs", "probe_epochs", "batch_size", "learning_rate",
                 "model", "seed", "out_dir", "deterministic", "strategy", "smoke", "overwrite"):
        assert flag in config
    assert config["probe_epochs"] == 1 and config["strategy"] == "mirrored"
    assert json.loads((out / "status.json").read_text())["state"] == "complete"


def test_bin_evaluate_reproduces_metrics_json(supcon_run, tmp_path):
    out, _ = supcon_run
    result = _run(["bin/evaluate", f"--model={out / 'model.keras'}", "--dists=clinical",
                   "--n=64", "--seed=0", "--batch_size=32", f"--out={tmp_path / 'm.json'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "clinical" in result.stdout
    evaluated = json.loads((tmp_path / "m.json").read_text())
    trained = json.loads((out / "metrics.json").read_text())
    assert set(evaluated) == set(trained) == {"clinical"}
    intervals = {f"{metric}_ci_{end}" for metric in ("accuracy", "sensitivity", "specificity",
                                                     "auc") for end in ("low", "high")}
    for dist, metrics in trained.items():
        row = evaluated[dist]
        assert metrics and {key: row.get(key) for key in metrics} == metrics  # every one, equal
        # What evaluate adds and training does not record: the intervals and the adapter.
        assert set(row) - set(metrics) == intervals | {"adapter"}
        assert row["adapter"] == {"input_intensity": "unit", "outputs": "probability",
                                  "channels": 1, "model_input_shape": [32, 32, 1]}
        for metric in ("accuracy", "sensitivity", "specificity", "auc"):
            low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
            assert 0 <= low <= row[metric] <= high <= 1, (metric, low, row[metric], high)


def test_exported_models_load_without_nodulelearn(supcon_run):
    out, _ = supcon_run
    script = textwrap.dedent(f"""
        import sys
        class Block:  # nodulelearn must not even be importable
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "nodulelearn":
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        import keras, numpy as np, tensorflow as tf
        images = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
        model = keras.saving.load_model({str(out / "model.keras")!r})
        p = np.asarray(model(images))
        assert p.shape == (3, 1) and np.all((p >= 0) & (p <= 1)), p
        z = keras.saving.load_model({str(out / "encoder.keras")!r})(images)
        assert z.shape[0] == 3 and len(z.shape) == 2
        serving = tf.saved_model.load({str(out / "saved_model")!r})
        served = serving.serve(images)
        np.testing.assert_allclose(np.asarray(served), p, rtol=1e-5, atol=1e-6)
        assert not [m for m in sys.modules if m.startswith("nodulelearn")]
        print("OK")
    """)
    result = _run(["-c", script], cwd="/")
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_bad_flags_give_clear_errors(tmp_path):
    result = _run(["bin/train", "--loss=ce", "--probe_epochs=3", "--smoke",
                   f"--out_dir={tmp_path / 'x'}"])
    assert result.returncode != 0 and "no linear-probe phase" in result.stderr
    assert not (tmp_path / "x").exists()

    (tmp_path / "my_losses.py").write_text(textwrap.dedent("""
        from nodulelearn import losses
        from nodulelearn.losses import BinaryCrossEntropy

        @losses.register("my_ce", consumes="logits")
        class MyCE(BinaryCrossEntropy):
            pass
    """))
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    result = _run(["bin/train", "--loss_module=my_losses", "--loss=my_ce", "--loss_params=gamma=2",
                   "--smoke", f"--out_dir={tmp_path / 'y'}"], env=env)
    assert result.returncode != 0
    assert "Valid hyperparameters: label_smoothing" in result.stderr, result.stderr[-2000:]

    result = _run(["bin/train", "--loss=hinge"])
    assert result.returncode != 0 and "supcon" in result.stderr and "hinge" in result.stderr

    # A seed NumPy cannot take is refused in the config's words, before set_determinism.
    result = _run(["bin/train", "--loss=ce", "--smoke", "--seed=-1", f"--out_dir={tmp_path / 'z'}"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "train: error: Invalid value for `seed`. Expected an integer in [0, 4294967295]. "
        "Received: seed=-1 (int)"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "z").exists()


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_two_workers(out):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, "bin/train", "--loss=ce", "--smoke", "--strategy=multi_worker",
             "--test_dists=clinical", f"--out_dir={out}"],
            cwd=REPO, env={**ENV, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    return results


def test_multi_worker_run_on_two_local_workers(tmp_path):
    out = tmp_path / "mw"
    results = _run_two_workers(out)
    assert "clinical" in results[0][0]  # the chief prints the summary
    assert json.loads((out / "metrics.json").read_text())["clinical"]["n"] == 64
    assert json.loads((out / "config.json").read_text())["strategy"] == "multi_worker"
    assert not (tmp_path / ".mw.worker1").exists()  # the other worker's backups are gone
    # Relaunching the finished run returns at once on every worker (none waits for the other).
    mtime = (out / "model.keras").stat().st_mtime_ns
    _run_two_workers(out)
    assert (out / "model.keras").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("dists", [",", "clinical,,margin_size"])
def test_an_empty_name_in_evaluate_dists_is_its_own_one_line_error(tmp_path, dists):
    result = _run(["bin/evaluate", f"--model={tmp_path / 'm.keras'}", f"--dists={dists}"])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == ("evaluate: error: --dists has an empty name: expected comma-separated "
                         "preset names or TOML paths (e.g. --dists=clinical,margin_size_reversed)."
                         f" Received: --dists={dists!r}."), result.stderr[-2000:]
    assert "Known presets" not in result.stderr and "Traceback" not in result.stderr
