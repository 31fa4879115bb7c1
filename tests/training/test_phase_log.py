"""The phase logs (``logs/history_<phase>.csv``): CSVLogger's columns and "NA" marker, read back
by the csv module (quoted cells, cut-short lines), resumed without the epochs not backed up."""

import pytest

from nodulelearn.training.callbacks import MISSING, PhaseLog, history_value, read_csv_rows


def test_a_phase_without_validation_logs_na_like_csvlogger(tmp_path):
    path = tmp_path / "history_pretrain.csv"
    log = PhaseLog(path, start_epoch=0)
    log.on_epoch_end(0, {"loss": 2.5})
    log.on_epoch_end(1, {"loss": 1.25})
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,2.5,NA", "1,1.25,NA"]
    rows = read_csv_rows(path)
    assert rows == [{"epoch": "0", "loss": "2.5", "val_loss": MISSING},
                    {"epoch": "1", "loss": "1.25", "val_loss": MISSING}]
    assert history_value(rows[0]["val_loss"]) is None and history_value("") is None
    assert history_value(rows[1]["loss"]) == 1.25


def test_a_missing_cell_is_na_and_validation_keys_are_not_doubled(tmp_path):
    path = tmp_path / "history_probe.csv"
    log = PhaseLog(path, start_epoch=0)
    log.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0, "auc": 0.5})
    log.on_epoch_end(1, {"loss": 0.5, "val_loss": 1.5})
    assert path.read_text().splitlines() == [
        "epoch,auc,loss,val_loss", "0,0.5,1.0,2.0", "1,NA,0.5,1.5"]


def test_cells_with_commas_round_trip_and_a_cut_short_line_is_skipped(tmp_path):
    path = tmp_path / "history_train.csv"
    log = PhaseLog(path, start_epoch=0)
    log.on_epoch_end(0, {"loss": 1.0, "note": "a, b", "val_loss": 1.0})
    assert read_csv_rows(path) == [{"epoch": "0", "loss": "1.0", "note": "a, b",
                                    "val_loss": "1.0"}]
    with open(path, "a") as f:
        f.write("1,0.5\n")  # a line cut short by a kill (fewer cells than the header)
    assert [r["epoch"] for r in read_csv_rows(path)] == ["0"]
    with pytest.raises(ValueError):
        history_value(read_csv_rows(path)[0]["note"])


def test_resuming_drops_the_epochs_after_the_backup_and_the_last_row_of_an_epoch_wins(tmp_path):
    path = tmp_path / "history_train.csv"
    path.write_text("epoch,loss,val_loss\n0,3.0,NA\n0,2.0,NA\n1,1.0,NA\n")
    assert [r["loss"] for r in read_csv_rows(path)] == ["2.0", "1.0"]
    log = PhaseLog(path, start_epoch=1)
    log.on_epoch_end(1, {"loss": 0.75})
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,2.0,NA", "1,0.75,NA"]
    assert read_csv_rows(tmp_path / "absent.csv") == []
