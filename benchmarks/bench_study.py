"""study: can Lipschitz networks approximate PDE solutions accurately AND keep a useful certificate?

Eight surrogates of the default ``fit heat2d`` problem (u_t = kappa Laplace(u) on [0, 2 pi]^2 x
[0, T], periodic, the same py-pde data: grid 64, 51 frames, seed 0), trained with the same loss,
optimiser, schedule, batch size, number of steps and seed (``Heat2DConfig`` defaults):

1. ``LipschitzMLP`` on raw (x, y, t), ``lipschitz=1``, head ``"lipschitz"``: every slope <= 1,
   below the solution's slopes in x and y, so it must underfit;
2. the same trunk with a free last layer (head ``"free"``);
3. the same trunk with a trainable output scale (head ``"scale"``);
4. the same trunk times an auxiliary Lipschitz network (head ``"aux"``);
5. ``FeatureLipschitzMLP``, the current ``fit heat2d`` default (Fourier features, per-input
   slope budgets 1.3 x the solution's certified slopes);
6. 5 + a weighted PINN residual term;
7. 5 + the PINN residual as an MDMM constraint "mean squared residual at most eps", with eps
   set to the residual that run 6 reached (measured), i.e. a penalty and a constraint at the same
   residual level;
8. an unconstrained ReLU MLP on the same Fourier features (``FeatureReLU`` of bench_heat2d.py);
9. ``fit heat2d --model deeponet``: a Lipschitz DeepONet trained on a family of *other* initial
   conditions (``Heat2DConfig`` family settings), specialised to this one and certified like 5.

A second section repeats the question on viscous Burgers (``benchmarks/_study_burgers.py``:
raw-input heads, the feature network, a PINN term and the unconstrained network, level-1
certificates against the data's interpolant).

Reported per variant: training seconds; fit RMSE on the training grid and observed max error
against the closed-form solution on 200000 uniform random points (both measured, relative to
max|u| of the data); the mean squared PDE residual on 20000 fixed random points (measured); the
certified Lipschitz constants of the network (``lipschitz_bounds``); the certified bound on
max|f - u| over the whole box from the exact per-cell program with global constants (every
variant), and the headline certified bound: after local constants (interval propagation) and
adaptive refinement where the library's local machinery supports the model (heads
``"lipschitz"`` and ``"free"`` and the feature networks), else the global-constant bound,
labelled as such. Every certified number comes from the library's certified functions
(``lipschitz_bounds``, ``evaluate_float64``, ``cell_bounds``, ``lipsurrogate.bounds.certify``
against ``HeatSolution``); nothing is estimated.

Usage::

    python benchmarks/bench_study.py [--steps 2500] [--quick] [--out benchmarks/results/study.md]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from _markdown import header, write
from bench_heat2d import FeatureReLU

from lipsurrogate._format import up, up_fixed
from lipsurrogate.bounds import HeatSolution, certify, extract_chain
from lipsurrogate.bounds.cells import cell_bounds
from lipsurrogate.bounds.certifier import _errors, grid_edges
from lipsurrogate.bounds.network import _chain_partials
from lipsurrogate.data.generators import heat2d, heat_modes_of
from lipsurrogate.nn import FeatureLipschitzMLP, LipschitzMLP
from lipsurrogate.tasks.heat2d import Heat2DConfig, _points, _solution_constants
from lipsurrogate.train import train
from lipsurrogate.train.pinn import PhysicsTerm, collocation_points, pde_residual

DEFAULT_OUT = Path(__file__).parent / "results" / "study.md"
PINN_WEIGHT = 1.0
PINN_BATCH = 1024
RESIDUAL_POINTS = 20_000


def _edges(cells, t_end):
    """The certificate grid's vertex coordinates, as ``certify(model, reference, box, cells)`` builds them."""
    return grid_edges([[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, t_end]], cells)


