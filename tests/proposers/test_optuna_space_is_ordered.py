"""Template spaces are ordered where their parameters are: powers of two are searched as integer exponents and
integer ranges as integers, so TPE and CMA-ES model them jointly; only ``Choice`` is categorical. A trial's
parameters map back to the template's point, and every point a sampler asks for lies in the declared space."""
from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from proposers.optuna_tuner import distributions, point_of
from proposers.templates import Choice, IntRange, Pow2, as_dim, cpp_rows, manifest, triton_fused, triton_rows


def test_dimensions_become_ordered_distributions():
    d = distributions({"B": Pow2(16, 256), "stages": IntRange(1, 5), "t": IntRange(1, 8, log=True),
                       "prec": Choice(("ieee", "tf32x3")), "legacy": [1, 3, 2]})
    assert d["log2_B"] == IntDistribution(4, 8)
    assert d["stages"] == IntDistribution(1, 5)
    assert d["t"] == IntDistribution(1, 8, log=True)
    assert d["prec"] == CategoricalDistribution(["ieee", "tf32x3"])
    assert d["legacy"] == CategoricalDistribution([1, 3, 2])
    assert point_of({"log2_B": 6, "stages": 3, "prec": "ieee"}) == {"B": 64, "stages": 3, "prec": "ieee"}


def test_pow2_bounds_must_be_powers_of_two():
    with pytest.raises(ValueError, match="powers of two"):
        Pow2(16, 96)
    assert Pow2(2, 16).values() == [2, 4, 8, 16]


@pytest.mark.parametrize("space", [
    triton_fused.space({"gemm": True, "rows": True, "flat": True}, 8), triton_rows.space({}, 1), cpp_rows.space({}, 8),
], ids=["triton_fused", "triton_rows", "cpp_rows"])
def test_template_block_sizes_are_ordered(space):
    ordered = [k for k, v in space.items() if not isinstance(as_dim(v), Choice)]
    assert ordered and all(isinstance(as_dim(space[k]), (Pow2, IntRange)) for k in ordered)
    text = repr(manifest(space))
    assert eval(text) == manifest(space)      # the SPACE line of a candidate is valid Python


@pytest.mark.parametrize("sampler", ["tpe", "cmaes"])
def test_samplers_stay_in_the_space_and_model_its_order(sampler):
    space = triton_fused.space({"gemm": True, "rows": True, "flat": True}, 8)
    dists = distributions(space)
    s = optuna.samplers.TPESampler(seed=0, n_startup_trials=3) if sampler == "tpe" else \
        optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=3, warn_independent_sampling=False)
    study = optuna.create_study(sampler=s)
    for i in range(12):
        t = study.ask(dists)
        p = point_of(t.params)
        for k, v in p.items():
            assert v in as_dim(space[k]).values(), (k, v)
        # a smooth objective in the ordered dimensions: the best block is 64
        study.tell(t, abs(p["BLOCK_M"] - 64) + abs(p["num_stages"] - 3))
    if sampler == "cmaes":
        relative = s.infer_relative_search_space(study, study.trials[-1])
        assert {"log2_BLOCK_M", "num_stages"} <= set(relative)      # modelled jointly, not sampled independently
        assert "precision" not in relative
