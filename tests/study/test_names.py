"""Names that become paths, test-set labels, duplicate runs and seeds: refused at validation,
each with one clear line, before anything is trained or written."""

import sys

import numpy as np
import pytest

from nodulelearn.study import StudyError, load_study, plan_runs, validate_study
from nodulelearn.study.names import MAX_NAME_BYTES, NAME_MAX_BYTES, safe_path_component
from nodulelearn.study.spec import study_from_dict
from nodulelearn.study.sweep import expand_study
from nodulelearn.study.validate import largest_seed_offset, max_seed


def _study(tmp_path, tiny_study_files, edit=lambda text: text, *, seeds=(0,)):
    path = tiny_study_files(tmp_path / "spec", seeds=seeds)
    path.write_text(edit(path.read_text()))
    return path


def _refused(path, *match):
    with pytest.raises(StudyError) as info:
        validate_study(load_study(str(path)))
    message = str(info.value)
    assert "\n" not in message
    for text in match:
        assert text in message, message
    return message


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../../../../escaped", "path separator"),
        ("a\\b", "path separator"),
        (".hidden", "leading dot"),
        ("..", "leading dot"),
        ("a\x00b", "control character"),
        ("line\nbreak", "control character"),
        ("x" * (MAX_NAME_BYTES + 1), f"at most {MAX_NAME_BYTES}"),
        ("é" * (MAX_NAME_BYTES // 2 + 1), "bytes"),  # the limit is in bytes, not characters
    ],
)
def test_unsafe_names_are_refused(name, problem):
    with pytest.raises(ValueError, match=problem):
        safe_path_component(name, "the name")


@pytest.mark.parametrize("name", ["quick", "sweep@modes.size.alignment=0.5", "a..b", "ce t=0.1",
                                  "x" * MAX_NAME_BYTES])
def test_plain_names_pass(name):
    assert safe_path_component(name, "the name") == name


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.replace('name = "tiny"', 'name = "../../../../escaped"'),
         "the study's `name` '../../../../escaped'"),
        (lambda t: t.replace('name = "tiny"', 'name = "a\\u0000b"'), "control character"),
        (lambda t: t.replace("[losses.ce]", '[losses.".ce"]\nloss = "ce"'), "leading dot"),
        (lambda t: t.replace("[train.tiny]", '[train."a/b"]'), "[train.<id>] key 'a/b'"),
        (lambda t: t.replace("[train.tiny]", "[train." + "x" * 300 + "]"), "300 bytes"),
        (lambda t: t.replace('dist = "tiny_train.toml"', 'dist = "tiny\\u0000train.toml"'),
         "[train.tiny] dist must be a preset name or a path. Received: 'tiny\\x00train.toml'"),
    ],
)
def test_unsafe_study_names_and_keys_fail_when_read(tmp_path, tiny_study_files, edit, match):
    path = _study(tmp_path, tiny_study_files, edit)
    with pytest.raises(StudyError) as info:
        load_study(str(path))
    assert match in str(info.value) and "\n" not in str(info.value)


def test_a_run_id_too_long_for_a_file_name_fails_at_validation(tmp_path, tiny_study_files):
    # Each key alone fits; the run id <loss>__<train>__s<seed> does not.
    long_loss, long_train = "l" * 150, "t" * 150
    path = _study(tmp_path, tiny_study_files, lambda t: t.replace(
        "[losses.ce]", f'[losses.{long_loss}]\nloss = "ce"').replace(
        "[train.tiny]", f'[train.{long_train}]'))
    _refused(path, "run id", f"{150 + 2 + 150 + 4} bytes", str(NAME_MAX_BYTES))


def test_a_study_json_with_an_unsafe_id_is_refused_when_read_back(tmp_path):
    from nodulelearn.study.aggregate import read_study_file
    from nodulelearn.study.runner import write_study_file

    study = study_from_dict({"losses": {"ce": {}}, "train": {"clinical": {"ood": []}}})
    write_study_file(tmp_path, study)
    text = (tmp_path / "study.json").read_text().replace('"clinical"', '"../clinical"', 1)
    (tmp_path / "study.json").write_text(text)
    with pytest.raises(StudyError, match="path separator"):
        read_study_file(tmp_path)


