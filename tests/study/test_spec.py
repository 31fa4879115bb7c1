"""Parsing study files: presets, shapes, errors that say what was expected."""

import pytest

from nodulelearn.study import StudyError, load_study, preset_names, study_from_dict


def test_presets_are_listed_and_load():
    assert {"quick", "paper"} <= set(preset_names())
    quick = load_study("quick")
    assert quick.name == "quick"
    assert {"ce", "supcon", "triplet_semihard"} <= {e.loss for e in quick.losses}
    assert len(quick.train) >= 2 and len(quick.seeds) == 1
    paper = load_study("paper")
    assert {"ce", "focal", "supcon", "simclr", "contrastive", "triplet_semihard"} <= {
        e.loss for e in paper.losses
    }
    assert len(paper.train) >= 3 and len(paper.seeds) == 8


def test_round_trip_through_dict():
    study = load_study("quick")
    again = study_from_dict(study.to_dict(), source="again")
    assert again.to_dict() == study.to_dict()
    assert again.losses == study.losses and again.train == study.train


def test_file_paths_resolve_relative_to_the_study(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "s.toml"
    path.write_text(
        '[losses.ce]\n[losses.ce_smooth]\nloss = "ce"\nlabel_smoothing = 0.1\n'
        '[train.mine]\ndist = "../d.toml"\nood = ["clinical", "o.toml"]\n'
    )
    study = load_study(str(path))
    assert study.name == "s"  # default: the file's stem
    assert study.losses[1].loss == "ce" and study.losses[1].params == {"label_smoothing": 0.1}
    (train,) = study.train
    assert train.dist == str((tmp_path / "d.toml").resolve())
    assert train.ood == ("clinical", str((tmp_path / "sub" / "o.toml").resolve()))


def test_ood_defaults_to_none_until_validated():
    study = study_from_dict({"losses": {"ce": {}}, "train": {"clinical": {}}})
    assert study.train[0].ood is None and study.seeds == (0,)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"losses": {"ce": {}}, "train": {"x": {}}, "colour": 1}, "unknown key(s) 'colour'"),
        ({"train": {"x": {}}}, "at least one [losses.<name>]"),
        ({"losses": {"ce": {}}}, "at least one [train.<name>]"),
        ({"losses": {"ce": {}}, "train": {"x": {}}, "seeds": []}, "`seeds` must be"),
        ({"losses": {"ce": {}}, "train": {"x": {}}, "seeds": [0, 0]}, "duplicates"),
        ({"losses": {"ce": {}}, "train": {"x": {}}, "budget": {"seed": 3}}, "may not set seed"),
        ({"losses": {"ce": {}}, "train": {"x": {"test": ["y"]}}}, "Valid keys: dist, ood"),
        ({"losses": {"ce": {}}, "train": {"x": {"ood": "y"}}}, "ood must be a list"),
        ({"losses": {"ce": 3}, "train": {"x": {}}}, "[losses.ce] must be a table"),
        ({"losses": {"a__b": {}}, "train": {"x": {}}}, "may not contain '__'"),
        ({"losses": {"ce": {}}, "train": {"x": {}}, "sensitivity": {"n": 0}}, "positive integer"),
        ({"losses": {"ce": {}}, "train": {"x": {}}, "sensitivity": {"on": "x"}}, "one of all, id"),
    ],
)
def test_bad_shapes_raise_clear_errors(data, expected):
    with pytest.raises(StudyError, match="Study '<dict>'") as info:
        study_from_dict(data)
    assert expected in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(StudyError, match="Valid presets: .*paper.*quick"):
        load_study("qiuck")
    with pytest.raises(StudyError, match="does not exist"):
        load_study(str(tmp_path / "nope.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[losses.ce\n")
    with pytest.raises(StudyError, match="not valid TOML"):
        load_study(str(broken))


@pytest.mark.parametrize("module", ["..x", ".x", "a..b", "my-losses", "x."])
def test_a_malformed_loss_module_says_an_absolute_module_name_is_expected(module):
    from nodulelearn.study import validate_study

    study = study_from_dict({"losses": {"ce": {}}, "train": {"clinical": {}},
                             "budget": {"loss_module": module}})  # fmt: skip
    with pytest.raises(StudyError) as info:
        validate_study(study)
    message = str(info.value)
    assert "an absolute importable module name such as 'my_losses'" in message
    assert f"Received: {module!r}" in message and "package" not in message
    assert "\n" not in message
