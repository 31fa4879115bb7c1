"""Bad input at the Python API and in study files: one clear error, before any work."""

import pytest

from nodulelearn.study import StudyError, load_study, validate_study


@pytest.mark.parametrize("kwargs, error, message", [
    ({"seed": "a"}, TypeError, r"`seed`\. Expected an integer\. Received: seed='a' \(str\)"),
    ({"seed": 1.5}, TypeError, r"`seed`\. Expected an integer\. Received: seed=1\.5"),
    ({"n": "32"}, TypeError, r"`n`\. Expected an integer\. Received: n='32' \(str\)"),
    ({"n": True}, TypeError, r"`n`\. Expected an integer\. Received: n=True"),
    ({"batch_size": 0}, ValueError, r"`batch_size`\. Expected an integer >= 1\. Received"),
    ({"start": -1}, ValueError, r"`start`\. Expected an integer >= 0\. Received"),
    # The seed range of a run (resolve_config's words): a dataset's seed is a run's seed.
    ({"seed": -1}, ValueError, r"`seed`\. Expected an integer in \[0, 4294967295\]\. Received"),
    ({"seed": 2**40}, ValueError, r"`seed`\. Expected an integer in \[0, 4294967295\]"),
    ({"seed": 2**64}, ValueError, r"`seed`\. Expected an integer in \[0, 4294967295\]"),
    ({"spec": 5}, TypeError, r"`spec`\. Expected a preset name, a path to a \.toml file or a "
                             r"DistributionSpec\. Received: spec=5 \(int\)"),
])
def test_make_dataset_checks_its_arguments_before_tensorflow_traces(kwargs, error, message):
    from nodulelearn import make_dataset

    arguments = {"spec": "clinical", "n": 4, "seed": 0, "batch_size": 2, **kwargs}
    with pytest.raises(error, match=message) as raised:
        make_dataset(**arguments)
    assert "tensorflow" not in raised.traceback[-1].path.parts  # raised by make_dataset itself


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_make_dataset_and_resolve_config_refuse_the_same_seeds(seed):
    from nodulelearn import make_dataset
    from nodulelearn.training import TrainConfig, resolve_config

    with pytest.raises(ValueError) as run_error:
        resolve_config(TrainConfig(loss="ce", train_dist="clinical", smoke=True, seed=seed))
    with pytest.raises(ValueError) as data_error:
        make_dataset("clinical", 4, seed, 2)
    bound = "Expected an integer in [0, 4294967295]"
    assert bound in str(run_error.value) and bound in str(data_error.value)
    make_dataset("clinical", 4, 2**32 - 1, 2)  # the largest seed a run takes is a dataset's too


STUDY = """
name = "types"
seeds = [0]

[budget]
n_train = 64
{line}

[losses.ce]

[train.margin_size]
"""


@pytest.mark.parametrize("line, message", [
    ('smoke = "false"', r"`smoke`\. Expected a boolean"),
    ("learning_rate = true", r"`learning_rate`\. Expected a positive float\. "
                             r"Received: learning_rate=True \(bool\)"),
    ("image_size = 0", r"`image_size`\. Expected an integer in \[8, 1024\]"),
    ('augment = "flip"', r"`augment`\. .*a string is not a list"),
    ("epochs = 2.5", r"`epochs`\. Expected a positive integer\. Received: epochs=2\.5"),
])
def test_budget_values_are_type_checked_like_the_training_config(tmp_path, line, message):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(line=line))
    with pytest.raises(StudyError, match=r"\[budget\] has an invalid training config value: "
                                         rf"Invalid value for {message}"):
        validate_study(load_study(path))


def test_a_study_path_that_is_a_folder_or_binary_says_so(tmp_path):
    with pytest.raises(StudyError, match=rf"Study file '{tmp_path}' is a folder; expected a "
                                         r"\.toml file"):
        load_study(tmp_path)
    binary = tmp_path / "study.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(StudyError, match=rf"Study file '{binary}' is not a text \(UTF-8\) TOML "
                                         r"file"):
        load_study(binary)