# Test sets with the same label (a preset's name or a file's stem).

def _two_sets(tmp_path, tiny_study_files, ood):
    def edit(text):
        return text.replace('ood = ["tiny_ood.toml"]', f"ood = {ood}")
    path = _study(tmp_path, tiny_study_files, edit)
    tiny_ood = (path.parent / "tiny_ood.toml").read_text()
    for site, alignment in (("siteA", "0.0"), ("siteB", "-1.0")):
        (path.parent / site).mkdir(exist_ok=True)
        (path.parent / site / "test.toml").write_text(
            tiny_ood.replace("alignment = 0.0", f"alignment = {alignment}"))
    (path.parent / "alt").mkdir(exist_ok=True)
    (path.parent / "alt" / "tiny_train.toml").write_text(tiny_ood)
    return path


def test_two_test_sets_with_one_stem_are_refused_naming_both(tmp_path, tiny_study_files):
    path = _two_sets(tmp_path, tiny_study_files, '["siteA/test.toml", "siteB/test.toml"]')
    _refused(path, "siteA/test.toml", "siteB/test.toml", "labelled 'test'", "Rename one")


def test_an_ood_set_named_like_the_training_set_is_refused(tmp_path, tiny_study_files):
    path = _two_sets(tmp_path, tiny_study_files, '["alt/tiny_train.toml"]')
    _refused(path, "labelled 'tiny_train'", "[train.tiny] ood", "alt/tiny_train.toml")


def test_a_sweep_point_never_trains_on_its_ood_set(tmp_path, tiny_study_files):
    sweep = '\n[train.tiny.sweep]\n"modes.size.alignment" = [0.0, 1.0]\n'
    path = _two_sets(tmp_path, tiny_study_files, '["alt/tiny_train.toml"]')
    path.write_text(path.read_text() + sweep)
    _refused(path, "labelled 'tiny_train'")
    # Expanding an unvalidated study (ood given) does not overwrite the point's training spec.
    with pytest.raises(StudyError, match="labelled 'tiny_train'"):
        expand_study(load_study(str(path)), tmp_path / "out")


def test_one_test_set_shared_by_two_entries_is_accepted(tmp_path, tiny_study_files):
    path = _study(tmp_path, tiny_study_files, lambda t: t + (
        '\n[train.other]\ndist = "tiny_train.toml"\nood = ["tiny_ood.toml"]\n'))
    assert len(plan_runs(validate_study(load_study(str(path))))) == 4


# Duplicate runs.

def test_a_sweep_over_one_value_written_twice_is_refused(tmp_path, tiny_study_files):
    path = _study(tmp_path, tiny_study_files,
                  lambda t: t + '\n[train.tiny.sweep]\n"modes.size.alignment" = [1, 1.0]\n')
    _refused(path, "'tiny@modes.size.alignment=1'", "listed twice", "alignment = 1.0")


def test_an_entry_named_like_a_sweep_point_is_refused(tmp_path, tiny_study_files):
    path = _study(tmp_path, tiny_study_files, lambda t: t + (
        '\n[train.tiny.sweep]\n"modes.size.alignment" = [0.5, 1.0]\n'
        '\n[train."tiny@modes.size.alignment=1"]\ndist = "tiny_train.toml"\nood = []\n'))
    _refused(path, "[train.tiny@modes.size.alignment=1]", "[train.tiny.sweep] point")


def test_loss_ids_equal_up_to_case_are_refused(tmp_path, tiny_study_files):
    path = _study(tmp_path, tiny_study_files,
                  lambda t: t.replace("[losses.supcon]", '[losses.CE]\nloss = "ce"\n[losses.sc]\n'
                                      'loss = "supcon"'))
    _refused(path, "'ce' and 'CE'", "macOS")


