r"""``lipsurrogate fit hepmass [--data FILE]``: parametric (mass-conditioned) classifiers.

The structure of Table 1 of Anzalone et al. on HEPMASS-IMB-like data (synthetic by default,
:func:`lipsurrogate.data.hepmass.synthetic_hepmass`; a real HEPMASS / HEPMASS-IMB CSV file with
``--data``), with two protocols:

``classification``
    train on signal at every mass, test at every mass;
``interpolation``
    train without the signal at the held-out masses (750, 1000, 1250 GeV; background masses are
    assigned over the training masses only), test at the held-out masses;
``interpolation-1000``
    the same with only 1000 GeV held out (the interpolation test of Baldi et al. 2016), so the
    nearest training masses are 250 GeV away instead of 500.

Models: :class:`~lipsurrogate.nn.conditioning.ConditionedLipschitzMLP` with each of the twelve
conditioning (type, position) pairs, all Lipschitz by construction, with a **certified** bound
on :math:`|\partial f / \partial m|` (the logit's slope in the mass, over the box of the data,
from :func:`~lipsurrogate.bounds.conditioned.conditioned_constants` on the float64 weights):
the guaranteed smoothness of the interpolation between masses. Baselines: one
:class:`~lipsurrogate.nn.mlp.LipschitzMLP` per mass (trained on that mass's signal and all
background) and one without the mass input. Every model is trained for a fixed number of steps
and evaluated with its **final** weights (no test-set selection), with several seeds.

How the mass enters (:func:`mass_encoding`, option ``mass_encoding``): the network normalises
its condition as :math:`c = (m - m_0) / s`. ``"feature"`` (default) fits, on each protocol's
*training* signal, the standardised feature whose signal mean moves most with the mass (on
HEPMASS-like data the reconstructed resonance mass :math:`m_{WWbb}`, ``f26``) as
:math:`\bar z(m) = \alpha + \beta m` and sets :math:`c = \bar z(m)`: one unit of :math:`c` is one
unit of that feature, and :math:`c = 0` where the signal peak sits at the feature's training
mean (about 650 GeV). ``"range"`` maps the mass range to :math:`[-1, 1]` (:math:`c = 0` at
1000 GeV). Same networks, same certificate (the model takes the mass in GeV), same
classification AUROC; but affine/all interpolates to 750-1250 GeV with 66.3% AUROC under
``"range"`` and 91.7% under ``"feature"`` (3 seeds, ``benchmarks/results/hepmass.md``). What
matters is where :math:`c = 0` (measured; the scale of :math:`c` and the slope budget
``cond_strength`` matter much less): the conditioning :math:`h (1 + S c) + B c` is linear in
:math:`c` around the unconditioned network at :math:`c = 0`. Moving the zero is a
reparametrisation of the biases for ``bias`` conditioning, so it changes what training finds,
not what the network can express: with :math:`c = 0` at 500-650 GeV (the hard, populous low
masses) heavier masses are learnt as shifts of that classifier and the shifts carry over to
the masses in between; with :math:`c = 0` at 1000 or 1500 GeV they do not (66% and 53%).

Background masses (``background_mass``): ``"uniform"`` (default) over each protocol's training
masses, so that with signal balanced per mass (``balance="full"``) every mass hypothesis sees
the same signal-to-background ratio; ``"identical"`` (the HEPMASS convention: as the signal
masses are distributed) gives the 1500 GeV hypothesis about 2% of the background under
HEPMASS-IMB fractions in the interpolation protocol, the network learns a mass-dependent prior
(a larger certified mass slope) and interpolates worse (89.6% against 91.7% with ``"feature"``,
66.3% against 76.2% with ``"range"``).

The certified mass slope as an interpolation guarantee (:func:`interpolation_guarantee`): at
each held-out mass, :math:`f(x; m_h)` must lie within the slope bound times the distance (in
GeV) of its values at the nearest trained masses below and above, for every event; the run
reports the width of that certified interval against the measured change of :math:`f` from the
neighbours, and where :math:`f(x; m_h)` sits inside it.

Evaluation at a mass :math:`m` (Baldi et al.): the test signal generated at :math:`m` against
all test background, every event given the mass input :math:`m`. Metrics (exact on those test
events, :mod:`lipsurrogate.metrics`): AUROC, AUPR and the significance ratio, per mass and
averaged over masses (all five for classification, the held-out ones for interpolation).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._io import write_json
from .._threads import torch_threads
from ..data.hepmass import (BACKGROUND_MASS, HepmassData, assign_background_mass, load_hepmass,
                            synthetic_hepmass)
from ..exceptions import ConfigurationError
from ..metrics import average_precision, roc_auc, roc_curve, significance_ratio
from ..nn.conditioning import MECHANISMS, POSITIONS
from ..train.sampling import SCHEMES
from ._common import config_from_options

__all__ = ["HepmassConfig", "COMBINATIONS", "MASS_ENCODINGS", "MassEncoding", "ModelInputs", "task_data",
           "training_set", "mass_encoding", "conditioned_model", "certificate_box", "train_classifier", "predict_logits",
           "evaluate_per_mass", "average_metrics", "mass_certificate", "neighbours", "interpolation_guarantee", "run"]

COMBINATIONS = [f"{t}/{p}" for t, p in itertools.product(MECHANISMS, POSITIONS)]
"""The twelve conditioning type/position pairs, ``"affine/all"`` style."""

METRICS = ("auroc", "aupr", "significance_ratio")

MASS_ENCODINGS = ("feature", "range")
"""How the mass hypothesis is normalised for the network (:func:`mass_encoding`)."""


@dataclass
class HepmassConfig:
    """Settings of a hepmass run (defaults: a 3-5 minute run on 2 cores)."""

    data: object = None
    """Path(s) of HEPMASS CSV files (a list or a comma-separated string); None: synthetic data."""
    max_events: int = 200_000
    """Rows read from each real file (from the top; the HEPMASS files are shuffled)."""
    test_fraction: float = 0.5
    """Share of a real file's events used as the test set."""
    n_train: int = 40_000
    n_test: int = 40_000
    """Synthetic events before HEPMASS-IMB signal thinning."""
    imbalance: object = "hepmass-imb"
    background_mass: str = "uniform"
    balance: str = "full"
    mass_encoding: str = "feature"
    """``"feature"``: the mass in the units of the feature that follows it most; ``"range"``: [-1, 1]."""
    held_out: list = field(default_factory=lambda: [750.0, 1000.0, 1250.0])
    held_out_single: list = field(default_factory=lambda: [1000.0])
    """Held out in the ``interpolation-1000`` protocol; an empty list skips that protocol."""
    seeds: int = 3
    hidden: list = field(default_factory=lambda: [32, 32])
    lipschitz: float = 4.0
    cond_strength: float = 1.0
    temperature: float = 0.25
    steps: int = 400
    batch_size: int = 256
    lr: float = 5e-3
    combinations: list = field(default_factory=lambda: list(COMBINATIONS))
    ablation: bool = True
    threads: int = 1
    """torch threads while training (restored afterwards): these small networks train fastest on one."""
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "HepmassConfig":
        """Smoke-sized settings (seconds)."""
        base = dict(max_events=20_000, n_train=6000, n_test=6000, seeds=1, hidden=[16, 16], steps=60, batch_size=128)
        return cls(**{**base, **overrides})

    @classmethod
    def from_options(cls, quick: bool, seed: int, options: dict) -> "HepmassConfig":
        """Defaults (or the quick settings) with ``options`` and ``seed`` applied; unknown options raise."""
        options = dict(options)
        if "file" in options:  # 'lipsurrogate fit hepmass FILE' as well as '--data FILE'
            if options.get("data") not in (None, options["file"]):
                raise ConfigurationError(f"Got both a FILE ({options['file']!r}) and --data ({options['data']!r}); give one.")
            options["data"] = options.pop("file")
        cfg = config_from_options(cls, quick, seed, options, "hepmass")
        if isinstance(cfg.data, str):
            cfg.data = [p for p in cfg.data.split(",") if p]
        if cfg.background_mass not in BACKGROUND_MASS:
            raise ConfigurationError(f"'background_mass' must be one of {BACKGROUND_MASS}. Got {cfg.background_mass!r}.")
        if cfg.mass_encoding not in MASS_ENCODINGS:
            raise ConfigurationError(f"'mass_encoding' must be one of {MASS_ENCODINGS}. Got {cfg.mass_encoding!r}.")
        if cfg.balance not in SCHEMES:
            raise ConfigurationError(f"'balance' must be one of {SCHEMES}. Got {cfg.balance!r}.")
        bad = [c for c in cfg.combinations if c not in COMBINATIONS]
        if bad or not cfg.combinations:
            raise ConfigurationError(f"'combinations' must be among {COMBINATIONS}. Got {bad or cfg.combinations}.")
        if cfg.seeds < 1 or cfg.steps < 1:
            raise ConfigurationError(f"'seeds' and 'steps' must be positive. Got {cfg.seeds} and {cfg.steps}.")
        if not 0 < cfg.test_fraction < 1:
            raise ConfigurationError(f"'test_fraction' must lie in (0, 1). Got {cfg.test_fraction!r}.")
        cfg.held_out = [float(m) for m in cfg.held_out]
        cfg.held_out_single = [float(m) for m in cfg.held_out_single]
        return cfg


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def task_data(cfg: HepmassConfig, progress: bool = False) -> tuple[HepmassData, HepmassData, str]:
    """The training and test events of a run, and a line saying where they come from.

    Synthetic events (seeded by ``cfg.seed``: the training set from ``[seed, 1]``, the test set
    from ``[seed, 2]``), or ``cfg.data`` read and split at ``cfg.test_fraction``.
    """
    rng = np.random.default_rng(cfg.seed)
    if cfg.data:
        events = load_hepmass(cfg.data, max_rows=cfg.max_events, progress=progress)
        order = rng.permutation(len(events))
        n_test = int(round(cfg.test_fraction * len(events)))
        test, train = events.subset(order[:n_test]), events.subset(order[n_test:])
        return train, test, f"HEPMASS file(s) {events.attrs['source']}, first {cfg.max_events} rows of each"
    train = synthetic_hepmass(cfg.n_train, imbalance=cfg.imbalance, background_mass=cfg.background_mass,
                              rng=np.random.default_rng([cfg.seed, 1]))
    test = synthetic_hepmass(cfg.n_test, imbalance=cfg.imbalance, background_mass=cfg.background_mass,
                             rng=np.random.default_rng([cfg.seed, 2]))
    return train, test, f"synthetic HEPMASS (seeded, imbalance {cfg.imbalance})"


