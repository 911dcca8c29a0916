"""The pair-stability penalty and the refinement budget on heat2d-kappa (issue 16).

Trains the default ``fit heat2d-kappa`` network (seed 0) twice, without and with the penalty of
``lipsurrogate.train.stability`` (``--stability 0`` and the default), then certifies each network
with the task's certifier at two refinement budgets (the run's own certificate, then the other
budget recomputed on the same weights). Reported per row: the certified bound (% of max|u|), the
bound before refinement, the run's observed max error (dense + random + adversarial: a lower
bound on the true max) and tightness against it, the linearised share of undecided pairs per
layer at 4,000 random points over a certificate block (an **estimate**, first order), and the
seconds of training and of the certificate (one after the other in this run, on a shared
machine: compare within the run only).

Usage::

    python benchmarks/bench_stability.py [--quick] [--out benchmarks/results/stability.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _markdown  # noqa: E402

from lipsurrogate._io import read_json  # noqa: E402
from lipsurrogate.bounds import certify as certify_network  # noqa: E402
from lipsurrogate.tasks import heat2d_kappa  # noqa: E402
from lipsurrogate.train.stability import PairStability, block_half_widths  # noqa: E402

RUNS = Path(__file__).resolve().parent / ".stability_runs"
BUDGETS = (400_000, 5_000_000)


def undecided(run: Path, config: dict) -> list[float]:
    """Linearised share of undecided pairs per layer at 4,000 uniform points (an estimate)."""
    _, _, model = heat2d_kappa._load_run(run, None)
    term = PairStability(config["domain"], block_half_widths(config["domain"], config["cert_cells"], config["local_block"]))
    x = torch.cat([term.points(torch.Generator().manual_seed(s), torch.float64) for s in range(1, 17)])[:4000]
    return term.undecided_fraction(model.double(), x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized runs (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "stability.md"))
    args = parser.parse_args(argv)
    budgets = (2_000, 20_000) if args.quick else BUDGETS
    rows = []
    for stability in (0.0, heat2d_kappa.Heat2DKappaConfig.stability):
        run = RUNS / f"stability-{stability:g}{'-quick' if args.quick else ''}"
        start = time.perf_counter()
        summary = heat2d_kappa.run(run, quick=args.quick, progress=False, stability=stability, refine_budget=budgets[0])
        print(f"stability {stability}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        config = read_json(run / "config.json")
        _, reference, model = heat2d_kappa._load_run(run, None)
        shares = undecided(run, config)
        seconds = summary["seconds_per_stage"]
        observed, u_max = summary["max_error_observed"], summary["u_max"]
        certificates = {budgets[0]: (read_json(run / "certificate.json"), seconds["certificate"])}
        for budget in budgets[1:]:
            start = time.perf_counter()
            cert = certify_network(model, reference, config["domain"], config["cert_cells"],
                                   local_block=config["local_block"], refine_budget=budget,
                                   refine_slopes=bool(config["refine_slopes"]), progress=False).to_dict()
            certificates[budget] = (cert, time.perf_counter() - start)
        for budget, (cert, cert_seconds) in certificates.items():
            rows.append(
                f"| {stability:g} | {budget:,} | {100 * cert['refinement']['bound_before'] / u_max:.2f}% | "
                f"**{100 * cert['bound'] / u_max:.2f}%** | {100 * observed / u_max:.2f}% | {cert['bound'] / observed:.2f} | "
                f"{', '.join(f'{100 * s:.0f}%' for s in shares)} | {seconds['training']:.1f} | {cert_seconds:.1f} |"
            )
    lines = _markdown.header(
        "The pair-stability penalty and the refinement budget on heat2d-kappa (issue 16)",
        ["networks: the default fit heat2d-kappa (seed 0, L8 loss, 3,000 steps), trained without and with the "
         "penalty (`--stability 0` / the default 0.03, one step in 4, 256 points); every other setting the default",
         "certificate: the task's (128 x 128 x 16 x 8 cells, 2 x 2 x 2 x 2 blocks, `both` slopes, children "
         "keep their cells' slopes); the second budget recomputed on the same weights",
         "bound and before refinement: certified, % of max|u|; observed: the run's verification max error (a lower "
         "bound on the true max); undecided: linearised share of undecided pairs per layer (an estimate, "
         "theory/cell-bounds.md section 15)"])
    lines += ["| penalty weight | refinement budget | before refinement | bound | observed | tightness | "
              "undecided pairs per layer | training s | certificate s |",
              "|---:|---:|---:|---:|---:|---:|---|---:|---:|", *rows, ""]
    _markdown.write(Path(args.out), "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
