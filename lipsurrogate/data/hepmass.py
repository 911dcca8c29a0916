r"""HEPMASS data: a streaming CSV loader and a seeded synthetic generator with the same structure.

HEPMASS (Baldi et al. 2016) simulates a new particle :math:`X \to t\bar t` of mass :math:`m` in
the lepton + jets channel against Standard-Model :math:`t\bar t` background. Each CSV row is

``# label, f0, ..., f26, mass``

with ``label`` 1 for signal and 0 for background, 22 low-level features (lepton, missing energy,
four jets with b-tags) and 5 high-level invariant masses, all normalised, and ``mass`` the mass
hypothesis in GeV: 500, 750, 1000, 1250 or 1500 (500 is written as ``499.99997``). Background
rows carry masses drawn from the signal distribution. HEPMASS-IMB (Anzalone et al.) keeps the
signal of the five masses at the fractions :data:`IMB_FRACTIONS` and ships it as two files,
``imbalanced_signal.csv`` and ``imbalanced_background.csv``.

Functions
---------
:func:`iter_hepmass_csv`
    Streams one file in chunks of ``chunksize`` rows (multi-GB files never sit in memory as
    text); the header and every row are validated, errors name the line and the column.
:func:`load_hepmass`
    Whole files (one or several, e.g. the two HEPMASS-IMB files) as one :class:`HepmassData`.
:func:`synthetic_hepmass`
    Seeded events of the same structure (27 features, a mass column, signal at several masses,
    one or more background processes, optional HEPMASS-IMB imbalance), so the task runs with no
    download. The physics-ish model is written in its docstring.
:func:`assign_background_mass`
    The two background mass assignments of Anzalone et al.: ``"identical"`` and ``"uniform"``.
:func:`synthetic_log_likelihood_ratio`
    The generator's own signal / background log density ratio at a mass hypothesis (by
    quadrature): the Bayes-optimal score on synthetic events, an oracle for interpolation.

Mass values are snapped to the known grid (:data:`HEPMASS_MASSES`) when they lie within
``mass_tolerance`` (default 0.01 GeV) of a grid mass; ``499.99997`` becomes exactly 500.
"""

from __future__ import annotations

import gzip
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..exceptions import ConfigurationError, DataSchemaError

__all__ = [
    "HEPMASS_MASSES",
    "IMB_FRACTIONS",
    "FEATURES",
    "COLUMNS",
    "BACKGROUND_MASS",
    "HepmassData",
    "iter_hepmass_csv",
    "load_hepmass",
    "synthetic_hepmass",
    "assign_background_mass",
    "synthetic_log_likelihood_ratio",
]

HEPMASS_MASSES: tuple[float, ...] = (500.0, 750.0, 1000.0, 1250.0, 1500.0)
"""Signal mass hypotheses of HEPMASS, GeV."""

IMB_FRACTIONS: dict[float, float] = {500.0: 1.0, 750.0: 0.6, 1000.0: 0.36, 1250.0: 0.1296, 1500.0: 0.0168}
"""Fraction of the signal kept per mass in HEPMASS-IMB (Anzalone et al.)."""

FEATURES: tuple[str, ...] = tuple(f"f{i}" for i in range(27))
COLUMNS: tuple[str, ...] = ("# label", *FEATURES, "mass")
"""The header of a HEPMASS CSV file, in order."""

BACKGROUND_MASS = ("identical", "uniform")
"""Background mass assignments: as the signal masses are distributed, or uniform over the grid."""

SYNTHETIC_FEATURES: tuple[str, ...] = (
    "lep_pt", "lep_eta", "lep_phi", "met", "met_phi",
    "j1_pt", "j1_eta", "j1_phi", "j1_btag", "j2_pt", "j2_eta", "j2_phi", "j2_btag",
    "j3_pt", "j3_eta", "j3_phi", "j3_btag", "j4_pt", "j4_eta", "j4_phi", "j4_btag", "lep_iso",
    "m_jj", "m_jjj", "m_lv", "m_jlv", "m_wwbb",
)
"""What the synthetic generator's ``f0..f26`` stand for (physical units: GeV, radians, tags)."""