def _feature_relu_chain(model: FeatureReLU):
    """The float64 chain of the unconstrained network, built as ``extract_chain`` does for the
    Lipschitz feature network (features' exact slope bounds + their float64 evaluation)."""
    chain = extract_chain(model.net)
    chain.input_jacobian = model.features.jacobian_bound()
    chain.feature_map = model.features.evaluate_float64
    return chain


def _mean_square_residual(model, domain, kappa, n, seed=2, chunk=4096) -> float:
    """Measured mean r^2 of the heat equation on ``n`` fixed uniform points (float32 model)."""
    gen = torch.Generator().manual_seed(seed)
    pts = collocation_points(domain, n, gen)
    total = 0.0
    for s in range(0, n, chunk):
        r = pde_residual(model, pts[s:s + chunk], "heat2d", kappa=kappa)
        total += float((r.detach().double() ** 2).sum())
    return total / n


def _variants(cfg: Heat2DConfig, lip_u, domain):
    """(key, label, model factory, physics factory) for every variant, in table order.

    ``physics`` factories take the results so far (variant 7's eps comes from variant 6).
    """
    centre = [float(np.pi), float(np.pi), cfg.t_end / 2]
    budget = [cfg.slope_factor * v for v in lip_u]

    def raw(head, **kw):
        # the same trunk for 1-4: raw units (scale 1, inputs centred), lambda = 1, l1-column
        # norms (|d g / d x_j| <= 1 for every input), GroupSort(2), the default's widths
        return lambda: LipschitzMLP(3, 1, cfg.hidden, lipschitz=1.0, input_offset=centre, head=head,
                                    seed=cfg.seed, **kw)

    def feature():
        return FeatureLipschitzMLP(
            3, 1, cfg.hidden, periods=[2 * np.pi, 2 * np.pi, None], harmonics=cfg.harmonics,
            offset=[0.0, 0.0, cfg.t_end / 2], scale=[1.0, 1.0, 2.0 / cfg.t_end],
            input_budget=budget, lipschitz=cfg.lipschitz, seed=cfg.seed)

    def relu():
        return FeatureReLU(feature().features, cfg.hidden, cfg.seed)

    def weighted(_results):
        return PhysicsTerm("heat2d", domain, {"kappa": cfg.diffusivity}, PINN_BATCH, weight=PINN_WEIGHT)

    def constrained(results):
        eps = results["pinn_weighted"]["residual"]
        return PhysicsTerm("heat2d", domain, {"kappa": cfg.diffusivity}, PINN_BATCH, at_most=eps)

    scale_init = max(budget)
    return [
        ("lipschitz", "1. LipschitzMLP raw (x, y, t), lambda = 1, head lipschitz", raw("lipschitz"), None),
        ("free", "2. LipschitzMLP raw, head free (last layer unconstrained)", raw("free"), None),
        ("scale", f"3. LipschitzMLP raw, head scale (trainable s, init {scale_init:.2f})",
         raw("scale", output_scale_init=scale_init), None),
        ("aux", "4. LipschitzMLP raw, head aux (g x h, h: 2 x 32, lambda_h = 1)", raw("aux"), None),
        ("feature", "5. FeatureLipschitzMLP (default fit heat2d)", feature, None),
        ("pinn_weighted", f"6. 5 + PINN residual, weight {PINN_WEIGHT:g}", feature, weighted),
        ("pinn_mdmm", "7. 5 + PINN residual as MDMM constraint (eps = run 6's residual)", feature, constrained),
        ("relu", "8. unconstrained ReLU MLP, same Fourier features", relu, None),
        ("deeponet", f"9. Lipschitz DeepONet, {cfg.family_samples - max(1, cfg.family_samples // 10)} other initial "
                     "conditions, specialised", None, None),
    ]


def _deeponet(cfg: Heat2DConfig, lip_u, modes):
    """Variant 9: the operator of ``fit heat2d --model deeponet``, specialised to this initial condition."""
    import tempfile

    from lipsurrogate.tasks._deeponet import sensor_values, train_operator

    with tempfile.TemporaryDirectory() as tmp:
        net, stats = train_operator(cfg, lip_u, Path(tmp), progress=False)
    return net.specialise(sensor_values(modes, cfg.sensor_grid)), stats


