"""The one k=v grammar (nodulelearn.params) and the one registry mechanism (nodulelearn.registry)."""

import pytest

from nodulelearn.params import format_params, parse_entry, parse_params, parse_value
from nodulelearn.registry import Registry, UnknownNameError, UnknownParameterError


def test_values_are_json_scalars_or_text():
    assert parse_value(" 3 ") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("1E-3") == 0.001 and parse_value("-2.5") == -2.5
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("L2") == "L2" and parse_value("[1, 2]") == "[1, 2]"


def test_params_and_entries_share_the_grammar():
    assert parse_params("temperature=0.1, contrast_mode=one,flag=false") == {
        "temperature": 0.1, "contrast_mode": "one", "flag": False}
    assert parse_params("") == parse_params(None) == {}
    assert parse_entry("translate:max_pixels=3;x=0.5") == ("translate", {"max_pixels": 3, "x": 0.5})
    assert parse_entry("flip") == ("flip", {})
    params = {"margin": 0.5, "soft": True, "distance_metric": "angular"}
    assert parse_params(format_params(params)) == params
    assert parse_entry("t:" + format_params(params, sep=";")) == ("t", params)


@pytest.mark.parametrize("text, match", [
    ("temperature", "Expected key=value"),
    ("=3", "Expected key=value"),
    ("a=1,a=2", "the key 'a' is given twice"),
])
def test_malformed_params_say_what_is_expected(text, match):
    with pytest.raises(ValueError, match=match):
        parse_params(text)


def test_malformed_entries_say_what_is_expected():
    with pytest.raises(ValueError, match="Expected name or name:key=value"):
        parse_entry(":x=1")
    with pytest.raises(ValueError, match="augmentation 'noise:sigma' parameter.*key=value"):
        parse_entry("noise:sigma", what="augmentation")


def _registry():
    things = Registry("thing", skip_params=("name",), also_accepted=("name",))

    @things.register("scaled")
    def scaled(x, *, factor=2.0, name="scaled"):
        return x * factor

    return things


def test_params_are_introspected_and_checked_in_one_wording():
    things = _registry()
    assert things.params("scaled") == {"factor": 2.0}
    assert things.build("scaled", 3, factor=0.5) == 1.5
    assert things.build("scaled", 3, name="ok") == 6.0  # also accepted (Keras' name=)
    with pytest.raises(UnknownParameterError, match=(
            r"Unknown hyperparameter\(s\) 'facter' for thing 'scaled'. Valid hyperparameters: "
            r"factor \(default 2.0\); also accepted: name.")):
        things.build("scaled", 3, facter=1)
    with pytest.raises(UnknownNameError, match="Unknown thing 'scald'. Valid names: scaled."):
        things.build("scald", 3)


def test_numbers_only_registries_refuse_text_for_numbers():
    strict = Registry("op", numbers_only=True)
    strict.add("shift", lambda x, by=1: x + by)
    strict.check_params("shift", {"by": 2})
    with pytest.raises(ValueError, match="Expected a number.*Received: by='abc'"):
        strict.check_params("shift", {"by": "abc"})
    _registry().check_params("scaled", {"factor": "abc"})  # others check their own values


def test_a_catalogue_lists_names_and_imports_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "catalogued_for_test.py").write_text(
        "from tests_registry_holder import THINGS\n"
        "THINGS.add('late', lambda: 'built')\n")
    (tmp_path / "tests_registry_holder.py").write_text(
        "from nodulelearn.registry import Registry\n"
        "THINGS = Registry('thing', catalogue={'late': 'catalogued_for_test', "
        "'broken': 'tests_registry_holder'})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys

    import tests_registry_holder

    try:
        things = tests_registry_holder.THINGS
        assert things.names() == ["broken", "late"] and "late" in things
        assert "catalogued_for_test" not in sys.modules
        assert things.get("late")() == "built" and "catalogued_for_test" in sys.modules
        with pytest.raises(RuntimeError, match="catalogue says tests_registry_holder registers"):
            things.get("broken")
    finally:
        sys.modules.pop("catalogued_for_test", None)
        sys.modules.pop("tests_registry_holder", None)


def test_registering_twice_and_bad_names_raise():
    things = _registry()
    with pytest.raises(ValueError, match="'scaled' is already registered"):
        things.add("scaled", len)
    with pytest.raises(ValueError, match="non-empty string"):
        things.add("", len)
    with pytest.raises(UnknownNameError):
        things.entry(["not", "hashable"])
