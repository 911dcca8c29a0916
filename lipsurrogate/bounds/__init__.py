"""Certified bounds: Lipschitz constants of networks (and, later, of true solutions), per-cell
certificates and their verification.

Modules
-------
network
    :func:`lipschitz_bounds` (certified constants from the weights, float64),
    :func:`evaluate_float64` (values with a certified rounding-error bound),
    :func:`empirical_lipschitz` (an estimate, for comparison only).
"""

from .network import (
    LinearChain,
    LipschitzBounds,
    empirical_lipschitz,
    evaluate_float64,
    extract_chain,
    lipschitz_bounds,
)

__all__ = [
    "LinearChain",
    "LipschitzBounds",
    "empirical_lipschitz",
    "evaluate_float64",
    "extract_chain",
    "lipschitz_bounds",
]
