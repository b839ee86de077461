"""A candidate is a frozen, hashable value whose id is the content hash of its source and parameters."""
from __future__ import annotations

import dataclasses

import pytest

from evaluators.policy import candidate_hash
from proposers import Candidate, get_proposer, proposer_kinds


def test_id_is_the_policy_content_hash_and_ignores_key_order():
    a = Candidate("src", {"b": 1, "a": [1, {"x": 2}]})
    b = Candidate("src", {"a": [1, {"x": 2}], "b": 1}, proposer="other")
    assert a.id == b.id == candidate_hash("src", {"a": [1, {"x": 2}], "b": 1})
    assert Candidate("src").id == candidate_hash("src")
    assert Candidate("src", {"b": 2}).id != a.id


def test_candidate_is_frozen_hashable_and_round_trips():
    c = Candidate("src", {"k": [1, 2]}, parent_ids=["p1"], proposer="rewrites", backend="compile",
                  hardware="h200", problem_id="gemm_sum")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.source = "other"
    with pytest.raises(TypeError):
        c.params["k"] = 3
    assert {c: 1}[c] == 1
    assert Candidate.from_dict(c.to_dict()) == c
    assert c.to_dict()["params"] == {"k": [1, 2]}


def test_bad_backend_and_params_are_refused():
    with pytest.raises(ValueError, match="backend"):
        Candidate("src", backend="cuda-magic")
    with pytest.raises(TypeError):
        Candidate("src", {"f": object()})


def test_unknown_proposer_kind_lists_the_valid_ones():
    with pytest.raises(ValueError) as e:
        get_proposer("nope")
    for kind in proposer_kinds():
        assert kind in str(e.value)
    assert set(proposer_kinds()) >= {"rewrites", "optuna", "files"}
