"""The study's second PDE: viscous Burgers (``fit burgers1d`` data), level-1 certificates.

Six surrogates of the default ``fit burgers1d`` problem (u_t + u u_x = nu u_xx, nu = 0.01,
periodic on [0, 1], py-pde, seed 0), trained with ``FieldConfig`` defaults (loss, optimiser,
schedule, batch size, steps, seed) on the data grid:

1. ``LipschitzMLP`` on raw (x, t), ``lipschitz=1``, head ``"lipschitz"``;
2. the same with a free last layer; 3. with a trainable output scale (initialised at 1.3 x the
   data's largest slope);
4. ``FeatureLipschitzMLP`` as ``fit burgers1d`` builds it (the default);
5. 4 + a weighted Burgers PINN residual term;
6. an unconstrained ReLU MLP on the same Fourier features.

The certificate is level 1 (against the data's multilinear interpolant u_I; no PDE
assumption): ``lipsurrogate.bounds.certify`` against the interpolant on the data grid (exact
per-cell program, local constants and refinement where the library supports the head, global
constants otherwise);
for the ReLU network the same exact program with its weight-based global constants.
The observed max |f - u_I| is measured on 200000 uniform random points in the data's hull.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from bench_heat2d import FeatureReLU

from lipsurrogate._format import up, up_fixed
from lipsurrogate.bounds import certify, extract_chain
from lipsurrogate.bounds.cells import cell_bounds
from lipsurrogate.bounds.certifier import _errors
from lipsurrogate.bounds.interpolant import MultilinearInterpolant
from lipsurrogate.bounds.network import _chain_partials
from lipsurrogate.data.generators import generate_expression
from lipsurrogate.nn import LipschitzMLP
from lipsurrogate.tasks.field import FieldConfig, _build_model, _grid_points, default_harmonics, field_arrays
from lipsurrogate.train import train
from lipsurrogate.train.pinn import PhysicsTerm, collocation_points, pde_residual

PINN_WEIGHT = 0.1
PINN_BATCH = 1024


def _relu_chain(model: FeatureReLU):
    chain = extract_chain(model.net)
    chain.input_jacobian = model.features.jacobian_bound()
    chain.feature_map = model.features.evaluate_float64
    return chain


def _mean_square_residual(model, domain, nu, n=20_000, seed=2, chunk=4096) -> float:
    pts = collocation_points(domain, n, torch.Generator().manual_seed(seed))
    total = 0.0
    for s in range(0, n, chunk):
        r = pde_residual(model, pts[s:s + chunk], "burgers1d", viscosity=nu)
        total += float((r.detach().double() ** 2).sum())
    return total / n


def run(quick: bool, steps: int | None = None) -> dict:
    """Train and certify every variant; returns the results and the problem's description."""
    overrides = {} if steps is None else {"steps": steps}
    cfg = FieldConfig.quick(**overrides) if quick else FieldConfig(**overrides)
    options = {k: getattr(cfg, k) for k in ("grid", "frames", "t_end") if getattr(cfg, k) is not None}
    ds = generate_expression("burgers1d", seed=cfg.seed, backend=cfg.backend, reference=False, progress=False, **options)
    nu = json.loads(ds.attrs["parameters"])["viscosity"]
    name, inputs, axes, values = field_arrays(ds, None)
    if cfg.harmonics is None:  # as fit burgers1d resolves it (6 for the generated PDEs)
        cfg.harmonics = default_harmonics(len(inputs), cfg.source)
    interp = MultilinearInterpolant(axes, values)
    slopes = interp.global_constants()
    periodic = ds.attrs.get("boundary") == "periodic"
    domain = [[float(a[0]), float(a[-1])] for a in axes]
    x = torch.tensor(_grid_points(axes), dtype=torch.float32)
    y = torch.tensor(values.reshape(-1, 1), dtype=torch.float32)
    u_max = float(np.abs(values).max())
    rng = np.random.default_rng(1)
    box = np.asarray(domain)
    test = box[:, 0] + rng.uniform(size=(20_000 if quick else 200_000, 2)) * (box[:, 1] - box[:, 0])
    u_test = interp(test)
    centre = [float(np.mean(b)) for b in domain]

    def raw(head, **kw):
        return lambda: LipschitzMLP(2, 1, cfg.hidden, lipschitz=1.0, input_offset=centre, head=head, seed=cfg.seed, **kw)

    def feature():
        return _build_model(cfg, axes, slopes, periodic)

    scale_init = cfg.slope_factor * float(slopes.max())
    variants = [
        ("lipschitz", "1. LipschitzMLP raw (x, t), lambda = 1, head lipschitz", raw("lipschitz"), None),
        ("free", "2. LipschitzMLP raw, head free", raw("free"), None),
        ("scale", f"3. LipschitzMLP raw, head scale (init {scale_init:.3g})", raw("scale", output_scale_init=scale_init), None),
        ("feature", "4. FeatureLipschitzMLP (default fit burgers1d)", feature, None),
        ("pinn", f"5. 4 + Burgers PINN residual, weight {PINN_WEIGHT:g}", feature,
         PhysicsTerm("burgers1d", domain, {"viscosity": nu}, PINN_BATCH, weight=PINN_WEIGHT)),
        ("relu", "6. unconstrained ReLU MLP, same Fourier features", lambda: FeatureReLU(feature().features, cfg.hidden, cfg.seed), None),
    ]
    results = {}
    for key, label, make, physics in variants:
        model = make()
        start = time.perf_counter()
        train(model, x, y, "mse", steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
              progress=False, physics=physics)
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            rmse = float(torch.sqrt(torch.mean((model(x) - y) ** 2)))
            f_test = model.double()(torch.from_numpy(test))[:, 0].numpy()
            model.float()
        observed = float(np.abs(f_test - u_test).max())
        residual = _mean_square_residual(model, domain, nu)
        start = time.perf_counter()
        if key == "relu":
            chain = _relu_chain(model)
            lo, hi = _chain_partials(chain, None)
            lip_f = np.maximum(np.abs(lo), np.abs(hi))[0]
            e, margin = _errors(chain, interp, _grid_points(axes))
            glob = cell_bounds(e.reshape(values.shape), axes, lip_f + slopes, margin.reshape(values.shape))
            cert = {"lip_f": lip_f, "global": glob.bound, "headline": glob.bound, "kind": "global"}
        else:
            local = key != "scale"  # local derivative intervals refuse the scale head
            r = certify(model, interp, edges=interp.axes, local_block=cfg.local_block if local else 0,
                        refine_budget=cfg.refine_budget if local else 0)
            cert = {"lip_f": np.asarray(r.document["lipschitz_f"]), "global": r.document["ladder"]["exact_global"],
                    "headline": r.bound, "kind": "refined" if local else "global"}
        results[key] = {"label": label, "seconds": seconds, "rmse": rmse, "observed": observed, "residual": residual,
                        "cert_seconds": time.perf_counter() - start, **cert}
        print("burgers", key, {k: v for k, v in results[key].items() if k != "label"}, flush=True)
    description = (f"burgers1d: py-pde, {len(axes[0])} cells x {len(axes[1])} frames, nu = {nu:g}, seed {cfg.seed}; "
                   f"max abs u = {u_max:.3g}; the data's largest finite-difference slopes (x, t) = "
                   f"{', '.join(f'{v:.3g}' for v in slopes)}; training: {cfg.steps} steps, batch {cfg.batch_size}, "
                   f"lr {cfg.lr:g} (cosine), hidden {cfg.hidden}; certificates on the data grid "
                   f"({len(axes[0]) - 1}x{len(axes[1]) - 1} cells), local_block {cfg.local_block}, refine_budget "
                   f"{cfg.refine_budget}")
    return {"results": results, "order": [v[0] for v in variants], "u_max": u_max, "description": description}


