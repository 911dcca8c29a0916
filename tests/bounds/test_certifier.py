"""The one certifier: any supported network against any reference, checked by independent sampling."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import lipsurrogate
from lipsurrogate.bounds import Certificate, FunctionReference, MultilinearInterpolant, certify, verify
from lipsurrogate.bounds.cells import locate_cells
from lipsurrogate.exceptions import CertificationError, ConfigurationError
from lipsurrogate.nn import GroupSort

BOX = np.array([[0.0, 2.0], [-1.0, 1.0]])


def _u(x):
    return np.sin(2 * x[:, 0]) * np.cos(x[:, 1]) + 0.3 * x[:, 0]


def _u_torch(x):
    return torch.sin(2 * x[:, 0]) * torch.cos(x[:, 1]) + 0.3 * x[:, 0]


# |d_x u| <= 2 + 0.3 and |d_y u| <= 1 everywhere: true constants, stated as the user would
REFERENCE = FunctionReference(_u, [2.3, 1.0], inputs=["x", "y"], torch_fn=_u_torch,
                              description="sin(2x) cos(y) + 0.3 x", source="by hand: |2 cos| + 0.3 and |sin|")


def _trained_sequential(activation: nn.Module, seed: int = 0, steps: int = 300) -> nn.Sequential:
    """A plain torch network 'trained elsewhere' (an ordinary MLP, no Lipschitz constraint)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 32), activation, nn.Linear(32, 32), activation, nn.Linear(32, 1))
    rng = np.random.default_rng(seed)
    x = rng.uniform(BOX[:, 0], BOX[:, 1], size=(2048, 2))
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(_u(x)[:, None], dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(xt) - yt) ** 2).mean()
        loss.backward()
        opt.step()
    return net.eval()


def _sampled_errors(net, points):
    with torch.no_grad():
        f = net.double()(torch.from_numpy(points))[:, 0].numpy()
    net.float()
    return np.abs(f - _u(points))


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.Tanh(), GroupSort(2)], ids=["relu", "tanh", "groupsort"])
def test_a_users_sequential_is_certified_and_the_bound_holds_everywhere(activation, rng):
    net = _trained_sequential(activation)
    cert = certify(net, REFERENCE, BOX, cells=24, refine_budget=2000)
    ladder = cert.document["ladder"]
    assert ladder["refined"] <= ladder["exact_local"] <= ladder["exact_global"] <= ladder["naive_global"]
    assert cert.inputs == ["x", "y"] and cert.bound == ladder["refined"]
    assert any("user's assumption" in a for a in cert.document["assumptions"])
    points = rng.uniform(BOX[:, 0], BOX[:, 1], size=(200_000, 2))
    errors = _sampled_errors(net, points)
    assert errors.max() <= cert.bound
    per_point = cert.cells.per_cell[locate_cells(points, cert.cells.edges)]
    assert np.all(errors <= per_point)
    check = verify(cert, net, REFERENCE, density=2, dense_cells=100, random_points=20_000, adversarial_starts=8,
                   adversarial_steps=20)
    assert check.violations == 0 and 1.0 <= check.tightness < 10


def test_a_shrunk_certificate_is_caught_by_verification():
    net = _trained_sequential(nn.ReLU())
    cert = certify(net, REFERENCE, BOX, cells=16)
    sampling = dict(density=2, dense_cells=60, random_points=20_000, adversarial_starts=8, adversarial_steps=20)
    honest = verify(cert, net, REFERENCE, **sampling)
    factor = 0.9 * honest.max_error_observed / cert.bound  # every cell bound below the observed max
    shrunk = Certificate(dataclasses.replace(cert.cells, per_cell=cert.cells.per_cell * factor), cert.vertex_errors,
                         {**cert.document, "bound": cert.bound * factor})
    check = verify(shrunk, net, REFERENCE, **sampling)
    assert honest.violations == 0 and check.violations > 0


def test_layers_that_cannot_be_certified_are_named():
    net = nn.Sequential(nn.Linear(2, 8), nn.Softplus(), nn.Linear(8, 1))
    with pytest.raises(CertificationError, match=r"layer 1 \(Softplus\)"):
        certify(net, REFERENCE, BOX, cells=4)
    with pytest.raises(CertificationError, match="single-output"):
        certify(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), REFERENCE, BOX, cells=4)
    with pytest.raises(ConfigurationError, match="3 inputs"):
        certify(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)), REFERENCE, np.zeros((3, 2)) + [0, 1])


