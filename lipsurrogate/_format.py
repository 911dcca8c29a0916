"""Printing certified bounds: rounded *up*, so that a printed bound is never below the computed one.

``f"{0.06784:.3g}"`` prints ``0.0678``, a number below the certificate; :func:`up` prints
``0.0679``. The JSON files keep the full float64 values.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

__all__ = ["up", "up_fixed"]


def up(x: float, digits: int = 3) -> str:
    """``x`` rounded towards +inf to ``digits`` significant digits, as text (exact decimal arithmetic)."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return f"{x:g}"
    d = Decimal(x)  # the exact value of the float
    exponent = d.adjusted() - digits + 1
    q = d.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_CEILING)
    if q.adjusted() != d.adjusted() and q != 0:  # 9.99 -> 10.0: one digit fewer after the point
        q = q.quantize(Decimal(1).scaleb(exponent + 1), rounding=ROUND_CEILING)
    text = f"{q:g}" if -5 <= q.adjusted() < digits + 2 else f"{q:.{digits - 1}e}"
    return text


def up_fixed(x: float, decimals: int = 1) -> str:
    """``x`` rounded towards +inf to ``decimals`` places after the point, as text."""
    x = float(x)
    if not math.isfinite(x):
        return f"{x:g}"
    return f"{Decimal(x).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_CEILING):f}"