def _certify(model, key, modes, cfg, lip_u, domain):
    """Certified constants and bounds of one trained model; returns a dict of results."""
    reference = HeatSolution(modes, cfg.diffusivity)
    if isinstance(model, FeatureReLU):
        chain = _feature_relu_chain(model)
        lo, hi = _chain_partials(chain, None)
        lip_f = np.maximum(np.abs(lo), np.abs(hi))[0]
        edges = _edges(cfg.cert_cells, cfg.t_end)
        X, Y, T = np.meshgrid(*edges, indexing="ij")
        pts = np.stack([X.ravel(), Y.ravel(), T.ravel()], axis=1)
        e, margin = _errors(chain, reference, pts)
        glob = cell_bounds(e.reshape(X.shape), edges, lip_f + np.asarray(lip_u), margin.reshape(X.shape))
        return {"lip_f": lip_f, "global": glob.bound, "headline": glob.bound, "kind": "global",
                "lh2": 0.5 * (lip_f[0] + lip_f[1]) * 2 * np.pi / cfg.cert_cells[0]}
    # certify takes L_f from lipschitz_bounds(model, domain=box) (the box only matters for the aux
    # head) and L_u = HeatSolution's maximum-principle constants, the lip_u of _solution_constants
    local = key not in ("scale", "aux")  # network_derivative_intervals refuses scale/aux heads
    cert = certify(model, reference, domain, cfg.cert_cells,
                   local_block=cfg.local_block if local else 0, refine_budget=cfg.refine_budget if local else 0)
    doc = cert.document
    return {"lip_f": np.asarray(doc["lipschitz_f"]), "global": doc["ladder"]["exact_global"],
            "headline": cert.bound, "kind": "refined" if local else "global", "cert_detail": doc["seconds"]}