def test_constants_that_the_data_contradict_are_refused():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        net[2].weight.mul_(1e-3)  # an almost constant network: L_f ~ 1e-3, so e varies like u
    wrong = FunctionReference(_u, [0.0, 0.0])
    with pytest.raises(CertificationError, match="Consistency check failed"):
        certify(net, wrong, BOX, cells=8, local_block=0)


def test_a_certificate_round_trips_through_a_run_folder(tmp_path):
    net = _trained_sequential(nn.Tanh(), steps=50)
    cert = certify(net, REFERENCE, BOX, cells=(8, 6), refine_budget=200)
    cert.save(tmp_path)
    back = Certificate.load(tmp_path)
    assert back.bound == cert.bound and back.inputs == cert.inputs
    assert np.array_equal(back.cells.per_cell, cert.cells.per_cell)
    assert np.array_equal(back.vertex_errors, cert.vertex_errors)
    assert np.allclose(back.box, BOX)


@pytest.mark.parametrize("d", [1, 2, 4])
def test_networks_are_certified_against_data_interpolants_in_any_dimension(d, rng):
    axes = [np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 5 if d < 4 else 2)])) for _ in range(d)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    data = np.sin(mesh.sum(-1) * 2.0) + mesh[..., 0] ** 2
    interp = MultilinearInterpolant(axes, data, [f"a{k}" for k in range(d)])
    torch.manual_seed(d)
    net = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    cert = certify(net, interp, cells=6 if d < 4 else 3, refine_budget=500)
    assert cert.document["level"].startswith("level 1")
    points = rng.uniform(0, 1, size=(50_000, d))
    with torch.no_grad():
        f = net(torch.from_numpy(points))[:, 0].numpy()
    assert np.abs(f - interp(points)).max() <= cert.bound


def test_top_level_api_exposes_the_certifier():
    assert lipsurrogate.certify is certify and lipsurrogate.verify is verify
    assert lipsurrogate.FunctionReference is FunctionReference
    for name in ["certify", "verify", "fit_field", "export_run", "HeatSolution", "MultilinearInterpolant"]:
        assert getattr(lipsurrogate, name).__doc__


