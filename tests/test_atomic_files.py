"""Atomic writes and the quieting of h5py's close errors after a failed HDF5 write."""

import os
import sys

import pytest

from nodulelearn.atomic_files import atomic_path, quiet_h5py_close_errors


class _RaisesOnDelete:
    """An object whose ``__del__`` raises from code that claims to be ``filename``'s."""

    def __init__(self, filename):
        self.code = compile("raise RuntimeError('close failed')", filename, "exec")

    def __del__(self):
        exec(self.code)


@pytest.fixture
def reported(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_traceback))
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(tb))
    return seen


def test_only_h5py_close_errors_are_dropped_and_only_inside_the_block(reported):
    with quiet_h5py_close_errors():
        _RaisesOnDelete("h5py/_objects.pyx")  # freed at once: its error is h5py's
        assert reported == []
        _RaisesOnDelete("nodulelearn/elsewhere.py")
        assert len(reported) == 1
        sys.excepthook(RuntimeError, RuntimeError("x"), reported[0])  # not h5py's: passed on
        assert len(reported) == 2
    _RaisesOnDelete("h5py/_objects.pyx")  # after the block: reported as usual
    assert len(reported) == 3


def test_the_hooks_are_restored_after_a_failed_block(reported):
    before = sys.unraisablehook, sys.excepthook
    with pytest.raises(OSError), quiet_h5py_close_errors():
        raise OSError(28, "No space left on device")
    assert (sys.unraisablehook, sys.excepthook) == before


def test_atomic_path_leaves_nothing_on_failure_and_the_file_on_success(tmp_path):
    target = tmp_path / "sub" / "m.weights.h5"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.endswith(".weights.h5") and os.path.dirname(tmp) == str(target.parent)
        open(tmp, "w").write("half")
        raise RuntimeError("killed")
    assert list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        open(tmp, "w").write("whole")
    assert target.read_text() == "whole" and list(target.parent.iterdir()) == [target]


def test_temporaries_of_a_killed_write_are_found_and_nothing_else(tmp_path):
    from nodulelearn.atomic_files import remove_temporaries, temporaries_of

    target = tmp_path / "heatmap.png"
    context = atomic_path(target)
    tmp = context.__enter__()  # a write killed here: its context never exits
    open(tmp, "wb").write(b"\x89PN")
    others = [tmp_path / name for name in (
        "._heatmap.png", ".heatmap.png.swp", ".heatmap.png.abc.png", ".results.csv.abcdefgh.csv",
        "heatmap.png", ".heatmap.png.abcdefgh.png.bak")]
    for path in others:
        path.write_bytes(b"not ours")
    assert temporaries_of(target) == [tmp_path / os.path.basename(tmp)]
    assert remove_temporaries(target) == [tmp_path / os.path.basename(tmp)]
    assert not os.path.exists(tmp) and all(p.read_bytes() == b"not ours" for p in others)
    assert temporaries_of(tmp_path / "missing" / "x.csv") == []