def _findings(results, order, u_max, lip_u) -> str:
    def rel(v):  # measured values
        return f"{100 * v / u_max:.2f}%"

    def bound(v):  # certified values, rounded up
        return f"{up_fixed(100 * v / u_max, 2)}%"

    def num(k):
        return results[k]["label"].split(".")[0]

    lip = [k for k in order if k != "relu"]
    best = min(lip, key=lambda k: results[k]["headline"])
    best_global = min(lip, key=lambda k: results[k]["global"])
    best_obs = min(order, key=lambda k: results[k]["observed"])
    best_raw = min(["lipschitz", "free", "scale", "aux"], key=lambda k: results[k]["headline"])
    default = results["feature"]
    out = [f"Best certified bound: variant {num(best)}, {bound(results[best]['headline'])} of max|u| "
           f"({'refined local' if results[best]['kind'] == 'refined' else 'global constants'})."]
    if best == "feature":
        out.append("No variant beats the current default (variant 5) on the certified bound in this run.")
    else:
        out.append(f"It beats the current default (variant 5, {bound(default['headline'])}).")
    if best_global == "feature":
        out.append(f"The default is also best with global constants only (the level every variant gets): "
                   f"{bound(default['global'])}.")
    else:
        out.append(f"With global constants only (the level every variant gets) the best is variant "
                   f"{num(best_global)} ({bound(results[best_global]['global'])}); the default gets "
                   f"{bound(default['global'])}.")
    r = results[best_raw]
    out.append(f"Of the networks on raw (x, y, t) (variants 1-4) the best certified bound is variant {num(best_raw)}'s, "
               f"{bound(r['headline'])}, {r['headline'] / default['headline']:.1f} times the default's, with observed max "
               f"error {rel(r['observed'])} against the default's {rel(default['observed'])}.")
    one = results["lipschitz"]
    out.append(f"The literal 1-Lipschitz network (variant 1; certified slopes at most "
               f"{max(one['lip_f']):.3g}; the solution's certified slope bounds reach {max(lip_u):.3g}) underfits: fit RMSE {rel(one['rmse'])}, "
               f"observed max error {rel(one['observed'])}, certified bound {bound(one['headline'])}.")
    if results["free"]["rmse"] == one["rmse"]:
        out.append("Variants 1 and 2 trained to the same network: no last-layer weight of the free head "
                   "grew beyond 1, where the l1-column constraint would have started to act.")
    w, m = results["pinn_weighted"], results["pinn_mdmm"]
    pinn_better = [num(k) for k in ("pinn_weighted", "pinn_mdmm") if results[k]["headline"] < default["headline"]]
    out.append(
        f"The PINN term {'improved the certified bound for variant(s) ' + ', '.join(pinn_better) if pinn_better else 'did not improve the certified bound'}: "
        f"weighted {bound(w['headline'])}, MDMM {bound(m['headline'])}, without it {bound(default['headline'])}; "
        f"fit RMSE {rel(w['rmse'])} and {rel(m['rmse'])} against {rel(default['rmse'])}. The measured mean r^2 "
        f"was {default['residual']:.3g} without the term, {w['residual']:.3g} weighted and {m['residual']:.3g} with "
        f"MDMM (eps {m['eps']:.3g}; " + ("met" if m["residual"] <= m["eps"] else "not met") +
        " on the measurement points).")
    don = results["deeponet"]
    out.append(f"The DeepONet (variant 9), which never saw this initial condition, reaches observed max error "
               f"{rel(don['observed'])} and a certified bound of {bound(don['headline'])} (the default, trained on this "
               f"initial condition: {rel(default['observed'])} and {bound(default['headline'])}); its operator RMSE on "
               f"held-out family members is {100 * don['operator']['held_out_relative_rmse']:.2f}% of their RMS.")
    if best_obs != "relu":
        out.append(f"Smallest observed max error: variant {num(best_obs)} ({rel(results[best_obs]['observed'])}).")
    relu = results["relu"]
    out.append(f"The unconstrained network has the smallest observed max error ({rel(relu['observed'])}, "
               f"the default {rel(default['observed'])}) " if best_obs == "relu" else "The unconstrained network ")
    out[-1] += (f"but its certified bound is {bound(relu['global'])} of max|u|: no useful certificate.")
    viol = [num(k) for k in order if results[k]["observed"] > results[k]["headline"]]
    out.append("No observed error exceeded its certified bound." if not viol
               else f"OBSERVED ERROR ABOVE THE CERTIFIED BOUND for variants {viol}: a bug, investigate.")
    out.append("One seed and one run per variant: run-to-run variation is not measured here.")
    return " ".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: Heat2DConfig's)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: Heat2DConfig.quick() (small data, 300 steps, 32x32x8 certificate grid)")
    parser.add_argument("--only", default=None, help="comma-separated variant keys to run (debugging)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    overrides = {} if args.steps is None else {"steps": args.steps}
    cfg = Heat2DConfig.quick(**overrides) if args.quick else Heat2DConfig(**overrides)
    n_test = 20_000 if args.quick else 200_000
    n_res = 2_000 if args.quick else RESIDUAL_POINTS

    ds = heat2d(grid=cfg.grid, t_end=cfg.t_end, frames=cfg.frames, diffusivity=cfg.diffusivity,
                n_modes=cfg.n_modes, k_max=cfg.k_max, amplitude=cfg.amplitude, seed=cfg.seed, progress=False)
    modes = heat_modes_of(ds)
    kappa = cfg.diffusivity
    lip_u = _solution_constants(modes, kappa)["values"]
    domain = [[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, cfg.t_end]]
    x = torch.tensor(_points(ds), dtype=torch.float32)
    y = torch.tensor(ds.u.values.reshape(-1, 1), dtype=torch.float32)
    rng = np.random.default_rng(1)
    test = rng.uniform([0, 0, 0], [2 * np.pi, 2 * np.pi, cfg.t_end], size=(n_test, 3))
    u_test = modes.solution(test[:, 0], test[:, 1], test[:, 2], kappa)
    u_max = float(np.abs(ds.u.values).max())

    variants = _variants(cfg, lip_u, domain)
    if args.only:
        keep = set(args.only.split(","))
        if "pinn_mdmm" in keep:
            keep.add("pinn_weighted")
        variants = [v for v in variants if v[0] in keep]
    results: dict = {}
    for key, label, make_model, make_physics in variants:
        physics = make_physics(results) if make_physics is not None else None
        if key == "deeponet":
            model, operator = _deeponet(cfg, lip_u, modes)
            seconds = operator["training_seconds"]
        else:
            model = make_model()
            start = time.perf_counter()
            train(model, x, y, "mse", steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                  progress=False, physics=physics)
            seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            rmse = float(torch.sqrt(torch.mean((model(x) - y) ** 2)))
            f_test = torch.cat([model.double()(torch.from_numpy(test[s:s + 65536]))[:, 0]
                                for s in range(0, n_test, 65536)]).numpy()
            model.float()
        observed = float(np.abs(f_test - u_test).max())
        residual = _mean_square_residual(model, domain, kappa, n_res)
        start = time.perf_counter()
        cert = _certify(model, key, modes, cfg, lip_u, domain)
        cert_seconds = time.perf_counter() - start
        results[key] = {"label": label, "seconds": seconds, "rmse": rmse, "observed": observed,
                        "residual": residual, "cert_seconds": cert_seconds,
                        "eps": None if physics is None else physics.at_most, **cert}
        if key == "scale":
            results[key]["scale"] = float(model.output_scale.detach()[0])
        if key == "deeponet":
            results[key]["operator"] = operator
        if key == "free":
            results[key]["last_max"] = float(model.linears[-1].weight.detach().abs().max())
        print(key, {k: v for k, v in results[key].items() if k != "label"}, flush=True)

    lines = [
        "| variant | train s | fit RMSE / max abs u | observed max error / max abs u | mean r^2 (measured) "
        "| certified L_f (x, y, t) | certified bound, global constants / max abs u "
        "| certified bound (headline) / max abs u | tightness (headline / observed) | certify s |",
        "|---|---:|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for key, *_ in variants:
        r = results[key]
        lf = ", ".join(up(v) for v in r["lip_f"])
        if key == "relu":
            head = (f"none useful: {up_fixed(100 * r['global'] / u_max, 0)}% (global constants; "
                    f"L h/2 alone is {100 * r['lh2'] / u_max:.0f}%)")
        else:
            head = f"{up(r['headline'])} ({up_fixed(100 * r['headline'] / u_max, 2)}%, " + (
                "refined local" if r["kind"] == "refined" else "global constants only") + ")"
        lines.append(
            f"| {r['label']} | {r['seconds']:.0f} | {100 * r['rmse'] / u_max:.2f}% | {100 * r['observed'] / u_max:.2f}% "
            f"| {r['residual']:.3g} | {lf} | {up_fixed(100 * r['global'] / u_max, 2)}% | {head} "
            f"| {r['headline'] / r['observed']:.2f} | {r['cert_seconds']:.0f} |")

    cells = "x".join(map(str, cfg.cert_cells))
    notes = [
        f"data: py-pde heat2d, grid {cfg.grid}, {cfg.frames} frames, T = {cfg.t_end}, kappa = {kappa}, "
        f"seed {cfg.seed}; max abs u = {u_max:.4g}; certified slopes of the solution (x, y, t) = "
        + ", ".join(f"{v:.3g}" for v in lip_u),
        f"training (all variants): {cfg.steps} steps, batch {cfg.batch_size}, lr {cfg.lr} (cosine), Adam, MSE, "
        f"seed {cfg.seed}; hidden widths {cfg.hidden}",
        "variants 1-4 share one trunk: LipschitzMLP on raw (x, y, t) centred at the domain centre "
        "(input_scale 1), lambda = 1, l1-column norms (each |d g / d x_j| <= 1), GroupSort(2). Variant 1 "
        "is therefore literally 1-Lipschitz per input. Variant 2: hidden layers share lambda = 1, the last "
        "layer is free. Variant 3: the trainable output scale starts at 1.3 x the largest certified slope "
        "of the solution (the default model's largest budget), because Adam moves a scalar by at most "
        f"lr x sum of the schedule = {cfg.lr * sum(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / cfg.steps)) for i in range(cfg.steps)):.2g} "
        "over the run, too little from the library default 1. Variant 4: library defaults "
        "(auxiliary network 2 x 32, lambda_h = 1, h starts at 1); its certificate uses "
        "lipschitz_bounds(model, domain=[0, 2 pi]^2 x [0, T]) (product rule with sup|g|, sup|h| on the box)",
        f"variants 5-7: FeatureLipschitzMLP exactly as fit heat2d builds it (harmonics {cfg.harmonics}, "
        f"slope budgets {cfg.slope_factor} x the solution's). Variant 6 adds {PINN_WEIGHT:g} x mean r^2 on "
        f"{PINN_BATCH} fresh uniform collocation points per step (r = u_t - kappa Laplace(u)); variant 7 "
        f"trains the constraint mean r^2 <= eps with MDMM (damping 10), eps = "
        + (f"{results['pinn_mdmm']['eps']:.3g}" if "pinn_mdmm" in results else "n/a")
        + " = variant 6's measured mean r^2. PINN steps cost more (second derivatives)",
        "variant 8: FeatureReLU of bench_heat2d.py (same features, unconstrained ReLU MLP); its L_f is the "
        "certified weight-norm bound (lipsurrogate.bounds.network._chain_partials, min over l1/l2/l-inf "
        "products, through the features' exact slope bounds) and its bound the same exact per-cell program "
        "with those global constants",
        f"observed max error: {n_test} uniform random points against the closed-form solution (measured); "
        f"mean r^2: {n_res} fixed uniform points, autograd (measured; for GroupSort networks on raw inputs "
        "the second derivatives vanish almost everywhere, so r = u_t there)",
        f"certified bounds on {cells} cells, exact per-cell LP with certified float64 rounding margins. "
        f"'global constants': L_f + L_u on every cell. 'refined local': lipsurrogate.bounds.certify(model, "
        f"HeatSolution(modes, kappa), box, cells, local_block={cfg.local_block}, "
        f"refine_budget={cfg.refine_budget}).bound (interval-propagated per-cell "
        "constants, adaptive refinement), available for heads lipschitz/free and the feature networks; "
        "the library's local derivative intervals refuse the scale and aux heads, so 3 and 4 get global "
        "constants only",
        "variant 9: train s is the operator's training on the family (data generation excluded); its fit RMSE is "
        "measured on this initial condition's grid, which the operator never saw",
        "seconds are wall-clock on a 2-core machine that may be shared with other work; the PINN steps "
        "include the collocation batch's second derivatives",
    ]
    if "scale" in results:
        notes.append(f"variant 3's learned output scale: {results['scale']['scale']:.3g}")
    if "free" in results:
        notes.append("variant 2's free last layer: largest |weight| "
                     f"{results['free']['last_max']:.3g} (with l1-column norms a constrained 1 x n last layer "
                     "only caps each entry at 1, so a free last layer differs from variant 1 only once "
                     "an entry exceeds 1)")
    text = "\n".join([
        *header("study: accuracy and certificates of Lipschitz surrogates (heat2d)", notes),
        *lines,
        "",
        "## Findings",
        "",
        _findings(results, [v[0] for v in variants], u_max, lip_u) if len(results) == 9 else "(partial run: no findings)",
        "",
    ])
    if not args.only:
        import _study_burgers

        burgers = _study_burgers.run(args.quick, args.steps)
        text += "\n".join(["", "## Second PDE: viscous Burgers (level-1 certificates)", "",
                           _study_burgers.__doc__.split("\n\n", 1)[1].strip(), "",
                           f"- {burgers['description']}", "", *_study_burgers.table(burgers), ""])
    print(text)
    write(args.out, text)


if __name__ == "__main__":
    main()