@dataclass
class HepmassData:
    """Labelled HEPMASS-like events.

    Attributes
    ----------
    features : ndarray, float32, shape (n, 27)
    label : ndarray, int8, shape (n,)
        1 signal, 0 background.
    mass : ndarray, float64, shape (n,)
        Mass hypothesis, GeV (for background: an assigned value, see :func:`assign_background_mass`).
    process : ndarray, int8, shape (n,)
        Background process index into ``process_names`` (-1 for signal events).
    feature_names : tuple of str
    process_names : tuple of str
    attrs : dict
        Provenance: source file(s) or generator settings.
    """

    features: np.ndarray
    label: np.ndarray
    mass: np.ndarray
    process: np.ndarray
    feature_names: tuple[str, ...] = FEATURES
    process_names: tuple[str, ...] = ("background",)
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def subset(self, index) -> "HepmassData":
        """The events selected by ``index`` (integer indices or a boolean mask)."""
        return HepmassData(self.features[index], self.label[index], self.mass[index], self.process[index],
                           self.feature_names, self.process_names, dict(self.attrs))

    def counts(self) -> dict:
        """Signal events per mass and background events per process (exact counts)."""
        sig = self.label == 1
        masses, n = np.unique(self.mass[sig], return_counts=True)
        bkg = {name: int(np.sum((~sig) & (self.process == k))) for k, name in enumerate(self.process_names)}
        return {"signal": {float(m): int(c) for m, c in zip(masses, n)}, "background": bkg}

    def to_xarray(self):
        """The events as an :class:`xarray.Dataset` (dimension ``event``), with units and provenance."""
        import xarray as xr

        return xr.Dataset(
            {
                "features": (("event", "feature"), self.features),
                "label": ("event", self.label, {"long_name": "1 signal, 0 background"}),
                "mass": ("event", self.mass, {"units": "GeV", "long_name": "mass hypothesis"}),
                "process": ("event", self.process, {"long_name": "background process index (-1: signal)",
                                                    "names": list(self.process_names)}),
            },
            coords={"feature": list(self.feature_names)},
            attrs={k: str(v) for k, v in self.attrs.items()},
        )


def _concatenate(parts: Sequence[HepmassData], attrs: dict) -> HepmassData:
    if not parts:
        raise DataSchemaError("Expected at least one event. Got none.")
    return HepmassData(
        np.concatenate([p.features for p in parts]), np.concatenate([p.label for p in parts]),
        np.concatenate([p.mass for p in parts]), np.concatenate([p.process for p in parts]),
        parts[0].feature_names, parts[0].process_names, attrs,
    )


# ----------------------------------------------------------------------------------------------
# CSV loader
# ----------------------------------------------------------------------------------------------


