"""The simulated trigger candidates: schema, reproducibility and the physics each population encodes."""

import numpy as np
import pytest

from lipsurrogate.data.trigger import FEATURES, POPULATIONS, simulate_trigger, trigger_arrays
from lipsurrogate.exceptions import ConfigurationError, DataSchemaError


@pytest.fixture(scope="module")
def ds():
    return simulate_trigger(40_000, seed=3, signal_fraction=0.5)


def test_schema_units_and_shapes(ds):
    assert ds.sizes["candidate"] == 40_000
    for name in (*FEATURES, "lifetime"):
        assert ds[name].dtype == np.float64 and "units" in ds[name].attrs and "long_name" in ds[name].attrs
    assert ds["sumpt"].attrs["units"] == "GeV" and ds["lifetime"].attrs["units"] == "ps"
    assert ds.attrs["populations"] == list(POPULATIONS)
    x, y = trigger_arrays(ds)
    assert x.shape == (40_000, 4) and np.isfinite(x).all()
    assert set(np.unique(y)) == {0, 1}
    assert int(y.sum()) == 20_000  # round(n * signal_fraction), exact


def test_lifetime_kept_for_signal_only_and_exponential(ds):
    sig = ds["label"].values == 1
    t = ds["lifetime"].values
    assert np.isnan(t[~sig]).all() and np.isfinite(t[sig]).all() and (t[sig] >= 0).all()
    # the sample mean of Exp(1.5 ps) over 20k candidates: standard error 1.5 / sqrt(2e4) ~ 0.011 ps
    assert abs(t[sig].mean() - 1.5) < 0.05


def test_uniform_lifetime_option_covers_the_range():
    flat = simulate_trigger(5000, seed=1, signal_fraction=1.0, lifetime="uniform", t_max=12.0)
    t = flat["lifetime"].values
    assert t.min() >= 0 and t.max() <= 12.0 and t.max() > 11.5
    assert (flat["label"].values == 1).all()


def test_same_seed_same_data_and_rng_equivalent():
    a = simulate_trigger(1000, seed=5)
    b = simulate_trigger(1000, seed=5)
    c = simulate_trigger(1000, rng=np.random.default_rng(5))
    d = simulate_trigger(1000, seed=6)
    np.testing.assert_array_equal(trigger_arrays(a)[0], trigger_arrays(b)[0])
    np.testing.assert_array_equal(trigger_arrays(a)[0], trigger_arrays(c)[0])
    assert not np.array_equal(trigger_arrays(a)[0], trigger_arrays(d)[0])


def test_populations_sit_where_the_paper_says(ds):
    pop = ds["population"].values
    med = {name: {f: np.median(ds[f].values[pop == k]) for f in FEATURES} for k, name in enumerate(POPULATIONS)}
    # prompt: small displacement and small pT
    assert med["prompt"]["fdchi2"] < med["signal"]["fdchi2"] and med["prompt"]["sumpt"] < med["signal"]["sumpt"]
    # material: larger displacement than signal, small pT
    assert med["material"]["fdchi2"] > med["signal"]["fdchi2"] and med["material"]["sumpt"] < med["signal"]["sumpt"]
    # fake tracks: large pT, bad vertices
    assert med["fake"]["sumpt"] > med["signal"]["sumpt"] and med["fake"]["vchi2"] > 2 * med["signal"]["vchi2"]
    # the point of the physics: among the most displaced candidates, background dominates
    top = ds["fdchi2"].values > np.quantile(ds["fdchi2"].values, 0.98)
    assert (pop[top] == 2).mean() > 0.5


def test_signal_displacement_grows_with_lifetime():
    flat = simulate_trigger(20_000, seed=2, signal_fraction=1.0, lifetime="uniform")
    t, fd = flat["lifetime"].values, flat["fdchi2"].values
    assert np.median(fd[t > 8]) > np.median(fd[(t > 1) & (t < 2)]) + 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "'n' must be a positive integer"),
        ({"n": 10, "signal_fraction": 1.5}, "signal_fraction"),
        ({"n": 10, "background_mix": (1, 1)}, "background_mix"),
        ({"n": 10, "lifetime": "gamma"}, "lifetime"),
        ({"n": 10, "seed": 1, "rng": np.random.default_rng(1)}, "either 'seed' or 'rng'"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        simulate_trigger(**kwargs)


def test_trigger_arrays_names_missing_variables(ds):
    with pytest.raises(DataSchemaError, match="Missing"):
        trigger_arrays(ds.drop_vars("vchi2"))
