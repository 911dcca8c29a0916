r"""Balanced mini-batches for classification with sub-populations (Anzalone et al.).

A parametric classifier sees signal at several masses and background from several processes;
with imbalanced data (HEPMASS-IMB) uniform batches are dominated by the abundant groups. A
:class:`BalancedSampler` draws each batch with a fixed composition instead. With batch size
:math:`B`, :math:`\lceil B/2 \rceil` signal and :math:`\lfloor B/2 \rfloor` background events
(except for ``"none"``), and within a class:

================  ============================================  ====================================
scheme            signal half                                   background half
================  ============================================  ====================================
``"none"``        uniform over all events (no balancing)        --
``"class"``       uniform over signal events                    uniform over background events
``"signal"``      equal share per signal mass                   uniform over background events
``"background"``  uniform over signal events                    equal share per background process
``"full"``        equal share per signal mass                   equal share per background process
================  ============================================  ====================================

"Equal share" of :math:`k` events over :math:`G` groups is exact: group :math:`g` gets
:math:`\lfloor k/G \rfloor` events, plus one for the first :math:`k \bmod G` groups in a random
order drawn for each batch (so no group is favoured on average). Events are drawn with
replacement within their group, with the ``torch.Generator`` passed in, so a batch is
reproducible from the seed.

The sampler is a callable ``sampler(generator) -> LongTensor`` of indices, the form
:func:`lipsurrogate.train.train` accepts as ``sampler=``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..exceptions import ConfigurationError

__all__ = ["SCHEMES", "BalancedSampler"]

SCHEMES = ("none", "class", "signal", "background", "full")
"""Balancing schemes of :class:`BalancedSampler`."""


def _groups(index: np.ndarray, keys: np.ndarray | None) -> list[torch.Tensor]:
    if keys is None:
        return [torch.as_tensor(index, dtype=torch.long)]
    values = np.unique(keys)
    return [torch.as_tensor(index[keys == v], dtype=torch.long) for v in values]


class BalancedSampler:
    """Index batches of fixed composition (see the module docstring).

    Parameters
    ----------
    labels : array-like of {0, 1}, shape (n,)
        1 signal, 0 background.
    scheme : {"none", "class", "signal", "background", "full"}
    batch_size : int
    mass : array-like, shape (n,), optional
        Signal mass of each event; needed by ``"signal"`` and ``"full"``.
    process : array-like, shape (n,), optional
        Background process of each event; needed by ``"background"`` and ``"full"``.
    seed : int
        Seeds the sampler's own ``torch.Generator``, used when a call passes none.

    Attributes
    ----------
    signal_groups_, background_groups_ : list of Tensor
        Event indices of each signal group (mass) and background group (process); one group when
        the scheme does not split that class.
    group_keys_ : dict
        The mass / process value of each group, in the order of the groups.
    """

    def __init__(self, labels, scheme: str = "full", batch_size: int = 256, *, mass=None, process=None,
                 seed: int = 0) -> None:
        if scheme not in SCHEMES:
            raise ConfigurationError(f"'scheme' must be one of {SCHEMES}. Got {scheme!r} instead.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ConfigurationError(f"'batch_size' must be an integer >= 2. Got {batch_size!r} instead.")
        y = np.asarray(labels).reshape(-1)
        if not np.all(np.isin(y, (0, 1))):
            raise ConfigurationError(f"'labels' must be 0 (background) or 1 (signal). Got values {np.unique(y)[:5].tolist()}.")
        n = y.size
        self.scheme, self.batch_size, self.n = scheme, batch_size, n
        self._generator = torch.Generator().manual_seed(int(seed))
        by_mass = scheme in ("signal", "full")
        by_process = scheme in ("background", "full")
        for name, values, needed in (("mass", mass, by_mass), ("process", process, by_process)):
            if needed and values is None:
                raise ConfigurationError(f"Scheme {scheme!r} needs the per-event '{name}'.")
            if values is not None and np.asarray(values).reshape(-1).size != n:
                raise ConfigurationError(f"Expected {n} values of '{name}' (one per label). Got {np.asarray(values).size}.")
        sig, bkg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        if scheme != "none" and (sig.size == 0 or bkg.size == 0):
            raise ConfigurationError(f"Scheme {scheme!r} needs signal and background events. Got {sig.size} signal "
                                     f"and {bkg.size} background.")
        mass = None if mass is None else np.asarray(mass).reshape(-1)
        process = None if process is None else np.asarray(process).reshape(-1)
        if scheme == "none":
            self.signal_groups_ = [torch.arange(n)]
            self.background_groups_ = []
            self.group_keys_ = {"signal": [None], "background": []}
            return
        self.signal_groups_ = _groups(sig, mass[sig] if by_mass else None)
        self.background_groups_ = _groups(bkg, process[bkg] if by_process else None)
        self.group_keys_ = {
            "signal": np.unique(mass[sig]).tolist() if by_mass else [None],
            "background": np.unique(process[bkg]).tolist() if by_process else [None],
        }

    def composition(self) -> dict:
        """Events per group in one batch, before the random assignment of remainders (exact).

        Returns ``{"signal": {key: (low, high)}, "background": {...}}``: every batch holds between
        ``low`` and ``high = low + 1`` events of each group, and exactly ``ceil(B/2)`` signal.
        """
        if self.scheme == "none":
            return {"all": {None: (self.batch_size, self.batch_size)}}
        out = {}
        for name, groups, k in (("signal", self.signal_groups_, (self.batch_size + 1) // 2),
                                ("background", self.background_groups_, self.batch_size // 2)):
            low, rest = divmod(k, len(groups))
            out[name] = {key: (low, low + (rest > 0)) for key in self.group_keys_[name]}
        return out

    @staticmethod
    def _draw(groups: list[torch.Tensor], k: int, generator: torch.Generator) -> torch.Tensor:
        low, rest = divmod(k, len(groups))
        counts = torch.full((len(groups),), low, dtype=torch.long)
        if rest:
            counts[torch.randperm(len(groups), generator=generator)[:rest]] += 1
        parts = [g[torch.randint(0, g.numel(), (int(c),), generator=generator)] for g, c in zip(groups, counts) if c > 0]
        return torch.cat(parts)

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One batch of ``batch_size`` event indices (signal first, then background).

        ``generator`` defaults to the sampler's own seeded generator (successive calls differ).
        """
        if generator is None:
            generator = self._generator
        if self.scheme == "none":
            return torch.randint(0, self.n, (self.batch_size,), generator=generator)
        return torch.cat([
            self._draw(self.signal_groups_, (self.batch_size + 1) // 2, generator),
            self._draw(self.background_groups_, self.batch_size // 2, generator),
        ])
