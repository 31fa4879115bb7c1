"""Aggregation reads back only the files it wrote: foreign and hidden files in ``--out`` are left
alone and ignored, and the temporaries an interrupted aggregation left are removed."""

import pytest

from nodulelearn.locks import LockedError, hold_lock
from nodulelearn.study import aggregate_study, load_study, run_study, validate_study
from nodulelearn.study.aggregate import AGGREGATE_LOCK, ALL_OUTPUTS
from nodulelearn.study.runner import LOCKS_DIR


@pytest.fixture
def aggregated(tmp_path, tiny_study_files, fake_stages):
    study = validate_study(load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0,)))))
    out = tmp_path / "out"
    stages = fake_stages()
    run_study(study, out, train_fn=stages.train, sensitivity_fn=stages.sensitivity,
              encoding_fn=stages)
    aggregate_study(study, out)
    return study, out


def test_foreign_files_are_ignored_and_own_temporaries_removed(aggregated):
    study, out = aggregated
    # What a kill mid-aggregation leaves (atomic_files' ".<name>.XXXXXXXX<ext>", half written).
    orphans = [out / ".heatmap.png.k3j4_x9a.png", out / ".results.csv.abcdefgh.csv",
               out / ".report.html.zz9zz9zz.html", out / ".summary.md.0123abcd.md"]
    for path in orphans:
        path.write_bytes(b"\x89PN")
    # What a copy from macOS adds, a user's own files, an editor's swap file: not ours.
    foreign = {
        out / "._heatmap.png": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X",
        out / "._results.csv": b"\x00\x05\x16\x07\xff\xfe",
        out / "notes.csv": b"what,why\nrerun,seed 3\n",
        out / "sketch.png": b"not a png",
        out / ".heatmap.png.swp": b"swap",
        out / ".results.csv.tmp.csv": b"someone else's",
    }
    for path, data in foreign.items():
        path.write_bytes(data)
    (out / "runs" / "._ce__tiny__s0").mkdir()
    agg = aggregate_study(study, out)
    assert not [p.name for p in orphans if p.exists()]
    assert all(p.read_bytes() == data for p, data in foreign.items())
    report = (out / "report.html").read_text()
    for name in ("notes.csv", "sketch.png", "._heatmap.png", "._results.csv"):
        assert name not in report
    assert "<caption>results.csv</caption>" in report and 'alt="heatmap.png"' in report
    assert {p.name for p in agg.written} <= set(ALL_OUTPUTS)
    assert "._ce__tiny__s0" not in report and "<td>ce__tiny__s0</td><td>finished</td>" in report


def test_two_aggregations_of_one_folder_do_not_run_at_once(tmp_path, tiny_study_files):
    study = load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0,))))
    out = tmp_path / "out"
    (out / "summary.md").parent.mkdir()
    (out / "summary.md").write_text(before := "# the finished study's summary\n")
    with hold_lock(out / LOCKS_DIR / AGGREGATE_LOCK):
        (out / ".summary.md.abcdefgh.md").write_text("the other one's, being written")
        with pytest.raises(LockedError, match="aggregation of the study"):
            aggregate_study(study, out)
        assert (out / ".summary.md.abcdefgh.md").exists()  # not ours to delete while it runs
    assert (out / "summary.md").read_text() == before


def test_a_report_that_cannot_be_written_is_a_study_error(aggregated):
    from nodulelearn.study import StudyError

    study, out = aggregated
    (out / "study.json").write_text('{"name": ')  # damaged from outside after the runs
    with pytest.raises(StudyError, match="report.html was not written: .*study.json is not valid"):
        aggregate_study(study, out)
    assert (out / "summary.md").is_file()