def test_every_slope_method_is_certified_and_both_is_the_tightest(rng):
    """The four slope methods on one network: all hold at sampled points; 'both' intersects affine and interval."""
    from lipsurrogate.nn import FeatureLipschitzMLP
    from lipsurrogate.bounds import HeatSolution
    from lipsurrogate.data.heat import random_periodic_modes

    modes = random_periodic_modes(rng, n_modes=3, k_max=2)
    ref = HeatSolution(modes, 0.05)
    model = FeatureLipschitzMLP(3, 1, (32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[6, 6, 2], seed=5)
    box = [[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]]
    certs = {m: certify(model, ref, box, [16, 16, 4], slopes=m, tighten="all")
             for m in ("symmetric", "interval", "affine", "both")}
    auto = certify(model, ref, box, [16, 16, 4], tighten="all")  # the default takes the intersection
    pts = rng.uniform([0, 0, 0], [2 * np.pi, 2 * np.pi, 1.0], size=(5000, 3))
    with torch.no_grad():
        err = np.abs(model.double()(torch.from_numpy(pts))[:, 0].numpy() - ref.values(pts)[0])
    for cert in certs.values():
        assert np.all(err <= cert.cells.per_cell[locate_cells(pts, cert.cells.edges)])
    both = certs["both"].cells.per_cell
    assert np.all(both <= certs["affine"].cells.per_cell * (1 + 1e-9))
    assert np.all(both <= certs["interval"].cells.per_cell * (1 + 1e-9))
    assert np.all(certs["interval"].cells.per_cell <= certs["symmetric"].cells.per_cell * (1 + 1e-9))
    np.testing.assert_array_equal(auto.cells.per_cell, both)
    with pytest.raises(ConfigurationError, match="slopes"):
        certify(model, ref, box, 4, slopes="zonotope")


def test_blocks_per_axis_are_certified_and_smaller_blocks_are_tighter(rng):
    """``local_block`` per axis: every block shape holds at sampled points; single cells in the
    Fourier axes beat blocks of two there (fewer undecided GroupSort pairs), and bad shapes are refused."""
    from lipsurrogate.nn import FeatureLipschitzMLP
    from lipsurrogate.bounds import HeatSolution
    from lipsurrogate.data.heat import random_periodic_modes

    modes = random_periodic_modes(rng, n_modes=3, k_max=2)
    ref = HeatSolution(modes, 0.05)
    model = FeatureLipschitzMLP(3, 1, (32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[6, 6, 2], seed=5)
    box = [[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]]
    certs = {shape: certify(model, ref, box, [16, 16, 8], local_block=shape, slopes="affine")
             for shape in ((2, 2, 2), (1, 1, 4), (1, 1, 1))}
    assert certs[(1, 1, 4)].document["blocks"] == [1, 1, 4]
    pts = rng.uniform([0, 0, 0], [2 * np.pi, 2 * np.pi, 1.0], size=(5000, 3))
    with torch.no_grad():
        err = np.abs(copy.deepcopy(model).double()(torch.from_numpy(pts))[:, 0].numpy() - ref.values(pts)[0])
    for cert in certs.values():
        assert np.all(err <= cert.cells.per_cell[locate_cells(pts, cert.cells.edges)])
    per_cell = {shape: np.median(c.cells.per_cell) for shape, c in certs.items()}
    assert per_cell[(1, 1, 1)] <= per_cell[(1, 1, 4)] < per_cell[(2, 2, 2)]
    # one number is every axis; a list of one number too
    np.testing.assert_array_equal(certify(model, ref, box, [16, 16, 8], local_block=[2], slopes="affine").cells.per_cell,
                                  certs[(2, 2, 2)].cells.per_cell)
    for bad in ((1, 2), (1, 0, 1), -1, (1, 1, 2.5)):
        with pytest.raises(ConfigurationError, match="local_block"):
            certify(model, ref, box, [16, 16, 8], local_block=bad)


def test_refinement_without_the_childrens_own_slopes_is_certified_and_says_so(rng, monkeypatch):
    """``refine_slopes=False``: no slope range is computed during refinement (each child keeps its
    cell's), the refined bound still holds at sampled points, never below the sampled maximum, and
    the certificate states which way it went."""
    import lipsurrogate.bounds.certifier as certifier_module

    net = _trained_sequential(GroupSort(2))
    calls = []
    original = certifier_module._error_slopes

    def counted(*args, **kwargs):
        calls.append(len(args[2]))
        return original(*args, **kwargs)

    monkeypatch.setattr(certifier_module, "_error_slopes", counted)
    own = certify(net, REFERENCE, BOX, cells=24, refine_budget=4000)
    n_own = len(calls)
    kept = certify(net, REFERENCE, BOX, cells=24, refine_budget=4000, refine_slopes=False)
    assert len(calls) - n_own < n_own  # the children's calls are gone: only the blocks' remain
    assert kept.document["refinement"]["evaluations"] > 0 and kept.bound < kept.document["ladder"]["exact_local"]
    assert "keeps its cell's" in kept.document["refinement_slopes"]
    assert "own" in own.document["refinement_slopes"]
    points = rng.uniform(BOX[:, 0], BOX[:, 1], size=(100_000, 2))
    errors = _sampled_errors(net, points)
    assert np.all(errors <= kept.cells.per_cell[locate_cells(points, kept.cells.edges)])


def test_networks_without_local_slope_bounds_are_certified_with_global_constants(rng):
    """A trainable output scale is outside what the slope propagations support: the certifier says so
    (without computing anything to find out) and certifies with the global constants alone."""
    from lipsurrogate.bounds.local import check_interval_support, network_derivative_intervals
    from lipsurrogate.nn import LipschitzMLP

    net = LipschitzMLP(2, 1, (16, 16), lipschitz=3.0, head="scale", seed=0)
    with pytest.raises(CertificationError, match="scale/aux/residual"):
        check_interval_support(net)
    with pytest.raises(CertificationError, match="scale/aux/residual"):
        network_derivative_intervals(net, BOX[None, :, 0], BOX[None, :, 1])
    cert = certify(net, REFERENCE, BOX, cells=12, local_block=2)
    assert cert.document["local_constants"].startswith("unavailable for this network")
    assert cert.bound == cert.document["bound_global_constants"]
    x = rng.uniform(BOX[:, 0], BOX[:, 1], size=(4000, 2))
    assert np.all(_sampled_errors(net, x) <= cert.bound)
