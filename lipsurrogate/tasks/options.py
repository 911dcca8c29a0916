"""The command-line options each task declares (``lipsurrogate fit TASK --help`` lists only its own).

Kept free of heavy imports so that building the parser stays instant. Each entry is
``(flags, keyword arguments of argparse.add_argument)``; the destination is the task option of
the same name. Defaults are those of the task's config class and are shown in brackets; an unset
option is not passed, so the task's own default (or its ``--quick`` one) applies.
"""

from __future__ import annotations

import argparse

__all__ = ["TASK_OPTIONS", "block_sizes", "int_list", "name_list"]


def int_list(text: str) -> list[int]:
    """``"128,128"`` -> ``[128, 128]`` (positive integers)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def int_list_or_none(text: str) -> list[int]:
    """``"64,64,16"`` -> ``[64, 64, 16]``; ``"none"`` -> ``[]``."""
    return [] if text.strip().lower() == "none" else int_list(text)


def block_sizes(text: str) -> int | list[int]:
    """``"2"`` -> ``2`` (every axis), ``"1,1,4"`` -> ``[1, 1, 4]`` (one per axis); ranges are checked by the task."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected an integer or comma-separated integers, got {text!r}")
    return values[0] if len(values) == 1 else values


def name_list(text: str) -> list[str]:
    """``"time,kappa,x"`` -> ``["time", "kappa", "x"]``."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _opt(flag: str, type=None, help: str = "", **extra):  # noqa: A002 - argparse's own names
    kwargs = {"help": help, **extra}
    if type is not None:
        kwargs["type"] = type
    return (flag, kwargs)


_TRAINING = [
    _opt("--hidden", int_list, "hidden widths, e.g. 128,128,128"),
    _opt("--harmonics", int, "Fourier-feature harmonics per input"),
    _opt("--lipschitz", float, "lambda of the network [1.0]"),
    _opt("--slope-factor", float, "slope budget of the network / slope of u [1.3]"),
    _opt("--steps", int, "training steps"),
    _opt("--batch-size", int, "mini-batch size"),
    _opt("--lr", float, "learning rate, cosine-decayed"),
    _opt("--loss", str, "training loss: mse, mae or l<p> (e.g. l8: the L_p norm, towards the max error)"),
]
_CERTIFICATE = [
    _opt("--local-block", block_sizes, "cells per slope block: one number for every axis or one per axis "
                                       "(e.g. 1,1,4); 0 = global constants only"),
    _opt("--refine-budget", int, "error evaluations for adaptive refinement; 0 = none"),
]
_GENERATED = [
    _opt("--grid", int, "cells per space axis"),
    _opt("--frames", int, "stored frames, t = 0 included"),
    _opt("--t-end", float, "final time"),
]

TASK_OPTIONS: dict[str, list] = {
    "heat2d": [
        _opt("--grid", int, "py-pde cells per axis [64]"),
        _opt("--t-end", float, "final time T [1.0]"),
        _opt("--frames", int, "stored frames [51]"),
        _opt("--diffusivity", float, "kappa [0.05]"),
        _opt("--modes", int, "Fourier modes of the initial condition [4]", dest="n_modes"),
        _opt("--k-max", int, "largest |k| of the initial condition [3]"),
        *_TRAINING,
        _opt("--cert-cells", int_list, "certificate cells in x,y,t [128,128,32]"),
        _opt("--cert-cells-coarse", int_list_or_none, "a second certificate grid in x,y,t for comparison (no "
                                                      "refinement), e.g. 64,64,16; none: no second grid [none]"),
        *_CERTIFICATE,
        _opt("--slopes", None, "how the error's slope is bounded per block: affine forms, intervals, both "
                               "(their intersection) or auto [affine]", choices=["affine", "interval", "both", "auto"]),
        _opt("--tighten", None, "which slope blocks get the full (backward) ranges: dominant: only those that may "
                                "hold the largest bound (same bound, faster; the other cells keep wider certified "
                                "bounds); all: every block (tightest per-cell bounds) [dominant]",
             choices=["dominant", "all"]),
        _opt("--model", None, "mlp: a network fit to this initial condition; deeponet: an operator trained on a "
                              "family of other initial conditions, specialised to this one [mlp]",
             choices=["mlp", "deeponet"]),
        _opt("--family-samples", int, "deeponet: initial conditions in the training family [400]"),
        _opt("--operator-steps", int, "deeponet: training steps of the operator [10000]"),
        ("--fast", {"action": "store_true", "default": None,
                    "help": "a smaller network and a coarser certificate: about 1%% of max|u| in about 14 s instead "
                            "of 0.6%% in about 31 s (other options still win)"}),
    ],
    "heat2d-kappa": [
        _opt("--grid", int, "py-pde cells per axis [48]"),
        _opt("--t-end", float, "final time T [1.0]"),
        _opt("--frames", int, "stored frames [26]"),
        _opt("--kappa-min", float, "smallest diffusivity [0.02]"),
        _opt("--kappa-max", float, "largest diffusivity [0.1]"),
        _opt("--n-kappa", int, "diffusivities in the training sweep [9]"),
        _opt("--modes", int, "Fourier modes of the initial condition [4]", dest="n_modes"),
        _opt("--k-max", int, "largest |k| of the initial condition [3]"),
        *_TRAINING,
        _opt("--stability", float, "weight of the pair-stability penalty over the certificate's slope blocks "
                                   "(trains for a tighter certificate); 0 = off [0.03]"),
        _opt("--cert-cells", int_list, "certificate cells in x,y,t,kappa [128,128,16,8]"),
        *_CERTIFICATE,
    ],
    "field": [
        ("file", {"metavar": "FILE", "help": "NetCDF-4/HDF5 file (or a Zarr store when zarr is installed)"}),
        _opt("--var", None, "the variable to fit (needed when the file holds several)"),
        _opt("--inputs", name_list, "its dimensions used as inputs, in the network's column order "
                                    "(default: the variable's dims in file order)"),
        _opt("--passthrough", name_list, "inputs that enter affinely instead of through Fourier features"),
        *_TRAINING,
        *_CERTIFICATE,
    ],
    "pdebench": [
        ("file", {"metavar": "FILE", "help": "the PDEBench HDF5 file"}),
        _opt("--sample", int, "sample index in the file [0]"),
        _opt("--field", None, "field to fit (default: the first with a time axis)"),
        *_TRAINING,
        *_CERTIFICATE,
    ],
    **{name: [*_GENERATED, *_TRAINING, *_CERTIFICATE]
       for name in ("advection1d", "burgers1d", "allen-cahn1d", "reaction-diffusion2d")},
    "trigger": [
        _opt("--n-train", int, "training candidates [200000]"),
        _opt("--hidden", int_list, "hidden widths [20,20,20]"),
        _opt("--lipschitz", float, "lambda [2.0]"),
        _opt("--steps", int, "training steps [4000]"),
        _opt("--batch-size", int, "mini-batch size [1024]"),
        _opt("--lr", float, "learning rate [5e-3]"),
    ],
    "hepmass": [
        ("file", {"metavar": "FILE", "nargs": "?", "default": None, "help": "HEPMASS CSV file (like --data)"}),
        _opt("--data", None, "HEPMASS CSV file(s), comma-separated (default: synthetic events)"),
        _opt("--seeds", int, "seeds per model [3]"),
        _opt("--hidden", int_list, "hidden widths [32,32]"),
        _opt("--lipschitz", float, "lambda [4.0]"),
        _opt("--steps", int, "training steps [400]"),
        _opt("--batch-size", int, "mini-batch size [256]"),
        _opt("--lr", float, "learning rate [5e-3]"),
    ],
}
"""Task name -> its options; tasks not listed take none."""
