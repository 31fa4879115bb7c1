"""bin/train and bin/evaluate on environment errors and bad input: one line naming the path and
the problem, a non-zero exit, never a traceback. Output checks of evaluation (NaN, logits,
several outputs) are tested in-process, the binaries once each."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from nodulelearn.locks import hold_lock
from nodulelearn.model_io import ModelOutputError
from nodulelearn.training import evaluate_on

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
       "CUDA_VISIBLE_DEVICES": ""}
SMOKE = ["--loss=ce", "--smoke", "--epochs=1", "--test_dists=clinical"]


def _run(args, *, wrapper=None, timeout=300):
    """Runs a bin/ script; ``wrapper``: Python run first in the same process (fault injection)."""
    if wrapper is None:
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-c", textwrap.dedent(wrapper) + textwrap.dedent(f"""
            import runpy, sys
            sys.argv = {args!r}
            runpy.run_path(sys.argv[0], run_name="__main__")
        """)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV,
                          cwd=REPO)


def _one_error_line(result, script):
    """The single ``<script>: error: ...`` line of a failed run (no traceback around it)."""
    assert result.returncode not in (0, None), result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()
             and not line.startswith(("E0000", "W0000", "I0000"))]
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), result.stderr[-3000:]
    return lines[0]


def test_train_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    line = _one_error_line(_run(["bin/train", *SMOKE, f"--out_dir={tmp_path / 'file'}"]), "train")
    assert f"{tmp_path / 'file'}: " in line and "not a directory" in line


def test_train_out_dir_read_only(tmp_path):
    out = tmp_path / "ro" / "run"
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    # Root ignores permission bits: then the read-only filesystem is injected at mkdir.
    wrapper = None if os.geteuid() != 0 else f"""
        import errno, os, pathlib
        real_mkdir = pathlib.Path.mkdir
        def mkdir(self, *args, **kwargs):
            if str(self).startswith({str(tmp_path / 'ro')!r}):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real_mkdir(self, *args, **kwargs)
        pathlib.Path.mkdir = mkdir
    """
    try:
        line = _one_error_line(_run(["bin/train", *SMOKE, f"--out_dir={out}"], wrapper=wrapper),
                               "train")
    finally:
        os.chmod(tmp_path / "ro", 0o755)
    assert str(out) in line
    assert "read-only" in line or "permission denied" in line


def test_train_disk_full_says_so_and_the_run_is_marked_failed(tmp_path):
    wrapper = """
        import errno, os
        from nodulelearn.training import callbacks
        def disk_full(event, path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        callbacks.fault_hook = disk_full
    """
    result = _run(["bin/train", *SMOKE, f"--out_dir={tmp_path / 'run'}"], wrapper=wrapper)
    line = _one_error_line(result, "train")
    assert str(tmp_path / "run" / "backup" / "train") in line and "the disk is full" in line
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "No space left" in status["reason"]


def test_a_real_failed_weights_write_ends_in_one_line_and_a_failed_run(tmp_path):
    # A real HDF5 write failure, without root: a file size limit (EFBIG) below the backup's size.
    # Before: h5py's "Exception ignored" tracebacks around the error, then a segfault at exit.
    wrapper = """
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    """
    result = _run(["bin/train", *SMOKE, f"--out_dir={tmp_path / 'run'}"], wrapper=wrapper)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Exception ignored" not in result.stderr, result.stderr[-3000:]
    line = _one_error_line(result, "train")
    assert str(tmp_path / "run" / "backup" / "train") in line and "file size limit" in line
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "File too large" in status["reason"]
    assert not list((tmp_path / "run" / "backup" / "train").iterdir())  # no temporary left


def test_train_refusals_name_the_file_and_the_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"loss": "ce", "se')  # truncated
    line = _one_error_line(_run(["bin/train", *SMOKE, f"--out_dir={run}"]), "train")
    assert f"{run / 'config.json'} is not valid JSON" in line and "line 1" in line

    (run / "config.json").write_text(json.dumps({"loss": "ce", "seed": 7}))
    line = _one_error_line(_run(["bin/train", *SMOKE, f"--out_dir={run}"]), "train")
    assert "holds a run with a different config" in line and "seed: 7 there, 0 now" in line

    with hold_lock(run, what="run directory"):
        line = _one_error_line(_run(["bin/train", *SMOKE, f"--out_dir={run}"]), "train")
    assert f"run directory {run} is in use by another process (pid {os.getpid()}" in line


def _save(model, path):
    model.save(path)
    return path


def _dense(units=1, activation=None, kernel=1.0):
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    layer = keras.layers.Dense(units, activation=activation)
    outputs = layer(x)
    layer.kernel.assign(np.full(layer.kernel.shape, kernel, np.float32))
    layer.bias.assign(np.full(layer.bias.shape, -0.5 * kernel, np.float32))
    return keras.Model(inputs, outputs)


def test_evaluation_refuses_nan_logits_and_several_outputs():
    def evaluate(model, **kwargs):
        return evaluate_on(model, ["clinical"], 16, 0, 8, **kwargs)

    with pytest.raises(ModelOutputError, match="16 non-finite outputs"):
        evaluate(_dense(kernel=float("nan")))
    with pytest.raises(ModelOutputError, match="looks like it outputs logits"):
        evaluate(_dense(kernel=40.0))
    assert evaluate(_dense(kernel=40.0), outputs="logit")["clinical"]["n"] == 16
    assert evaluate(_dense(activation="sigmoid"))["clinical"]["n"] == 16
    with pytest.raises(ModelOutputError, match=r"output shape \(None, 3\)"):
        evaluate(_dense(units=3, activation="softmax"))
    inputs = keras.Input((32, 32, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    three = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid")(pooled)
                                 for _ in range(3)])
    with pytest.raises(ModelOutputError, match="with 3 outputs"):
        evaluate(three)
    with pytest.raises(ValueError, match="Expected a positive integer. Received: n=0"):
        evaluate_on(_dense(activation="sigmoid"), ["clinical"], 0, 0, 8)


def test_evaluation_at_another_size_than_the_spec_says_so():
    from nodulelearn.datasets import load_spec
    from nodulelearn.training.evaluate import size_note

    own = load_spec("clinical").image_size
    assert own != 32  # the model below is 32x32
    note = size_note("clinical", _dense(activation="sigmoid"))
    assert note.startswith(f"Rendering 'clinical' at the model's 32x32 pixels (the spec's own "
                           f"size is {own}x{own}; same field of view")
    inputs = keras.Input((own, own, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    same = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    assert size_note("clinical", same) is None


def test_evaluate_bad_models_and_counts_get_one_line(tmp_path):
    good = _save(_dense(activation="sigmoid"), tmp_path / "good.keras")
    data = good.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.keras").write_text("not a model")
    _save(_dense(kernel=40.0), tmp_path / "logits.keras")
    base = ["bin/evaluate", "--dists=clinical", "--n=16", "--batch_size=8"]

    line = _one_error_line(_run([*base, f"--model={tmp_path / 'cut.keras'}"]), "evaluate")
    assert str(tmp_path / "cut.keras") in line and "not found" not in line.lower()
    assert "truncated" in line
    line = _one_error_line(_run([*base, f"--model={tmp_path / 'text.keras'}"]), "evaluate")
    assert "is not a Keras model archive" in line
    line = _one_error_line(_run([*base, f"--model={tmp_path / 'logits.keras'}"]), "evaluate")
    assert "looks like it outputs logits" in line and "--outputs=logit" in line
    result = _run([*base, f"--model={tmp_path / 'logits.keras'}", "--outputs=logit"])
    assert result.returncode == 0 and "clinical" in result.stdout, result.stderr[-2000:]
    assert "Rendering 'clinical' at the model's 32x32 pixels" in result.stderr  # it says so

    result = _run(["bin/evaluate", f"--model={good}", "--dists=clinical", "--n=0"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--n" in result.stderr and "concatenate" not in result.stderr
    (tmp_path / "out").write_text("a file")
    line = _one_error_line(_run([*base, f"--model={good}", f"--out={tmp_path / 'out' / 'm.json'}"]),
                           "evaluate")
    assert str(tmp_path / "out") in line


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_describe_os_error_names_the_path_and_what_to_do(code):
    from nodulelearn.training.run_dir import describe_os_error

    text = describe_os_error(OSError(code, os.strerror(code), "/x/y"))
    assert text.startswith("/x/y: ") and ("disk is full" in text or "read-only" in text)


def test_describe_os_error_finds_the_file_in_an_hdf5_message():
    from nodulelearn.training.run_dir import describe_os_error

    message = ("Can't synchronously write data (file write failed: time = Tue Dec  1 2026\n"
               ", filename = '/r/backup/.tmp-1.weights.h5', file descriptor = 6, errno = 28)")
    text = describe_os_error(OSError(errno.ENOSPC, message))
    assert text.startswith("/r/backup/.tmp-1.weights.h5: the disk is full;"), text
    assert "\n" not in describe_os_error(OSError(errno.EIO, message))