# Seeds and the loss module.

def test_seeds_are_bounded_by_what_every_stage_accepts(tmp_path, tiny_study_files):
    largest = max_seed()
    assert largest + largest_seed_offset() == 2**32 - 1
    _refused(_study(tmp_path, tiny_study_files, seeds=(0, 2**32)), "from 0 to", str(2**32))
    _refused(_study(tmp_path / "b", tiny_study_files, seeds=(largest + 1,)), str(largest + 1))
    validate_study(load_study(str(_study(tmp_path / "c", tiny_study_files, seeds=(largest,)))))


def test_the_largest_seed_runs_the_encoding_and_recoverability_read_outs(tmp_path,
                                                                      tiny_study_files):
    # The stage that failed on seed 2**32: scikit-learn's folds take seeds below 2**32 only.
    from nodulelearn.datasets import load_spec
    from nodulelearn.sensitivity.encoding import measure_encoding
    from nodulelearn.sensitivity.retraining import recoverability
    from nodulelearn.study.stages import SENSITIVITY_SEED_OFFSET

    spec = load_spec(str(tiny_study_files(tmp_path).parent / "tiny_ood.toml"))

    def encode(factors):
        values = np.stack([factors.values[m] for m in ("margin", "size")], axis=1)
        return values + np.random.default_rng(0).normal(0, 0.1, values.shape)

    def predict(factors):
        return np.clip(encode(factors)[:, 1] / 20.0, 0.0, 1.0)

    seed = max_seed() + SENSITIVITY_SEED_OFFSET  # the analysis seed of the largest run seed
    result = measure_encoding(encode, spec, seed=seed, embedding_dim=2, n=24,
                              modes=["margin", "size"], folds=2, bootstrap=10)
    assert result["seed"] == seed and len(result["modes"]) == 2
    record = recoverability(predict, encode, spec, seed=seed, n_test=16, n_fit=16, bootstrap=10)
    assert 0.0 <= record["retrained_accuracy"] <= 1.0


def test_an_unknown_loss_module_is_one_line_at_validation(tmp_path, tiny_study_files):
    path = _study(tmp_path, tiny_study_files,
                  lambda t: t.replace("[budget]", '[budget]\nloss_module = "no_such_module"'))
    _refused(path, "[budget] loss_module = 'no_such_module' cannot be imported",
             "No module named 'no_such_module'")


def test_a_loss_module_that_fails_on_import_is_one_line(tmp_path, tiny_study_files, monkeypatch):
    (tmp_path / "broken_losses_mod.py").write_text("raise RuntimeError('bad plug-in')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _study(tmp_path, tiny_study_files,
                  lambda t: t.replace("[budget]", '[budget]\nloss_module = "broken_losses_mod"'))
    _refused(path, "RuntimeError: bad plug-in")
    sys.modules.pop("broken_losses_mod", None)


def test_losses_of_the_loss_module_are_known_at_validation(tmp_path, tiny_study_files,
                                                           monkeypatch):
    from nodulelearn import losses

    (tmp_path / "study_plugin_losses.py").write_text(
        "from nodulelearn import losses\n"
        "from nodulelearn.losses.classification import SigmoidFocalCrossEntropy\n"
        "@losses.register('study_plugin_focal', consumes='logits')\n"
        "class PluginFocal(SigmoidFocalCrossEntropy):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _study(tmp_path, tiny_study_files, lambda t: t.replace(
        "[budget]", '[budget]\nloss_module = "study_plugin_losses"').replace(
        "[losses.supcon]\ntemperature = 0.2", '[losses.plug]\nloss = "study_plugin_focal"'))
    try:
        study = validate_study(load_study(str(path)))
        assert [e.loss for e in study.losses] == ["ce", "study_plugin_focal"]
    finally:
        if "study_plugin_focal" in losses.names():
            losses.unregister("study_plugin_focal")
        sys.modules.pop("study_plugin_losses", None)