class ModelInputs:
    """The network inputs: standardised features (training mean and standard deviation), then the mass in GeV.

    ``inputs(data)`` gives each event its own mass column, ``inputs(data, m)`` the mass
    hypothesis ``m`` for every event, ``inputs(data, with_mass=False)`` the features only
    (float32 tensors).
    """

    def __init__(self, train: HepmassData) -> None:
        self.mean = train.features.astype(np.float64).mean(0)
        self.std = train.features.astype(np.float64).std(0)
        self.std[self.std == 0] = 1.0

    def __call__(self, data: HepmassData, mass: float | None = None, with_mass: bool = True):
        import torch

        x = (data.features - self.mean) / self.std
        if with_mass:
            m = data.mass if mass is None else np.full(len(data), float(mass))
            x = np.c_[x, m]
        return torch.tensor(x, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------


def evaluate_per_mass(score, test: HepmassData, masses) -> dict:
    """Metrics at each mass: the signal at that mass against all background, mass input set to it.

    ``score(data, mass) -> ndarray`` gives the scores of ``data`` under the mass hypothesis
    ``mass``; or ``score`` is a mapping ``{mass: scores of every event of test}`` (scores computed
    once, e.g. :func:`~lipsurrogate.data.hepmass.synthetic_log_likelihood_ratio`). Returns
    ``{mass: {"auroc", "aupr", "significance_ratio", "n_signal", "n_background"}}``; every metric
    is exact on these test events.
    """
    bkg = test.label == 0
    out = {}
    for m in masses:
        sel = bkg | ((test.label == 1) & (test.mass == m))
        events = test.subset(sel)
        if callable(score):
            s = np.asarray(score(events, float(m)), dtype=np.float64)
        else:
            s = np.asarray(score[float(m)], dtype=np.float64)[sel]
        out[float(m)] = {"auroc": roc_auc(events.label, s), "aupr": average_precision(events.label, s),
                         "significance_ratio": significance_ratio(events.label, s),
                         "n_signal": int(events.label.sum()), "n_background": int(bkg.sum())}
    return out


def average_metrics(per_mass: dict, masses) -> dict:
    """The mean over ``masses`` of each metric of :func:`evaluate_per_mass`'s result."""
    return {k: float(np.mean([per_mass[float(m)][k] for m in masses])) for k in METRICS}


def predict_logits(model, x) -> np.ndarray:
    """``model(x)[:, 0]`` without gradients, in chunks of 65536 rows (a numpy array)."""
    import torch

    with torch.no_grad():
        return np.concatenate([model(x[s : s + 65536])[:, 0].numpy() for s in range(0, len(x), 65536)])


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


def train_classifier(model, x, data: HepmassData, cfg: HepmassConfig, seed: int, scheme: str, progress: bool = False,
                     desc: str = "training", loss=None) -> float:
    """Train ``model`` on ``x`` (rows of ``data``) with ``scheme``-balanced batches; returns the seconds taken.

    ``cfg`` gives ``steps``, ``batch_size``, ``lr`` and (for the default loss,
    :func:`~lipsurrogate.train.bce_with_temperature`) ``temperature``; ``loss(outputs, targets)``
    replaces that loss.
    """
    import torch

    from ..train import bce_with_temperature, train
    from ..train.sampling import BalancedSampler

    y = torch.tensor(data.label, dtype=torch.float32)
    sampler = BalancedSampler(data.label, scheme, cfg.batch_size, mass=data.mass, process=data.process)
    if loss is None:
        tau = cfg.temperature
        loss = lambda o, t: bce_with_temperature(o, t, tau)  # noqa: E731
    history = train(model, x, y, loss, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed,
                    progress=progress, description=desc, sampler=sampler, log_every=max(1, cfg.steps // 20))
    return history.seconds


@dataclass(frozen=True)
class MassEncoding:
    r"""The network's condition :math:`c = (m - \text{offset}) / \text{gev\_per\_unit}` (see :func:`mass_encoding`)."""

    kind: str
    """``"feature"`` or ``"range"``."""
    offset: float
    """GeV where :math:`c = 0`."""
    gev_per_unit: float
    """GeV per unit of :math:`c`."""
    feature: int | None = None
    """For ``"feature"``: the index of the feature followed (its signal mean has slope 1 in :math:`c`)."""

    @property
    def cond_range(self) -> list[float]:
        """The ``cond_range`` of :class:`~lipsurrogate.nn.conditioning.ConditionedLipschitzMLP` that gives this :math:`c`."""
        return [self.offset - self.gev_per_unit, self.offset + self.gev_per_unit]

    def __call__(self, mass) -> np.ndarray:
        """:math:`c` at ``mass`` (GeV)."""
        return (np.asarray(mass, dtype=np.float64) - self.offset) / self.gev_per_unit


def mass_encoding(kind: str, data: HepmassData, inputs: ModelInputs, mass_range) -> MassEncoding:
    r"""How the mass hypothesis is normalised before it conditions the network.

    Parameters
    ----------
    kind : {"feature", "range"}
        ``"range"``: ``mass_range`` (low, high) maps to :math:`c \in [-1, 1]`. ``"feature"``: for
        each standardised feature :math:`z_j` (``inputs``), the mean over ``data``'s signal at
        each of its masses is fitted as :math:`\alpha_j + \beta_j m` (least squares); the feature
        with the largest :math:`|\beta_j|` gives :math:`c = \mathrm{sign}(\beta_j)(\alpha_j + \beta_j m)`,
        so that :math:`c` moves as that feature's signal peak does (on HEPMASS-like data,
        :math:`m_{WWbb}`). With fewer than two signal masses in ``data``, or no feature that
        moves, it falls back to ``"range"``.
    data : HepmassData
        The training events (only their signal is used: no held-out mass enters the fit).
    inputs : ModelInputs
    mass_range : (float, float)

    Returns
    -------
    MassEncoding
    """
    if kind not in MASS_ENCODINGS:
        raise ConfigurationError(f"'mass_encoding' must be one of {MASS_ENCODINGS}. Got {kind!r}.")
    low, high = map(float, mass_range)
    fallback = MassEncoding("range", (low + high) / 2, (high - low) / 2)
    sig = data.label == 1
    masses = np.unique(data.mass[sig])
    if kind == "range" or masses.size < 2:
        return fallback
    z = inputs(data.subset(sig), with_mass=False).numpy().astype(np.float64)
    means = np.array([z[data.mass[sig] == m].mean(0) for m in masses])  # (masses, features)
    beta, alpha = np.polyfit(masses, means, 1)
    j = int(np.argmax(np.abs(beta)))
    if not (np.isfinite(beta[j]) and np.abs(beta[j]) > 0):
        return fallback
    # c = alpha_j + beta_j m (times the sign of beta_j): c = (m - offset) / gev_per_unit
    return MassEncoding("feature", float(-alpha[j] / beta[j]), float(1.0 / abs(beta[j])), j)


def conditioned_model(cfg: HepmassConfig, combo: str, encoding: MassEncoding, seed: int):
    r"""A :class:`~lipsurrogate.nn.conditioning.ConditionedLipschitzMLP` for ``combo`` (``"affine/all"`` style).

    27 features plus the mass in GeV (normalised inside by ``encoding``), ``cfg``'s widths,
    :math:`\lambda` and conditioning strength.
    """
    from ..nn.conditioning import ConditionedLipschitzMLP

    mechanism, position = combo.split("/")
    return ConditionedLipschitzMLP(27, 1, 1, cfg.hidden, mechanism=mechanism, position=position,
                                   cond_range=[encoding.cond_range], lipschitz=cfg.lipschitz,
                                   cond_strength=cfg.cond_strength, seed=seed)


def _plain(cfg: HepmassConfig, seed: int):
    from ..nn.mlp import LipschitzMLP

    return LipschitzMLP(27, 1, cfg.hidden, lipschitz=cfg.lipschitz, norm="linf-row", seed=seed)


def training_set(train: HepmassData, protocol: str, held_out, background_mass: str, rng) -> HepmassData:
    """The training events of a protocol, background masses (re)assigned over its signal masses.

    ``"classification"`` keeps every event; any other protocol drops the signal at ``held_out``.
    """
    data = train if protocol == "classification" else train.subset((train.label == 0) | ~np.isin(train.mass, held_out))
    masses = sorted(set(np.unique(data.mass[data.label == 1]).tolist()))
    return assign_background_mass(data, background_mass, rng, masses)


def certificate_box(inputs: ModelInputs, events, mass_range) -> list[list[float]]:
    """The box of the certificate: (low, high) of each float32 model input over ``events`` (a list of
    :class:`HepmassData`, e.g. train and test), then ``mass_range`` (GeV) for the mass."""
    z = np.concatenate([inputs(e, with_mass=False).numpy() for e in events])
    return [[float(a), float(b)] for a, b in zip(z.min(0), z.max(0))] + [list(map(float, mass_range))]


def mass_certificate(model, box, test: HepmassData, inputs: ModelInputs, rng, masses) -> dict:
    r"""Certified slope in the mass over ``box``, and a sampled check of it (an estimate, must not exceed).

    Returns ``certified_mass_slope`` (a **bound** on :math:`|\partial f / \partial m|` per GeV over
    ``box``, :func:`~lipsurrogate.bounds.conditioned.conditioned_constants`),
    ``certified_feature_slopes_max``, ``sampled_mass_slope_max`` (an **estimate**: the largest
    :math:`|f(x, m_1) - f(x, m_2)| / |m_1 - m_2|` over 2000 test events and random masses in the
    range of ``masses``) and ``violations`` (pairs above the bound; must be 0).
    """
    from ..bounds.conditioned import conditioned_constants

    L = conditioned_constants(model, box, splits=1)
    plain = model.plain_float64()
    idx = rng.choice(len(test), size=min(2000, len(test)), replace=False)
    events = test.subset(idx)
    m1, m2 = rng.uniform(min(masses), max(masses), size=(2, len(idx)))
    import torch

    x1 = inputs(events).double()
    x2 = x1.clone()
    x1[:, -1], x2[:, -1] = torch.from_numpy(m1), torch.from_numpy(m2)
    with torch.no_grad():
        f1, f2 = plain(x1)[:, 0].numpy(), plain(x2)[:, 0].numpy()
    dm = np.abs(m1 - m2)
    ratio = np.abs(f1 - f2) / np.maximum(dm, 1e-9)
    # the sampled difference carries the float64 rounding of two evaluations: allow 1e-10 relative to |f|
    slack = 1e-10 * (1 + np.abs(f1) + np.abs(f2))
    return {"certified_mass_slope": float(L[-1]), "certified_feature_slopes_max": float(L[:-1].max()),
            "sampled_mass_slope_max": float(ratio.max()),
            "violations": int(np.sum(np.abs(f1 - f2) > L[-1] * dm + slack))}


def neighbours(mass: float, train_masses) -> tuple[float, float] | None:
    """The nearest trained masses below and above ``mass`` (``None`` if it lies outside them: extrapolation)."""
    below = [float(m) for m in train_masses if m < mass]
    above = [float(m) for m in train_masses if m > mass]
    return (max(below), min(above)) if below and above else None


def interpolation_guarantee(model, test: HepmassData, inputs: ModelInputs, held_out, train_masses, slope: float,
                            rng, segment_events: int = 4000) -> dict:
    r"""What the certified mass slope guarantees at each held-out mass, against what the network does there.

    For a held-out mass :math:`m_h` with trained neighbours :math:`m_a < m_h < m_b`
    (:func:`neighbours`) and every test event :math:`x`, the certified slope :math:`L` (per
    GeV, over the data box: ``certified_mass_slope`` of :func:`mass_certificate`) gives
    :math:`|f(x; m_h) - f(x; m_a)| \le L (m_h - m_a)` and likewise from :math:`m_b`, so
    :math:`f(x; m_h)` lies in the interval of
    :func:`~lipsurrogate.bounds.conditioned.condition_interval` built from :math:`f(x; m_a)`
    and :math:`f(x; m_b)` alone. The mass is in GeV on both sides: the model takes it in GeV and
    normalises it inside (:class:`MassEncoding`), and the certificate's box is in GeV.
    :math:`f` is the network output (the classifier's logit is :math:`f / \tau`), evaluated in
    float64 (``model.plain_float64()``). The interval is certified *given* those float64 values of
    :math:`f(x; m_a)` and :math:`f(x; m_b)`: their own evaluation rounding (about :math:`10^{-13}`
    relative) is not carried into it, and the violation count allows :math:`10^{-10}` relative for it.

    Parameters
    ----------
    model : ConditionedLipschitzMLP
    test : HepmassData
        Every event is used (signal and background); they lie in the certificate's box.
    inputs : ModelInputs
    held_out, train_masses : sequences of float (GeV)
    slope : float
        The certified bound on :math:`|\partial f / \partial m|` per GeV over the box.
    rng : numpy.random.Generator
        Draws the ``segment_events`` events of the per-event bound.
    segment_events : int
        Events (at most) for the tighter per-event bound: :math:`|\partial f / \partial m|`
        certified on each event's own segments :math:`\{x\} \times [m_a, m_h]` and
        :math:`\{x\} \times [m_h, m_b]`
        (:func:`~lipsurrogate.bounds.conditioned.segment_condition_slopes`); 0 skips it.

    Returns
    -------
    dict
        ``{m_h: {...}}`` for each held-out mass with neighbours (others are left out). **Bounds**:
        ``certified_half_width_below`` / ``_above`` (:math:`L d_a`, :math:`L d_b`: the largest
        change from each neighbour), ``certified_width_max`` / ``_median`` (of the interval, over
        events), and the ``segment_*`` counterparts from the per-event slopes. **Measured** (exact
        on these events, float64): ``measured_change_below_max`` / ``_median`` (of
        :math:`|f(x; m_h) - f(x; m_a)|`), the same ``_above``, ``position_median`` / ``_p05`` /
        ``_p95`` (where :math:`f(x; m_h)` sits in the interval: 0 at its lower end, 1 at its
        upper end), ``measured_spread`` (the 5-95 % range of :math:`f(x; m_h)` over the events:
        the scale the widths compare with), and ``violations`` (events outside the interval beyond a float64 allowance
        of :math:`10^{-10}` relative: must be 0).
    """
    import torch

    from ..bounds.conditioned import condition_interval, segment_condition_slopes

    plain = model.plain_float64()
    x = inputs(test, 0.0).double()  # the float32 inputs the model receives, as float64

    def f(mass):
        x[:, -1] = float(mass)
        with torch.no_grad():
            return np.concatenate([plain(x[s : s + 65536])[:, 0].numpy() for s in range(0, len(x), 65536)])

    sub = rng.choice(len(test), size=min(int(segment_events), len(test)), replace=False) if segment_events else None
    out = {}
    for mh in map(float, held_out):
        pair = neighbours(mh, train_masses)
        if pair is None:
            continue
        ma, mb = pair
        fa, fb, fh = f(ma), f(mb), f(mh)
        slack = 1e-10 * (1 + np.abs(fa) + np.abs(fb) + np.abs(fh))

        def stats(lo, hi, fa=fa, fb=fb, fh=fh, slack=slack):
            width = hi - lo
            pos = (fh - lo) / np.where(width > 0, width, np.nan)
            return {"width_max": float(width.max()), "width_median": float(np.median(width)),
                    "position_median": float(np.nanmedian(pos)), "position_p05": float(np.nanpercentile(pos, 5)),
                    "position_p95": float(np.nanpercentile(pos, 95)),
                    "violations": int(np.sum((fh < lo - slack) | (fh > hi + slack)))}

        lo, hi = condition_interval(fa, fb, ma, mb, mh, slope)
        st = stats(lo, hi)
        da, db = np.abs(fh - fa), np.abs(fh - fb)
        row = {"below": ma, "above": mb, "n_events": int(len(fh)), "certified_slope": float(slope),
               "certified_half_width_below": float(slope * (mh - ma)), "certified_half_width_above": float(slope * (mb - mh)),
               "certified_width_max": st["width_max"], "certified_width_median": st["width_median"],
               "measured_change_below_max": float(da.max()), "measured_change_below_median": float(np.median(da)),
               "measured_change_above_max": float(db.max()), "measured_change_above_median": float(np.median(db)),
               "measured_change_max": float(np.maximum(da, db).max()),
               "measured_spread": float(np.percentile(fh, 95) - np.percentile(fh, 5)),
               "position_median": st["position_median"], "position_p05": st["position_p05"],
               "position_p95": st["position_p95"], "violations": st["violations"]}
        if sub is not None:
            xs = x[sub, :-1].numpy()
            sa = segment_condition_slopes(plain, xs, ma, mh)[:, 0]
            sb = segment_condition_slopes(plain, xs, mh, mb)[:, 0]
            seg = stats(*condition_interval(fa[sub], fb[sub], ma, mb, mh, sa, sb), fa=fa[sub], fb=fb[sub], fh=fh[sub],
                        slack=slack[sub])
            row.update({"segment_n_events": int(len(sub)), "segment_slope_max": float(max(sa.max(), sb.max())),
                        "segment_width_max": seg["width_max"], "segment_width_median": seg["width_median"],
                        "segment_position_median": seg["position_median"], "segment_violations": seg["violations"],
                        "segment_measured_change_max": float(np.maximum(da[sub], db[sub]).max())})
        out[mh] = row
    return out


def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """Table 1 of Anzalone et al. (structure) on synthetic or real HEPMASS data; see the module docstring."""
    from ..nn import save_model
    from ..report.hepmass import findings, summarize, write_report

    cfg = HepmassConfig.from_options(quick, seed, options)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    train, test, source = task_data(cfg, progress)
    masses = sorted(np.unique(test.mass[test.label == 1]).tolist())
    missing = [m for m in cfg.held_out + cfg.held_out_single if m not in masses]
    if missing:
        raise ConfigurationError(f"Held-out masses {missing} have no test signal; the test masses are {masses}.")
    train_masses = [m for m in masses if m not in cfg.held_out]
    if not train_masses:
        raise ConfigurationError(f"Every mass {masses} is held out; nothing is left to train the interpolation on.")
    inputs = ModelInputs(train)
    mass_range = (min(masses), max(masses))
    box = certificate_box(inputs, [train, test], mass_range)
    data_seconds = time.perf_counter() - start
    rng = np.random.default_rng([cfg.seed, 3])
    eval_masses = {"classification": masses, "interpolation": cfg.held_out}
    if cfg.held_out_single:
        eval_masses["interpolation-1000"] = cfg.held_out_single
    sets = {p: training_set(train, p, held, cfg.background_mass, np.random.default_rng([cfg.seed, 4]))
            for p, held in eval_masses.items()}
    encodings = {p: mass_encoding(cfg.mass_encoding, data, inputs, mass_range) for p, data in sets.items()}

    jobs = [(p, c, s) for s in range(cfg.seeds) for p in sets for c in cfg.combinations]
    jobs += [(p, "no mass", s) for s in range(cfg.seeds) for p in sets]
    jobs += [("classification", "per mass", s) for s in range(cfg.seeds)]
    ablation = []
    if cfg.ablation:
        ablation = [(scheme, bm, p) for bm in BACKGROUND_MASS for scheme in SCHEMES for p in ("classification", "interpolation")]
    records, roc, kept, ablation_rows = [], {}, {}, []
    with torch_threads(max(1, int(cfg.threads))):
        _models(cfg, jobs, ablation, sets, train, test, inputs, masses, encodings, box, eval_masses, rng,
                records, roc, kept, ablation_rows, progress)
    train_seconds = time.perf_counter() - start - data_seconds

    table = summarize(records, cfg.combinations)
    found = findings(table, records, masses, cfg.held_out, cfg.held_out_single)
    doc = {
        "what": "Metrics are exact on the stated test events (measured); 'certified_mass_slope' is a certified "
                "bound on |d logit / d mass| per GeV over the data box (float64 interval propagation); "
                "'sampled_mass_slope_max' is an estimate from random pairs and must not exceed it; in "
                "'interpolation_guarantee' the 'certified_*' and 'segment_width_*' numbers are bounds (network "
                "output units) given the float64 values of f at the neighbouring masses (their evaluation rounding, "
                "about 1e-13 relative, is not carried), the 'measured_*' and 'position_*' numbers are measured on every test event.",
        "source": source, "quick": bool(quick), "config": {k: v for k, v in asdict(cfg).items()},
        "masses": masses, "train_masses_interpolation": train_masses, "held_out": cfg.held_out,
        "held_out_single": cfg.held_out_single, "eval_masses": eval_masses,
        "mass_encoding": {p: asdict(e) for p, e in encodings.items()},
        "counts": {"train": train.counts(), "test": test.counts()},
        "table": table, "records": records, "ablation": ablation_rows, "findings": found,
        "seconds": {"data": round(data_seconds, 1), "models": round(train_seconds, 1)},
    }
    write_json(out_dir / "metrics.json", doc)
    if "model" in kept:
        save_model(kept["model"], out_dir / "model")
        write_json(out_dir / "preprocessing.json", {
            "what": "model input = [(features - mean) / std, mass in GeV]; the saved model is affine/all, seed 0, "
                    "classification protocol", "mean": inputs.mean.tolist(), "std": inputs.std.tolist()})
    write_json(out_dir / "roc.json", {"what": "ROC points (exact, subsampled to 300 per curve) of seed 0, "
                                      "classification protocol", "curves": roc})
    write_report(out_dir, doc, roc)
    compact = {name: {p: {k: {"mean": v["mean"], "std": v["std"]} for k, v in row[p].items()}
                      for p in eval_masses if p in row} for name, row in table.items()}
    return {"table": compact, "findings": found, "source": source, "text": _text(doc)}


def _roc_points(test: HepmassData, score, m: float, n_points: int = 300) -> dict:
    bkg = test.label == 0
    events = test.subset(bkg | ((test.label == 1) & (test.mass == m)))
    fpr, tpr, _ = roc_curve(events.label, score(events, m))
    keep = np.unique(np.linspace(0, len(fpr) - 1, n_points).astype(int))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def _text(doc: dict) -> str:
    t = doc["table"]
    cfg = doc["config"]
    lines = [f"hepmass: {doc['source']}; {cfg['seeds']} seed(s), {cfg['steps']} steps per model, balance "
             f"{cfg['balance']}, background mass {cfg['background_mass']}, mass encoding {cfg['mass_encoding']}",
             f"  AUROC in % (mean +- std over seeds, exact on {sum(doc['counts']['test']['signal'].values())} test signal "
             f"and {sum(doc['counts']['test']['background'].values())} test background events); classification: all "
             f"masses, interpolation: held-out {', '.join(f'{m:g}' for m in doc['held_out'])} GeV, interp-1: held-out "
             f"{', '.join(f'{m:g}' for m in doc['held_out_single'])} GeV",
             f"  {'model':<14} {'classification':>16} {'interpolation':>16} {'interp-1':>16}  {'cert. |df/dm| /TeV':>18}"]
    fmt = lambda r: "" if r is None else f"{100 * r['auroc']['mean']:6.2f} +- {100 * r['auroc']['std']:4.2f}"  # noqa: E731
    for name, row in t.items():
        cols = [fmt(row.get(p)) for p in ("classification", "interpolation", "interpolation-1000")]
        if name == "per mass":  # trained at the held-out masses: a reference, not an interpolation
            from ..report.hepmass import _oracle

            for j, held in ((1, doc["held_out"]), (2, doc["held_out_single"])):
                cols[j] = f"{100 * _oracle(t, held)['auroc']:6.2f} oracle" if held else ""
        cert = row.get("certified_mass_slope")
        lines.append(f"  {name:<14} {cols[0]:>16} {cols[1]:>16} {cols[2]:>16}  {'' if cert is None else f'{1000 * cert:18.3g}'}")
    guarantee = t.get("affine/all", {}).get("interpolation_guarantee", {})
    if guarantee:
        lines.append("  interpolation guarantee, affine/all (network output f, mean over seeds): certified width of the "
                     "interval of f(x; m) from its trained neighbours (a bound: box-wide slope, per-event slopes) "
                     "against the measured largest change from either neighbour, over the test events")
        for protocol, per_mass in guarantee.items():
            for m, g in per_mass.items():
                seg = (f", per-event {g['segment_width_max']:.3g} (median position {g['segment_position_median']:.2f})"
                       if "segment_width_max" in g else "")
                lines.append(f"    {protocol:<18} {float(m):>5g} GeV from {g['below']:g}/{g['above']:g}: certified max "
                             f"width {g['certified_width_max']:.3g}{seg}; measured max change {g['measured_change_max']:.3g}"
                             f" (5-95 % range of f there {g['measured_spread']:.3g})"
                             f", median position {g['position_median']:.2f}, violations "
                             f"{g['violations'] + g.get('segment_violations', 0)}")
    if doc["ablation"]:
        from ..report.hepmass import _ablation_rows

        lines.append("  balance / background mass (affine/all, one seed): AUROC % classification, interpolation")
        lines += [f"    {r[0]:<10} {r[1]:<9} {r[2]:>6} {r[4]:>6}" for r in _ablation_rows(doc["ablation"])]
    lines.append("  findings" + (" (smoke-sized --quick run: not meaningful)" if doc["quick"] else "") + ":")
    lines += [f"   - {f['verdict']}: {f['text']}" for f in doc["findings"]]
    lines.append(f"  seconds: data {doc['seconds']['data']}, models {doc['seconds']['models']}")
    return "\n".join(lines)


def _models(cfg, jobs, ablation, sets, train, test, inputs, masses, encodings, box, eval_masses, rng,
            records, roc, kept, ablation_rows, progress) -> None:
    """Train and evaluate every model of the run (appends to ``records``, ``roc``, ``kept``, ``ablation_rows``)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs) + len(ablation), desc="hepmass models", disable=not progress)
    for protocol, name, s in jobs:
        data = sets[protocol]
        model_seed = 1000 * cfg.seed + s
        if name == "per mass":
            nets, seconds = {}, 0.0
            for m in masses:
                sub = data.subset((data.label == 0) | (data.mass == m))
                net = _plain(cfg, model_seed)
                seconds += train_classifier(net, inputs(sub, with_mass=False), sub, cfg, model_seed, "class", False, f"per mass {m:g}")
                nets[m] = net
            score = lambda ev, m, nets=nets: predict_logits(nets[m], inputs(ev, with_mass=False))  # noqa: E731
            cert = None
        elif name == "no mass":
            net = _plain(cfg, model_seed)
            seconds = train_classifier(net, inputs(data, with_mass=False), data, cfg, model_seed, cfg.balance, False, name)
            score = lambda ev, m, net=net: predict_logits(net, inputs(ev, with_mass=False))  # noqa: E731
            cert = None
        else:
            net = conditioned_model(cfg, name, encodings[protocol], model_seed)
            seconds = train_classifier(net, inputs(data), data, cfg, model_seed, cfg.balance, False, name)
            score = lambda ev, m, net=net: predict_logits(net, inputs(ev, m))  # noqa: E731
            cert = mass_certificate(net, box, test, inputs, rng, masses)
            if protocol != "classification":
                trained = [m for m in masses if m not in eval_masses[protocol]]
                cert["interpolation_guarantee"] = interpolation_guarantee(
                    net, test, inputs, eval_masses[protocol], trained, cert["certified_mass_slope"],
                    np.random.default_rng([cfg.seed, 6, s]))  # its own stream: the sampled checks stay as they were
        per_mass = evaluate_per_mass(score, test, masses)
        records.append({"protocol": protocol, "model": name, "seed": s, "seconds": round(seconds, 2),
                        "per_mass": per_mass, "average": average_metrics(per_mass, eval_masses[protocol]),
                        "mass_certificate": cert})
        if s == 0 and name in ("affine/all", "per mass", "no mass") and protocol == "classification":
            roc[name] = {m: _roc_points(test, score, m) for m in masses}
        if s == 0 and protocol == "classification" and name == "affine/all":
            kept["model"] = net
        bar.update()
    for scheme, bm, protocol in ablation:
        data = training_set(train, protocol, eval_masses[protocol] if protocol != "classification" else [], bm,
                             np.random.default_rng([cfg.seed, 5]))
        # the encoding is fitted on the protocol's training signal, which the background masses do not change
        net = conditioned_model(cfg, "affine/all", encodings[protocol], 1000 * cfg.seed)
        seconds = train_classifier(net, inputs(data), data, cfg, 1000 * cfg.seed, scheme, False, f"ablation {scheme}/{bm}")
        per_mass = evaluate_per_mass(lambda ev, m, net=net: predict_logits(net, inputs(ev, m)), test, masses)
        ablation_rows.append({"balance": scheme, "background_mass": bm, "protocol": protocol,
                              "seconds": round(seconds, 2), "per_mass": per_mass,
                              "average": average_metrics(per_mass, eval_masses[protocol])})
        bar.update()
    bar.close()


