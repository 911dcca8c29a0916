"""MDMM: constraints are reached (where a weighted sum cannot), with standard optimisers, and checkpointed."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.tasks.pareto import front, solve_constrained, solve_weighted
from lipsurrogate.train import MDMM, Constraint


def _front_f1(f2):
    """f1 on the exact Fonseca-Fleming front at a given f2 (closed form)."""
    t = np.sqrt(-np.log(1 - f2) / 2) - 1 / np.sqrt(2)
    return 1 - np.exp(-2 * (t - 1 / np.sqrt(2)) ** 2)


@pytest.mark.parametrize("eps", [0.3, 0.7])
def test_mdmm_reaches_the_constraint_on_a_concave_front(eps):
    f1, f2, lam = solve_constrained(eps, steps=2000)
    assert f2 == pytest.approx(eps, abs=2e-3)
    assert f1 == pytest.approx(_front_f1(eps), abs=2e-3)  # the constrained optimum, on the front
    assert lam > 0  # an active at-most constraint has a positive multiplier


def test_weighted_sums_only_reach_the_ends_of_a_concave_front():
    finals = [solve_weighted(w, steps=1500)[1] for w in np.linspace(0.1, 0.9, 5)]
    assert all(f2 < 0.05 or f2 > 0.95 for f2 in finals)
    pf = front()
    assert np.all(np.diff(pf[:, 1]) > 0) and np.all(np.diff(pf[:, 0]) < 0)


@pytest.mark.parametrize(
    "kind, value, target, expected",
    [("equal", 1.0, 0.0, 1.0),      # min (x - 0)^2 s.t. x = 1
     ("at_least", 2.0, 0.0, 2.0),   # min x^2 s.t. x >= 2: active
     ("at_most", 3.0, 1.0, 1.0),    # min (x - 1)^2 s.t. x <= 3: inactive, multiplier -> 0
     ("at_most", -1.0, 1.0, -1.0)], # active from above
)
def test_each_kind_converges_with_adamw_and_a_scheduler(kind, value, target, expected):
    x = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    mdmm = MDMM([Constraint(lambda: x[0], kind=kind, value=value, damping=5.0)]).double()
    opt = torch.optim.AdamW(mdmm.parameter_groups([x], lr=0.05, weight_decay=1e-4))
    assert opt.param_groups[1]["weight_decay"] == 0.0  # multipliers: no decay
    sched = torch.optim.lr_scheduler.StepLR(opt, 1000, gamma=0.3)
    for _ in range(3000):
        result = mdmm(((x - target) ** 2).sum())
        opt.zero_grad()
        result.value.backward()
        opt.step()
        sched.step()
    assert float(x.detach()) == pytest.approx(expected, abs=1e-2)
    if kind == "at_most" and value == 3.0:
        assert abs(mdmm.multipliers()["at_most"]) < 0.05


def test_multiplier_gradient_is_reversed_for_ascent():
    con = Constraint(kind="equal", value=1.0, damping=0.0)
    mdmm = MDMM([con])
    result = mdmm(torch.tensor(0.0), [torch.tensor(0.0)])  # c = eps - g = 1, so L = -lambda
    result.value.backward()
    assert float(con.multiplier.grad) == pytest.approx(1.0)  # -dL/dlambda, stored reversed
    torch.optim.SGD(mdmm.parameters(), lr=0.1).step()  # a plain descent step ...
    assert float(con.multiplier.detach()) == pytest.approx(-0.1)  # ... moved lambda uphill: L = -lambda grew


def test_multipliers_and_slacks_travel_with_checkpoints(tmp_path):
    mdmm = MDMM([Constraint(kind="at_most", value=0.5, name="a"), Constraint(kind="equal", value=1.0, name="b")])
    mdmm(torch.tensor(1.0), [torch.tensor(0.2), torch.tensor(0.0)])
    with torch.no_grad():
        mdmm.constraints[0].multiplier.fill_(0.7)
        mdmm.constraints[1].multiplier.fill_(-1.3)
    save_file(mdmm.state_dict(), tmp_path / "mdmm.safetensors")
    fresh = MDMM([Constraint(kind="at_most", value=0.5, name="a"), Constraint(kind="equal", value=1.0, name="b")])
    fresh.load_state_dict(load_file(tmp_path / "mdmm.safetensors"))
    assert fresh.multipliers() == pytest.approx({"a": 0.7, "b": -1.3})
    assert float(fresh.constraints[0].slack) == pytest.approx(np.sqrt(0.3))
    # the reversal hook survives loading: it lives on the parameter, which load_state_dict fills in place
    fresh(torch.tensor(0.0), [torch.tensor(0.5), torch.tensor(0.0)]).value.backward()
    assert float(fresh.constraints[1].multiplier.grad) == pytest.approx(1.0)


def test_bad_configurations_are_refused():
    with pytest.raises(ConfigurationError, match="scalar"):
        MDMM([Constraint(kind="equal")])(torch.tensor(0.0), [torch.ones(3)])
    with pytest.raises(ConfigurationError, match="kind must be one of"):
        Constraint(kind="below")
    with pytest.raises(ConfigurationError, match="Expected 1 constraint values"):
        MDMM([Constraint()])(torch.tensor(0.0), [torch.tensor(0.0), torch.tensor(1.0)])
    with pytest.raises(ConfigurationError, match="has no fn"):
        MDMM([Constraint(name="r")])(torch.tensor(0.0))
    with pytest.raises(ConfigurationError, match="primary loss must be a scalar"):
        MDMM([Constraint()])(torch.ones(2), [torch.tensor(0.0)])
    with pytest.raises(ConfigurationError, match="damping"):
        Constraint(damping=-1.0)
