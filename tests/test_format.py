"""Printed certified bounds are rounded up: never below the computed float."""

from decimal import Decimal

import numpy as np
import pytest

from lipsurrogate._format import up, up_fixed


@pytest.mark.parametrize("value, text", [(0.06784, "0.0679"), (0.4219, "0.422"), (9.996, "10.0"), (2.0, "2.00"),
                                         (123456.0, "1.24e+5"), (0.0, "0")])
def test_known_values(value, text):
    assert up(value) == text


def test_printed_value_is_never_below_the_float(rng):
    values = np.exp(rng.uniform(-20, 12, size=3000))
    for v in values:
        for digits in (2, 3, 4):
            assert Decimal(up(v, digits)) >= Decimal(float(v))
        assert Decimal(up_fixed(v, 1)) >= Decimal(float(v))
    # and the plain format would have undercut some of them
    assert any(Decimal(f"{v:.3g}") < Decimal(float(v)) for v in values)
