"""heat2d: the certified Lipschitz surrogate against an unconstrained MLP trained the same way.

Both networks see the same inputs (the Fourier features of (x, y) up to the same harmonic, and
t), have the same widths (4 x 128), and are trained with the same loss, optimiser, schedule,
batch size, number of steps and seed on the same py-pde data. Reported per model: training
time, fit RMSE on the training grid, observed max error against the exact solution on random
points (measured), and the certified bound (for the Lipschitz network
:func:`lipsurrogate.bounds.certify` against :class:`~lipsurrogate.bounds.HeatSolution` on
``cert_cells`` with local constants and refinement, as ``fit heat2d``; for the unconstrained
network the product of layer norms, which is what any weight-based certificate of it would have
to use).

Usage::

    python benchmarks/bench_heat2d.py [--steps 2500] [--out benchmarks/results/heat2d.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _markdown import header, write

from lipsurrogate.bounds import HeatSolution, certify
from lipsurrogate.data.generators import heat2d, heat_modes_of
from lipsurrogate.nn import FeatureLipschitzMLP, unconstrained_mlp
from lipsurrogate.tasks.heat2d import Heat2DConfig, _points, _solution_constants
from lipsurrogate.train import train

DEFAULT_OUT = Path(__file__).parent / "results" / "heat2d.md"


class FeatureReLU(nn.Module):
    """The same Fourier features followed by an unconstrained ReLU MLP."""

    def __init__(self, features: nn.Module, hidden, seed: int) -> None:
        super().__init__()
        self.features = features
        self.net = unconstrained_mlp(features.out_features, 1, hidden, seed=seed)

    def forward(self, x):
        return self.net(self.features(x))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    cfg = Heat2DConfig(**({} if args.steps is None else {"steps": args.steps}))
    ds = heat2d(grid=cfg.grid, t_end=cfg.t_end, frames=cfg.frames, diffusivity=cfg.diffusivity,
                n_modes=cfg.n_modes, k_max=cfg.k_max, seed=cfg.seed, progress=False)
    modes = heat_modes_of(ds)
    lip_u = _solution_constants(modes, cfg.diffusivity)["values"]
    lip_model = FeatureLipschitzMLP(
        3, 1, cfg.hidden, periods=[2 * np.pi, 2 * np.pi, None], harmonics=cfg.harmonics,
        offset=[0.0, 0.0, cfg.t_end / 2], scale=[1.0, 1.0, 2.0 / cfg.t_end],
        input_budget=[cfg.slope_factor * v for v in lip_u], lipschitz=cfg.lipschitz, seed=cfg.seed)
    free_model = FeatureReLU(lip_model.features, cfg.hidden, cfg.seed)
    x = torch.tensor(_points(ds), dtype=torch.float32)
    y = torch.tensor(ds.u.values.reshape(-1, 1), dtype=torch.float32)
    rng = np.random.default_rng(1)
    test = rng.uniform([0, 0, 0], [2 * np.pi, 2 * np.pi, cfg.t_end], size=(200_000, 3))
    u_test = modes.solution(test[:, 0], test[:, 1], test[:, 2], cfg.diffusivity)
    u_max = float(np.abs(ds.u.values).max())
    rows = []
    for name, model in [("Lipschitz (FeatureLipschitzMLP, default fit heat2d)", lip_model),
                        ("unconstrained ReLU MLP, same features and size", free_model)]:
        start = time.perf_counter()
        train(model, x, y, "mse", steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=False)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            rmse = float(torch.sqrt(torch.mean((model(x) - y) ** 2)))
            f_test = model.double()(torch.from_numpy(test))[:, 0].numpy()
            model.float()
        observed = float(np.abs(f_test - u_test).max())
        if isinstance(model, FeatureLipschitzMLP):
            domain = [[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, cfg.t_end]]
            cert = certify(model, HeatSolution(modes, cfg.diffusivity), domain, cfg.cert_cells,
                           local_block=cfg.local_block, refine_budget=cfg.refine_budget)
            bound = f"{cert.bound:.3g} ({100 * cert.bound / u_max:.1f}%)"
        else:
            # weight-norm product through the features: |W_1| J then l-inf row norms
            w = [m.weight.detach().double().numpy() for m in model.net if isinstance(m, nn.Linear)]
            jac = model.features.jacobian_bound()
            first = np.abs(w[0]) @ jac
            prod = np.prod([np.abs(m).sum(1).max() for m in w[1:]])
            lx = first.max(0) * prod
            bound = f"none useful (L_f per input {np.array2string(lx, precision=0)}: L h/2 alone is {0.5 * (lx[0] + lx[1]) * 2 * np.pi / cfg.cert_cells[0] / u_max * 100:.0f}% of max abs u)"
        rows.append((name, seconds, rmse / u_max, observed / u_max, bound))
        print(rows[-1], flush=True)
    lines = ["| model | train s | fit RMSE / max abs u | observed max error / max abs u | certified bound (128x128x32 cells) |",
             "|---|---:|---:|---:|---|"]
    for name, sec, rmse, obs, bound in rows:
        lines.append(f"| {name} | {sec:.0f} | {100 * rmse:.2f}% | {100 * obs:.2f}% | {bound} |")
    text = "\n".join([
        *header("heat2d: Lipschitz surrogate vs unconstrained MLP", [
            f"{cfg.steps} steps, batch {cfg.batch_size}, lr {cfg.lr} (cosine), seed {cfg.seed}; observed max "
            "error on 200000 uniform random points against the closed form",
        ]),
        *lines,
        "",
    ])
    print(text)
    write(args.out, text)


if __name__ == "__main__":
    main()
