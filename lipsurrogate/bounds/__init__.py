"""Certified bounds: Lipschitz constants of networks, references, per-cell certificates, verification.

Modules
-------
network
    :func:`lipschitz_bounds` (certified constants from the weights, float64),
    :func:`evaluate_float64` (values with a certified rounding-error bound),
    :func:`empirical_lipschitz` (an estimate, for comparison only).
reference
    The :class:`Reference` protocol (values with margins, certified constants and derivative
    ranges, the statement), :class:`HeatSolution` and :class:`FunctionReference`.
interpolant
    :class:`MultilinearInterpolant`, the data's own interpolant (the level-1 reference).
certifier
    :func:`certify` -> :class:`Certificate`: the one certifier every task uses.
verification
    :func:`verify`: dense, random and adversarial sampling of a certificate.
binding
    SHA-256 digests that bind a certificate to its files (:func:`check_files`).
affine
    :func:`error_slopes`: certified signed slope ranges of :math:`f - u` on boxes from affine
    (zonotope) forms of both derivatives, whose common linear part cancels
    (:func:`network_derivative_forms`, :class:`DerivativeForms`).
cells, cell_lp, local, refine, storage, conditioned
    The pieces: per-cell programs (symmetric and signed), interval propagation, adaptive
    refinement, files, conditioned networks.
"""

from .affine import DerivativeForms, error_slopes, network_derivative_forms
from .binding import RunFolderChanged, check_files
from .certifier import Certificate, certify
from .interpolant import MultilinearInterpolant
from .network import (
    LinearChain,
    LipschitzBounds,
    empirical_lipschitz,
    evaluate_float64,
    extract_chain,
    lipschitz_bounds,
)
from .reference import FunctionReference, HeatSolution, Reference
from .verification import VerificationResult, verify

__all__ = [
    "Certificate",
    "DerivativeForms",
    "FunctionReference",
    "HeatSolution",
    "LinearChain",
    "LipschitzBounds",
    "MultilinearInterpolant",
    "Reference",
    "RunFolderChanged",
    "VerificationResult",
    "certify",
    "check_files",
    "empirical_lipschitz",
    "error_slopes",
    "evaluate_float64",
    "extract_chain",
    "lipschitz_bounds",
    "network_derivative_forms",
    "verify",
]
