"""Entry-point plug-ins for real: a distribution's metadata on sys.path, in a subprocess.

The fake distribution ``nodulelearn-fake-plugin`` has a ``*.dist-info`` folder whose
``entry_points.txt`` declares the group ``nodulelearn.losses``; its module registers a loss.
Subprocesses keep this session's registry clean.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).parents[2]

PLUGIN_MODULE = '''
import keras
from keras import ops
from nodulelearn import losses


@losses.register("fake_center", protocol="pretrain_probe", consumes="embeddings")
@keras.saving.register_keras_serializable(package="fake_plugin")
class CenterLoss(keras.losses.Loss):
    """Squared distance of each embedding to the mean of its class in the batch."""

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if weight <= 0:
            raise ValueError(f"Invalid value for argument `weight`. Expected a positive float. "
                             f"Received: weight={weight}")
        self.weight = weight

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        same = ops.cast(ops.equal(labels[:, None], labels[None, :]), y_pred.dtype)
        centers = ops.matmul(same, y_pred) / ops.sum(same, axis=1, keepdims=True)
        return self.weight * ops.sum(ops.square(y_pred - centers), axis=-1)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
'''


@pytest.fixture
def plugin_site(tmp_path):
    site = tmp_path / "site"
    dist_info = site / "nodulelearn_fake_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nodulelearn-fake-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[nodulelearn.losses]\nfake_center = fake_plugin_losses\n"
    )
    (site / "fake_plugin_losses.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    return site


def run_python(args, site, backend="numpy"):
    """Runs Python with ``site`` on sys.path. The numpy Keras backend starts fastest; the
    registry does not depend on the backend."""
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_entry_point_plugin_is_registered_lazily(plugin_site):
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from nodulelearn import losses
        before = "fake_plugin_losses" in sys.modules
        names = losses.names()
        info = losses.info("fake_center")
        loss = losses.get("fake_center", weight=2.0)
        value = float(loss(np.array([0, 0, 1, 1]), np.array([[0.0], [2.0], [1.0], [1.0]])))
        print(json.dumps({"before": before, "names": names, "consumes": info.consumes,
                          "protocol_hint": info.protocol_hint,
                          "hparams": info.hparams, "value": value}))
    """)
    result = run_python(["-c", script], plugin_site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before"] is False  # not imported until the registry is read
    assert "fake_center" in report["names"] and "supcon" in report["names"]
    # A plug-in written when losses named their protocol still registers; the hint is kept
    # for the protocol registry to check.
    assert report["consumes"] == "embeddings" and report["protocol_hint"] == "pretrain_probe"
    assert report["hparams"] == {"weight": 1.0}
    assert report["value"] == pytest.approx(2.0 * (1.0 + 1.0 + 0.0 + 0.0) / 4)


def test_contract_suite_covers_the_plugin(plugin_site):
    """The contract suite, run with the plug-in installed, collects and passes it."""
    result = run_python(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/losses/test_contract.py",
            "-k",
            "fake_center and not jax",
        ],
        plugin_site,
        backend="tensorflow",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 9


def test_broken_plugin_reports_its_name(plugin_site):
    (plugin_site / "fake_plugin_losses.py").write_text("raise RuntimeError('boom')\n")
    result = run_python(["-c", "from nodulelearn import losses; losses.names()"], plugin_site)
    assert result.returncode != 0
    assert "Could not load the loss plug-in 'fake_center'" in result.stderr
    assert "boom" in result.stderr