def _open(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _check_header(line: str, path: Path) -> None:
    got = [c.strip() for c in line.rstrip("\r\n").split(",")]
    if got == list(COLUMNS):
        return
    for j, (want, have) in enumerate(itertools.zip_longest(COLUMNS, got)):
        if want != have:
            raise DataSchemaError(
                f"{path}, line 1 (header), column {j + 1}: expected {want!r}, got {have!r}. A HEPMASS file "
                f"starts with the header '{','.join(COLUMNS[:3])},...,f26,mass' ({len(COLUMNS)} columns); "
                f"this one has {len(got)}."
            )


def _locate(path: Path, lines: Sequence[str], numbers: Sequence[int]) -> DataSchemaError:
    """The error for the first row of ``lines`` that does not parse (slow path, only after a failure)."""
    for text, lineno in zip(lines, numbers):
        fields = text.rstrip("\r\n").split(",")
        if len(fields) != len(COLUMNS):
            return DataSchemaError(
                f"{path}, line {lineno}: expected {len(COLUMNS)} comma-separated values (# label, f0..f26, mass), "
                f"got {len(fields)}."
            )
        for j, value in enumerate(fields):
            try:
                float(value)
            except ValueError:
                return DataSchemaError(
                    f"{path}, line {lineno}, column {COLUMNS[j]!r} (field {j + 1}): expected a number, got {value.strip()!r}."
                )
    return DataSchemaError(f"{path}: lines {numbers[0]}..{numbers[-1]} do not parse as {len(COLUMNS)} numbers per row.")


def _parse(path: Path, lines: list[str], numbers: list[int], masses, mass_tolerance: float) -> HepmassData:
    try:
        values = np.loadtxt(lines, delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        raise _locate(path, lines, numbers) from None
    if values.shape[1] != len(COLUMNS):
        raise _locate(path, lines, numbers)
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataSchemaError(f"{path}, line {numbers[i]}, column {COLUMNS[j]!r}: expected a finite number, "
                              f"got {values[i, j]}.")
    label = values[:, 0]
    bad = (label != 0) & (label != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataSchemaError(f"{path}, line {numbers[i]}, column '# label': expected 0 (background) or 1 (signal), "
                              f"got {label[i]:g}.")
    mass = values[:, -1]
    if masses is not None:
        grid = np.asarray(masses, dtype=np.float64)
        k = np.abs(mass[:, None] - grid[None, :]).argmin(axis=1)
        off = np.abs(mass - grid[k]) > mass_tolerance
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise DataSchemaError(
                f"{path}, line {numbers[i]}, column 'mass': expected one of {grid.tolist()} GeV (within "
                f"{mass_tolerance} GeV), got {mass[i]!r}."
            )
        mass = grid[k]
    labels = label.astype(np.int8)
    return HepmassData(values[:, 1:-1].astype(np.float32), labels, mass, np.where(labels == 1, -1, 0).astype(np.int8),
                       attrs={"source": str(path), "first_line": numbers[0]})


def iter_hepmass_csv(
    path,
    *,
    chunksize: int = 100_000,
    masses: Sequence[float] | None = HEPMASS_MASSES,
    mass_tolerance: float = 0.01,
    max_rows: int | None = None,
) -> Iterator[HepmassData]:
    """Stream a HEPMASS CSV file (plain or ``.gz``) in chunks of ``chunksize`` rows.

    Parameters
    ----------
    path : path-like
    chunksize : int
        Rows per yielded chunk; only one chunk of text is held at a time.
    masses : sequence of float or None
        The mass grid. Each ``mass`` value is snapped to the nearest grid mass and must lie within
        ``mass_tolerance`` GeV of it (``499.99997`` -> 500). ``None`` keeps the values as written.
    mass_tolerance : float
        GeV.
    max_rows : int, optional
        Stop after this many data rows.

    Yields
    ------
    HepmassData
        ``attrs["first_line"]`` is the file line number of the chunk's first row. Background rows
        get process 0 (HEPMASS has one background process, :math:`t\\bar t`).

    Raises
    ------
    DataSchemaError
        A missing file, a wrong header (naming the column), a row with the wrong number of
        values, a value that is not a finite number (naming line and column), a label other than
        0/1 or a mass off the grid.
    """
    path = Path(path)
    if chunksize < 1:
        raise ConfigurationError(f"'chunksize' must be a positive integer. Got {chunksize!r} instead.")
    if not path.is_file():
        raise DataSchemaError(f"Expected a HEPMASS CSV file at {path}. Got no such file.")
    left = np.inf if max_rows is None else int(max_rows)
    with _open(path) as handle:
        header = handle.readline()
        if not header:
            raise DataSchemaError(f"{path}: expected the header line '# label,f0,...,f26,mass'. Got an empty file.")
        _check_header(header, path)
        lineno = 1
        while left > 0:
            lines, numbers = [], []
            for text in handle:
                lineno += 1
                if not text.strip():
                    continue  # blank lines (e.g. a trailing newline pair) carry no event
                lines.append(text)
                numbers.append(lineno)
                if len(lines) >= min(chunksize, left):
                    break
            if not lines:
                return
            left -= len(lines)
            yield _parse(path, lines, numbers, masses, mass_tolerance)


def load_hepmass(
    paths,
    *,
    chunksize: int = 100_000,
    masses: Sequence[float] | None = HEPMASS_MASSES,
    mass_tolerance: float = 0.01,
    max_rows: int | None = None,
    progress: bool = False,
) -> HepmassData:
    """One or several HEPMASS CSV files as one :class:`HepmassData` (read chunk by chunk).

    ``paths`` is a path or a sequence of paths (e.g. ``imbalanced_signal.csv`` and
    ``imbalanced_background.csv``); ``max_rows`` applies to each file. Other parameters as in
    :func:`iter_hepmass_csv`.
    """
    from tqdm.auto import tqdm

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ConfigurationError("'paths' must name at least one HEPMASS CSV file. Got none.")
    parts = []
    for path in paths:
        chunks = iter_hepmass_csv(path, chunksize=chunksize, masses=masses, mass_tolerance=mass_tolerance,
                                  max_rows=max_rows)
        parts.extend(tqdm(chunks, desc=f"reading {Path(path).name}", unit="chunk", disable=not progress, leave=False))
    return _concatenate(parts, {"source": ", ".join(str(p) for p in paths), "kind": "HEPMASS CSV"})


# ----------------------------------------------------------------------------------------------
# Background mass assignment
# ----------------------------------------------------------------------------------------------


def assign_background_mass(data: HepmassData, strategy: str, rng: np.random.Generator,
                           masses: Sequence[float] | None = None) -> HepmassData:
    """Reassign the mass of every background event (signal events are unchanged).

    Parameters
    ----------
    strategy : {"identical", "uniform"}
        ``"identical"``: drawn from the signal events' own mass distribution (the HEPMASS
        convention; with imbalanced signal, background is imbalanced the same way).
        ``"uniform"``: uniform over the distinct masses (``masses``, default: those of the signal).
    rng : numpy Generator
    """
    if strategy not in BACKGROUND_MASS:
        raise ConfigurationError(f"'background_mass' must be one of {BACKGROUND_MASS}. Got {strategy!r} instead.")
    sig = data.label == 1
    if not sig.any():
        raise DataSchemaError("Background masses are drawn from the signal masses, but there are no signal events.")
    bkg = np.flatnonzero(~sig)
    mass = data.mass.copy()
    if strategy == "identical":
        mass[bkg] = rng.choice(data.mass[sig], size=bkg.size, replace=True)
    else:
        grid = np.unique(data.mass[sig]) if masses is None else np.asarray(masses, dtype=np.float64)
        mass[bkg] = rng.choice(grid, size=bkg.size, replace=True)
    out = data.subset(slice(None))
    out.mass = mass
    out.attrs["background_mass"] = strategy
    return out


# ----------------------------------------------------------------------------------------------
# Synthetic generator
# ----------------------------------------------------------------------------------------------


def _fractions(imbalance, masses) -> np.ndarray:
    if imbalance is None:
        return np.ones(len(masses))
    if isinstance(imbalance, str):
        if imbalance != "hepmass-imb":
            raise ConfigurationError(f"'imbalance' must be None, 'hepmass-imb', a mapping mass -> fraction or a "
                                     f"sequence of fractions. Got {imbalance!r} instead.")
        missing = [m for m in masses if float(m) not in IMB_FRACTIONS]
        if missing:
            raise ConfigurationError(f"'hepmass-imb' fractions are defined for {list(IMB_FRACTIONS)} GeV. Got masses {missing}.")
        return np.array([IMB_FRACTIONS[float(m)] for m in masses])
    if isinstance(imbalance, Mapping):
        values = np.array([float(imbalance[m]) for m in masses])
    else:
        values = np.asarray(imbalance, dtype=np.float64)
    if values.shape != (len(masses),) or np.any(values <= 0) or np.any(values > 1):
        raise ConfigurationError(f"'imbalance' needs one fraction in (0, 1] per mass ({len(masses)}). Got {imbalance!r}.")
    return values


def _event_features(rng: np.random.Generator, system_mass: np.ndarray, kind: str) -> np.ndarray:
    """The 27 features of events with a given true system mass; ``kind`` in {"tt", "w"}."""
    n = system_mass.size
    top = kind == "tt"
    # Jet and lepton transverse momenta follow the system mass (a Jacobian-like share of m/2).
    share = np.sort(rng.beta(2.5, 3.0, size=(n, 5)), axis=1)[:, ::-1]
    scale = system_mass[:, None] / 2
    pts = np.maximum(share * scale * rng.lognormal(0.0, 0.12, size=(n, 5)), 20.0)
    eta_width = 1.0 if top else 1.3
    eta = rng.normal(0.0, eta_width, size=(n, 5)) * np.clip(600.0 / system_mass, 0.5, 1.5)[:, None] ** 0.3
    phi = rng.uniform(-np.pi, np.pi, size=(n, 6))
    btag_p = np.array([0.7, 0.7, 0.1, 0.1]) if top else np.array([0.15, 0.1, 0.05, 0.05])
    btag = (rng.uniform(size=(n, 4)) < btag_p).astype(np.float64)
    met = rng.gamma(2.0, 1.0, size=n) * (0.08 * system_mass + 10.0)
    iso = rng.exponential(0.05, size=n)  # uninformative
    if top:
        m_jj = rng.normal(80.4, 9.0, size=n)
        m_jjj = rng.normal(172.5, 17.0, size=n)
        m_lv = rng.normal(80.4, 4.0, size=n)
        m_jlv = rng.normal(172.5, 22.0, size=n)
    else:
        m_jj = 25.0 + rng.gamma(2.0, 35.0, size=n)
        m_jjj = 70.0 + rng.gamma(2.0, 60.0, size=n)
        m_lv = rng.normal(80.4, 4.0, size=n)
        m_jlv = 60.0 + rng.gamma(2.0, 65.0, size=n)
    # the reconstructed resonance: 8% resolution, a 25% tail of badly reconstructed events
    m_wwbb = system_mass * rng.normal(1.0, 0.08, size=n)
    bad = rng.uniform(size=n) < 0.25
    m_wwbb[bad] = system_mass[bad] * rng.uniform(0.6, 1.0, size=int(bad.sum()))
    cols = [pts[:, 0], eta[:, 0], phi[:, 0], met, phi[:, 1]]
    for j in range(4):
        cols += [pts[:, j + 1], eta[:, j + 1], phi[:, j + 2], btag[:, j]]
    cols += [iso, m_jj, m_jjj, m_lv, m_jlv, m_wwbb]
    return np.stack(cols, axis=1)


_BACKGROUNDS = {
    # name: (kind, threshold GeV, gamma shape, gamma scale GeV): falling spectra above a threshold
    "ttbar": ("tt", 350.0, 1.5, 200.0),
    "wjets": ("w", 250.0, 1.4, 200.0),
}


def synthetic_hepmass(
    n: int,
    *,
    masses: Sequence[float] = HEPMASS_MASSES,
    imbalance=None,
    background_mass: str = "identical",
    backgrounds: Mapping[str, float] | None = None,
    signal_fraction: float = 0.5,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
) -> HepmassData:
    r"""Seeded HEPMASS-like events: 27 features, a mass column, signal at several masses.

    Model (physics-ish, not a detector simulation). Every event has a true system mass
    :math:`M`: the resonance mass :math:`m` for signal, and for a background process a falling
    spectrum :math:`M = M_0 + \Gamma(k, \theta)` above a threshold (:math:`t\bar t`:
    :math:`M_0 = 350`, :math:`k = 1.5`, :math:`\theta = 200` GeV; W + jets: 250, 1.4, 200).
    Then

    * jet and lepton :math:`p_T` are sorted shares :math:`\mathrm{Beta}(2.5, 3)` of :math:`M/2`
      with 12% log-normal smearing; pseudorapidities are normal, narrower for top pairs and for
      heavier systems; azimuths are uniform (uninformative); missing energy grows with :math:`M`;
    * b-tags are Bernoulli (0.7 for the two b jets of top pairs, low for W + jets);
    * :math:`m_{jj}, m_{\ell\nu}` peak at the W mass and :math:`m_{jjj}, m_{j\ell\nu}` at the
      top mass for top pairs (signal and :math:`t\bar t`); W + jets has broad spectra instead;
    * :math:`m_{WWbb}` (``f26``) measures :math:`M` with 8% resolution and a 25% low tail.

    So signal and :math:`t\bar t` differ mainly through :math:`M`: low masses sit on top of the
    falling background (hard), high masses stand out (easy), as in HEPMASS.

    Parameters
    ----------
    n : int
        Number of events before any signal thinning: ``signal_fraction * n`` signal shared
        equally by the masses, the rest background shared by ``backgrounds``.
    masses : sequence of float
        Signal masses, GeV.
    imbalance : None, "hepmass-imb", mapping or sequence
        Fraction of each mass's signal that is kept (HEPMASS-IMB: :data:`IMB_FRACTIONS`), as
        HEPMASS-IMB removes signal from HEPMASS.
    background_mass : {"identical", "uniform"}
        See :func:`assign_background_mass`.
    backgrounds : mapping name -> share, optional
        Background processes among ``"ttbar"`` and ``"wjets"`` (default 0.75 / 0.25).
    rng, seed
        A numpy Generator, or a seed for a new one (one of them).

    Returns
    -------
    HepmassData
        Shuffled events; ``feature_names`` are ``f0..f26`` and ``attrs["physical_names"]`` says
        what each stands for (:data:`SYNTHETIC_FEATURES`, in GeV, radians and tags).
    """
    if rng is None:
        rng = np.random.default_rng(seed)
    elif seed is not None:
        raise ConfigurationError("Pass either 'rng' or 'seed' to synthetic_hepmass, not both.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 4:
        raise ConfigurationError(f"'n' must be an integer >= 4. Got {n!r} instead.")
    masses = [float(m) for m in masses]
    if not masses or any(m <= 0 for m in masses):
        raise ConfigurationError(f"'masses' must be positive masses in GeV. Got {masses}.")
    if not 0 < signal_fraction < 1:
        raise ConfigurationError(f"'signal_fraction' must lie in (0, 1). Got {signal_fraction!r} instead.")
    backgrounds = {"ttbar": 0.75, "wjets": 0.25} if backgrounds is None else dict(backgrounds)
    unknown = set(backgrounds) - set(_BACKGROUNDS)
    if not backgrounds or unknown or any(v <= 0 for v in backgrounds.values()):
        raise ConfigurationError(f"'backgrounds' maps process names among {sorted(_BACKGROUNDS)} to positive shares. "
                                 f"Got {backgrounds!r}.")
    fractions = _fractions(imbalance, masses)
    per_mass = np.round(n * signal_fraction / len(masses) * fractions).astype(int)
    n_bkg = n - int(round(n * signal_fraction))
    shares = np.array(list(backgrounds.values()), dtype=np.float64)
    per_proc = np.floor(n_bkg * shares / shares.sum()).astype(int)
    per_proc[0] += n_bkg - per_proc.sum()

    feats, labels, mass, process = [], [], [], []
    for m, k in zip(masses, per_mass):
        feats.append(_event_features(rng, np.full(k, m), "tt"))
        labels.append(np.ones(k, np.int8))
        mass.append(np.full(k, m))
        process.append(np.full(k, -1, np.int8))
    for p, (name, k) in enumerate(zip(backgrounds, per_proc)):
        kind, threshold, shape, scale = _BACKGROUNDS[name]
        system = threshold + rng.gamma(shape, scale, size=k)
        feats.append(_event_features(rng, system, kind))
        labels.append(np.zeros(k, np.int8))
        mass.append(np.zeros(k))
        process.append(np.full(k, p, np.int8))
    order = rng.permutation(int(sum(len(v) for v in labels)))
    data = HepmassData(
        np.concatenate(feats)[order].astype(np.float32), np.concatenate(labels)[order], np.concatenate(mass)[order],
        np.concatenate(process)[order], FEATURES, tuple(backgrounds),
        {"kind": "synthetic HEPMASS", "n": int(n), "masses": masses, "imbalance": str(imbalance),
         "signal_fraction": signal_fraction, "backgrounds": backgrounds, "physical_names": list(SYNTHETIC_FEATURES)},
    )
    return assign_background_mass(data, background_mass, rng, masses)


# ----------------------------------------------------------------------------------------------
# The synthetic generator's likelihood ratio (the Bayes-optimal score on its events)
# ----------------------------------------------------------------------------------------------

_PT, _ETA, _BTAG = [0, 5, 9, 13, 17], [1, 6, 10, 14, 18], [8, 12, 16, 20]
_BTAG_P = {"tt": np.array([0.7, 0.7, 0.1, 0.1]), "w": np.array([0.15, 0.1, 0.05, 0.05])}
_ETA_WIDTH = {"tt": 1.0, "w": 1.3}


def _log_normal_pdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)


def _log_gamma_pdf(y, shape, scale):
    from scipy.special import gammaln

    with np.errstate(divide="ignore", invalid="ignore"):
        out = (shape - 1) * np.log(y) - y / scale - gammaln(shape) - shape * np.log(scale)
    return np.where(y > 0, out, -np.inf)


def _log_kind_terms(x: np.ndarray, kind: str) -> np.ndarray:
    """log density of the b-tags and m_jj, m_jjj, m_jlv given the process kind (they do not depend on M)."""
    p = _BTAG_P[kind]
    tags = x[:, _BTAG]
    out = np.sum(tags * np.log(p) + (1 - tags) * np.log1p(-p), axis=1)
    if kind == "tt":
        out = out + _log_normal_pdf(x[:, 22], 80.4, 9.0) + _log_normal_pdf(x[:, 23], 172.5, 17.0) \
            + _log_normal_pdf(x[:, 25], 172.5, 22.0)
    else:
        out = out + _log_gamma_pdf(x[:, 22] - 25.0, 2.0, 35.0) + _log_gamma_pdf(x[:, 23] - 70.0, 2.0, 60.0) \
            + _log_gamma_pdf(x[:, 25] - 60.0, 2.0, 65.0)
    return out


def _log_mass_terms(x: np.ndarray, M: np.ndarray, kind: str, tail_fraction=None) -> np.ndarray:
    """log density of the etas, the missing energy and m_WWbb given the system mass ``M`` (n, k)."""
    width = _ETA_WIDTH[kind] * np.clip(600.0 / M, 0.5, 1.5) ** 0.3
    out = sum(_log_normal_pdf(x[:, [j]], 0.0, width) for j in _ETA)
    out = out + _log_gamma_pdf(x[:, [3]], 2.0, 0.08 * M + 10.0)
    w = x[:, [26]]
    core = np.log(0.75) + _log_normal_pdf(w, M, 0.08 * M)
    if tail_fraction is None:  # exact: the 25% tail is uniform on [0.6 M, M]
        tail_fraction = ((w >= 0.6 * M) & (w <= M)).astype(np.float64)
    with np.errstate(divide="ignore"):
        tail = np.log(0.25) + np.log(tail_fraction) - np.log(0.4 * M)
    return out + np.logaddexp(core, tail)


def _log_pt_integral(log_2pt: np.ndarray, clipped: np.ndarray, log_M0: float, k: int, step: float, g: int,
                     log_beta: np.ndarray, sigma: float = 0.12) -> np.ndarray:
    """log p(pts | M) for sorted Beta shares, at ``log M = log_M0 + i * step`` for ``i < k``.

    ``log_2pt`` and ``clipped`` (n, 5). The shares lie on the grid ``u = log share =
    -(g - 1 - j + 1/2) * step`` (``j < g``) with ``log_beta`` = log(beta pdf * share * step) on it:
    the midpoint rule, and the ordering share_0 > ... > share_4 by cumulative sums (ties half
    weight). As both grids share ``step``, ``log M + u`` depends on ``i + j`` only and each
    event's smearing kernel is evaluated once per value of ``i + j``. Returns (n, k).
    """
    from scipy.special import ndtr

    t = np.arange(k + g - 1)
    log_Mu = log_M0 - (g - 0.5) * step + t * step  # log M_i + u_j for i + j = t
    d = (log_2pt[:, :, None] - log_Mu[None, None, :]) / sigma  # (n, 5, k + g - 1)
    density = np.exp(-0.5 * d**2 - np.log(sigma * np.sqrt(2 * np.pi)) - log_2pt[:, :, None] + np.log(2.0))
    kernel = np.where(clipped[:, :, None], ndtr(d), density)
    index = np.arange(k)[:, None] + np.arange(g)[None, :]  # (k, g)
    beta = np.exp(log_beta)
    F = kernel[:, 4][:, index] * beta
    for j in (3, 2, 1, 0):
        F = kernel[:, j][:, index] * beta * (np.cumsum(F, axis=-1) - 0.5 * F)
    with np.errstate(divide="ignore"):
        return np.log(120.0 * F.sum(-1))  # 5! orderings of the shares


def synthetic_log_likelihood_ratio(data: HepmassData, masses: Sequence[float], *, backgrounds: Mapping[str, float] | None = None,
                                   step: float = 0.04, chunk: int = 256) -> dict:
    r""":math:`\log p(x \mid \text{signal}, m) - \log p(x \mid \text{background})` under :func:`synthetic_hepmass`'s model.

    The ratio of the generator's own densities, so its ranking is the best any classifier can do
    on these events (Neyman-Pearson): the oracle of the interpolation protocol. Terms common to
    signal and background (azimuths, isolation, :math:`m_{\ell\nu}`) cancel and are left out.
    Given the system mass :math:`M` every feature group is independent and has a closed form
    except the five :math:`p_T` (sorted Beta shares of :math:`M/2`, log-normal smearing, a
    20 GeV floor), whose density is a 5-d integral over the ordered shares: computed by the
    midpoint rule on a grid of :math:`\log` share with spacing ``step`` and the ordering by
    cumulative sums. The background integrates over :math:`M` (threshold + Gamma) on a
    :math:`\log M` grid of the same spacing, with the exact prior mass of each cell
    (incomplete gamma) and the :math:`m_{WWbb}` tail averaged over the cell. So the ratio is an
    **estimate** by quadrature (tested: :math:`E_b[e^{r}] = 1` and :math:`E_s[e^{-r}] = 1` on
    generated events), not a bound.

    Parameters
    ----------
    data : HepmassData
        Events in the generator's physical units (``features`` as :func:`synthetic_hepmass` makes
        them, not standardised).
    masses : sequence of float
        Signal mass hypotheses, GeV.
    backgrounds : mapping name -> share, optional
        The background mixture (default: ``data.attrs["backgrounds"]``, else 0.75 / 0.25).
    step : float
        Grid spacing in log share and log M.
    chunk : int
        Events per vectorised block (memory about ``chunk * 15 MB`` at the default ``step``).

    Returns
    -------
    dict
        ``{mass: ndarray (n,)}`` of log ratios; an event impossible under one hypothesis gets
        :math:`\pm 10^6` (finite, for ranking).
    """
    from scipy.special import betaln, gammainc

    if backgrounds is None:
        backgrounds = data.attrs.get("backgrounds") or {"ttbar": 0.75, "wjets": 0.25}
    unknown = set(backgrounds) - set(_BACKGROUNDS)
    if unknown:
        raise ConfigurationError(f"'backgrounds' must be among {sorted(_BACKGROUNDS)}. Got {sorted(unknown)}.")
    total = float(sum(backgrounds.values()))
    x = data.features.astype(np.float64)
    pts = x[:, _PT]
    clipped = pts <= 20.0
    log_2pt = np.log(2.0 * pts)
    # log-share grid: midpoints of cells of width `step` below 0 (shares < 1), down to share 0.004
    g = int(np.ceil(np.log(250.0) / step))
    u = -(np.arange(g)[::-1] + 0.5) * step
    s = np.exp(u)
    log_beta = 1.5 * u + 2.0 * np.log1p(-s) - betaln(2.5, 3.0) + u + np.log(step)
    # background: log sum over processes and M cells of prior mass * p(x | M, kind)
    parts = []
    for name, share in backgrounds.items():
        kind, threshold, shape, scale = _BACKGROUNDS[name]
        k = int(np.ceil(np.log((threshold + 30.0 * shape * scale) / threshold) / step))
        edges = threshold * np.exp(np.arange(k + 1) * step)
        M = np.sqrt(edges[:-1] * edges[1:])
        prior = np.diff(gammainc(shape, (edges - threshold) / scale))
        w = x[:, [26]]
        lo, hi = np.log(edges[:-1])[None, :], np.log(edges[1:])[None, :]
        overlap = np.clip(np.minimum(hi, np.log(w / 0.6)) - np.maximum(lo, np.log(w)), 0.0, None) / step
        with np.errstate(divide="ignore"):
            log_w = np.log(share / total) + np.log(prior)[None, :]
        terms = np.empty((len(x), k))
        for a in range(0, len(x), chunk):
            b = slice(a, a + chunk)
            terms[b] = _log_pt_integral(log_2pt[b], clipped[b], np.log(M[0]), k, step, g, log_beta) \
                + _log_mass_terms(x[b], M[None, :], kind, overlap[b])
        parts.append(np.logaddexp.reduce(terms + log_w, axis=1) + _log_kind_terms(x, kind))
    log_bkg = np.logaddexp.reduce(np.stack(parts), axis=0)
    out = {}
    for m in masses:
        log_sig = _log_kind_terms(x, "tt") + _log_mass_terms(x, np.full((1, 1), float(m)), "tt")[:, 0]
        for a in range(0, len(x), 4 * chunk):
            b = slice(a, a + 4 * chunk)
            log_sig[b] += _log_pt_integral(log_2pt[b], clipped[b], np.log(float(m)), 1, step, g, log_beta)[:, 0]
        with np.errstate(invalid="ignore"):
            r = log_sig - log_bkg
        r = np.where(np.isnan(r), np.where(np.isneginf(log_sig), -1e6, 1e6), r)
        out[float(m)] = np.clip(r, -1e6, 1e6)
    return out