def table(study: dict) -> list[str]:
    """Markdown lines of the Burgers table and its findings."""
    results, u_max = study["results"], study["u_max"]
    lines = [
        "| variant | train s | fit RMSE / max abs u | observed max abs(f - u_I) / max abs u | mean r^2 (measured) "
        "| certified L_f (x, t) | certified bound, global constants / max abs u "
        "| certified bound (headline) / max abs u | tightness | certify s |",
        "|---|---:|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for key in study["order"]:
        r = results[key]
        kind = "refined local" if r["kind"] == "refined" else "global constants only"
        lines.append(
            f"| {r['label']} | {r['seconds']:.0f} | {100 * r['rmse'] / u_max:.2f}% | {100 * r['observed'] / u_max:.2f}% "
            f"| {r['residual']:.3g} | {', '.join(up(v) for v in r['lip_f'])} | {up_fixed(100 * r['global'] / u_max, 2)}% "
            f"| {up(r['headline'])} ({up_fixed(100 * r['headline'] / u_max, 2)}%, {kind}) | {r['headline'] / r['observed']:.2f} "
            f"| {r['cert_seconds']:.0f} |")
    lip = [k for k in study["order"] if k != "relu"]
    best = min(lip, key=lambda k: results[k]["headline"])
    viol = [k for k in study["order"] if results[k]["observed"] > results[k]["headline"]]
    d, p, relu = results["feature"], results["pinn"], results["relu"]
    findings = (
        f"Best certified bound: {results[best]['label'].split('.')[0]} "
        f"({up_fixed(100 * results[best]['headline'] / u_max, 2)}% of max|u|). "
        f"The PINN term {'improved' if p['headline'] < d['headline'] else 'did not improve'} the certified bound "
        f"({up_fixed(100 * p['headline'] / u_max, 2)}% against {up_fixed(100 * d['headline'] / u_max, 2)}%; fit RMSE "
        f"{100 * p['rmse'] / u_max:.2f}% against {100 * d['rmse'] / u_max:.2f}%; measured mean r^2 "
        f"{p['residual']:.3g} against {d['residual']:.3g}). "
        f"The unconstrained network's observed max error is {100 * relu['observed'] / u_max:.2f}% and its certified "
        f"bound {up_fixed(100 * relu['global'] / u_max, 0)}% of max|u|. "
        + ("No observed error exceeded its certified bound." if not viol
           else f"OBSERVED ERROR ABOVE THE CERTIFIED BOUND for {viol}: a bug, investigate.")
    )
    return lines + ["", findings]
