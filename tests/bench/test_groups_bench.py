"""bench/groups.py on invented data in the ConsRec layout: the protocol's counts and every model's row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import groups as bench
from pipelines.groups import baselines as gb
from tests.pipelines.datasets.test_consrec import write_layout


def test_the_validation_split_holds_out_one_item_no_member_has_per_group_with_two_or_more():
    train = {"a": [1, 2, 3], "b": [4], "c": [5, 5, 6], "d": [7, 8]}
    members = {"a": {1, 2}, "c": set(), "d": {7, 8}}  # in d, every item is in a member's history
    fit, held_out = bench.split_validation(train, members, seed=0)
    assert held_out["a"] == 3 and set(held_out) == {"a", "c"}
    assert fit["b"] == [4] and fit["d"] == [7, 8]
    assert all(held_out[g] not in fit[g] and sorted(fit[g] + [held_out[g]]) == sorted(set(train[g]))
               for g in held_out)


def test_ease_weights_from_the_eigendecomposition_equal_the_direct_inverse():
    rows = np.random.default_rng(0).integers(0, 2, size=(30, 12)).astype(float)
    gram = rows.T @ rows
    inverse = np.linalg.inv(gram + 50.0 * np.eye(12))
    direct = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(direct, 0.0)
    assert gb.EaseFamily(rows).weights(50.0) == pytest.approx(direct, abs=1e-10)


def test_the_bench_writes_every_model_with_the_protocols_counts(tmp_path):
    (tmp_path / "tiny").mkdir()
    dataset = write_layout(tmp_path / "tiny")
    assert bench.main([str(dataset), "--out", str(tmp_path / "out"), "--lambdas", "1,10"]) == 0
    document = json.loads((tmp_path / "out" / "groups-tiny.json").read_text())
    assert document["protocol"]["cases"] == 2 and document["protocol"]["leaking_test_pairs_dropped"] == 1
    assert set(document["models"]) == {"MostPop", "GroupEASE", "EASE + average", "EASE + least misery"}
    assert all(0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0 for row in document["models"].values())
    assert document["models"]["GroupEASE"]["lambda"] in (1.0, 10.0)


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        bench.parse_args(["d", "--lambdas", "ten"])
    with pytest.raises(SystemExit):
        bench.parse_args(["d", "--lambdas", "0,10"])
