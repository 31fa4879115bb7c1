"""Runs of a study and their deterministic shards."""

import pytest

from nodulelearn.study import load_study, parse_shard, plan_runs, shard_runs


def test_plan_is_the_sorted_product():
    study = load_study("paper")
    runs = plan_runs(study)
    assert len(runs) == len(study.losses) * len(study.train) * len(study.seeds)
    ids = [r.id for r in runs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    run = next(r for r in runs if r.id == "supcon__margin_size__s1")
    assert run.loss.loss == "supcon" and run.seed == 1
    assert run.tests[0].role == "id" and run.tests[0].label == "margin_size"
    assert [t.role for t in run.tests[1:]] == ["ood"] * (len(run.tests) - 1)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 100])
def test_shards_partition_the_runs(count):
    runs = plan_runs(load_study("paper"))
    shards = [shard_runs(runs, i, count) for i in range(count)]
    ids = [r.id for shard in shards for r in shard]
    assert sorted(ids) == sorted(r.id for r in runs)  # every run exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    # deterministic whatever order the runs come in
    assert shard_runs(list(reversed(runs)), 0, count) == shards[0]


def test_parse_shard():
    assert parse_shard(None) == (0, 1)
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/4", "1", "a/b", "1/0", "1/2/3"):
        with pytest.raises(ValueError, match="Expected 'i/n'"):
            parse_shard(bad)
