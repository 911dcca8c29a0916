r"""The one certifier: any supported network against any :class:`~lipsurrogate.bounds.reference.Reference`.

:func:`certify` bounds :math:`\max_{x \in \text{box}} |f(x) - u(x)|` on a rectilinear grid of cells
(certificates.md sections 1-3, ``theory/cell-bounds.md``):

1. **vertex errors** :math:`e_v = f(v) - u(v)` in float64, each with a certified margin
   :math:`m_v` (the rounding bound of the network, :func:`~lipsurrogate.bounds.evaluate_float64`,
   plus the reference's own);
2. **global constants** :math:`L_k = L_{f,k} + L_{u,k}`, with :math:`L_f` certified from the
   weights (:func:`~lipsurrogate.bounds.lipschitz_bounds`) and :math:`L_u` from the reference;
   the consistency check refuses constants that the vertex errors contradict;
3. **local slopes** per block of cells: a signed range of :math:`\partial_k (f - u)`, from affine
   forms of both derivatives (:func:`~lipsurrogate.bounds.affine.error_slopes`: their common
   linear part cancels; for GroupSort(2) networks the blocks' ranges are intersected with the
   backward linear bounds of :mod:`~lipsurrogate.bounds.backward`, refinement's children use the
   forms alone) or from interval propagation
   (:func:`~lipsurrogate.bounds.local.network_derivative_intervals`) minus the reference's
   certified ranges; each cell intersects it with :math:`[-L_k, L_k]` and uses the signed
   program of :func:`~lipsurrogate.bounds.cell_lp.signed_upper_bounds`;
4. the **exact per-cell linear program** (:mod:`~lipsurrogate.bounds.cell_lp`) and **adaptive
   refinement** of the dominating cells (:mod:`~lipsurrogate.bounds.refine`).

Every rung of this ladder is certified; the :class:`Certificate` keeps them all, with the
reference's statement (level, assumptions, where the constants come from) and the seconds each
step took. :meth:`Certificate.save` writes ``certificate.json`` and ``certificate.nc`` into a run
folder and :meth:`Certificate.load` reads them back.
"""

from __future__ import annotations

import datetime
import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import read_json, write_json
from .._version import __version__
from ..exceptions import CertificationError, ConfigurationError, ModelFileError
from .._dask import check_scheduler
from .._validation import positive_int
from .._threads import one_numpy_blas_thread
from .affine import ROW_ALIGN, error_slopes, supports_backward, supports_forms
from .cells import CellCertificate
from .local import check_interval_support, network_intervals
from .network import evaluate_float64, extract_chain, lipschitz_bounds
from .reference import Reference
from .refine import DOMINANCE, RefinementResult, cell_boxes, refine_boxes
from .tiles import DEFAULT_TILE_CELLS, plan_tiles, run_tiles

__all__ = ["Certificate", "certify", "grid_edges", "network_values", "LADDER_KINDS", "SLOPE_METHODS"]

LADDER_KINDS = {
    "naive_global": "max vertex |e| + sum_k L_k h_k / 2, global constants L_f + L_u (the anchor)",
    "pair_global": "closed-form opposite-vertex-pair bound, global constants",
    "exact_global": "exact per-cell linear program, global constants",
    "pair_local": "closed-form pair bound, per-cell constants max|local slope range|",
    "exact_local": "linear program with the per-cell signed slope ranges",
    "refined": "the same after adaptive refinement of the dominating cells",
}
"""What each rung of a certificate's ladder is (all certified)."""


def network_values(chain, points: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """First output of the network at ``points`` in float64, and its **certified** rounding bound."""
    f = np.empty(len(points))
    err = np.empty(len(points))
    for s in range(0, len(points), chunk):
        v, e = evaluate_float64(chain, points[s : s + chunk])
        f[s : s + chunk], err[s : s + chunk] = v[:, 0], e[:, 0]
    return f, err


def grid_edges(box, cells) -> list[np.ndarray]:
    """Vertex coordinates of a uniform grid with ``cells`` cells per axis on ``box`` ((d, 2))."""
    box = np.asarray(box, dtype=np.float64)
    cells = [int(cells)] * len(box) if np.isscalar(cells) else [int(c) for c in cells]
    if len(cells) != len(box):
        raise ConfigurationError(f"Expected one cell count per input ({len(box)}). Got {cells}.")
    if min(cells) < 1:
        raise ConfigurationError(f"Cell counts must be positive. Got {cells}.")
    return [np.linspace(lo, hi, n + 1) for (lo, hi), n in zip(box, cells)]


def _check_box(box, d: int) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (d, 2) or not np.all(np.isfinite(box)) or np.any(box[:, 1] <= box[:, 0]):
        raise ConfigurationError(f"'box' must be a finite array of shape ({d}, 2) with low < high. Got {box.tolist()}.")
    return box


@dataclass
class Certificate:
    """A certified max-error bound of a network against a reference, per cell and globally.

    Attributes
    ----------
    cells : CellCertificate
        The final per-cell **certified** bounds (after refinement) on the certificate grid.
    vertex_errors : ndarray
        :math:`f - u` at the grid vertices (float64, measured exactly up to the stored margins).
    document : dict
        Everything else, JSON-ready: the ladder, constants, statement, grid, seconds
        (what ``certificate.json`` holds).
    """

    cells: CellCertificate
    vertex_errors: np.ndarray
    document: dict = field(default_factory=dict)

    @property
    def bound(self) -> float:
        """The global **certified** bound on :math:`\\max |f - u|` over the box."""
        return self.cells.bound

    @property
    def inputs(self) -> list:
        """Names of the inputs, in column order."""
        return list(self.document["inputs"])

    @property
    def box(self) -> np.ndarray:
        """The certified box, shape (d, 2)."""
        return np.array([[e[0], e[-1]] for e in self.cells.edges])

    @property
    def level(self) -> str:
        """The statement's level, in words."""
        return self.document["level"]

    def to_dict(self) -> dict:
        """The JSON document (``certificate.json``)."""
        return dict(self.document)

    def save(self, run_dir, bind: Sequence[str] = ()) -> Path:
        """Write ``certificate.nc`` (per-cell bounds, vertex errors) and ``certificate.json`` atomically.

        The JSON records the SHA-256 of ``certificate.nc``, of the run files of
        :data:`~lipsurrogate.bounds.binding.BOUND_FILES` that exist in ``run_dir`` (weights, model
        description, configuration) and of the files named in ``bind`` (e.g. ``data.nc`` for a
        level-1 certificate), so that :meth:`load` can refuse a changed run folder.
        """
        from .binding import BOUND_FILES, file_digests
        from .storage import save_cell_certificate

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_cell_certificate(self.cells, self.vertex_errors, self.inputs, run_dir / "certificate.nc")
        names = [n for n in BOUND_FILES if (run_dir / n).is_file()] + [n for n in bind if n not in BOUND_FILES]
        self.document["files"] = file_digests(run_dir, [*names, "certificate.nc"])
        self.document["files_kind"] = ("sha256 of the files this certificate is about; lipsurrogate refuses a run "
                                       "folder in which any of them differs")
        self.document["library_version"] = __version__
        self.document["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_json(run_dir / "certificate.json", self.document)
        return run_dir / "certificate.json"

    @classmethod
    def load(cls, run_dir, check: bool = True) -> "Certificate":
        """The certificate written by :meth:`save` (JSON and NetCDF; nothing is unpickled).

        With ``check`` (the default) the files' SHA-256 digests are compared with those recorded
        (:func:`~lipsurrogate.bounds.binding.check_files`) and the global bound is recomputed from
        the per-cell bounds; any difference raises :class:`~lipsurrogate.exceptions.ModelFileError`
        naming the file.
        """
        from ..data.dataset import load_dataset
        from .binding import check_files
        from .storage import load_cell_certificate

        run_dir = Path(run_dir)
        if not (run_dir / "certificate.json").is_file():
            raise ModelFileError(f"{run_dir} has no certificate.json: not a certified run folder.")
        try:
            document = read_json(run_dir / "certificate.json")
        except ValueError as err:
            raise ModelFileError(f"{run_dir / 'certificate.json'} is not valid JSON: {err}") from None
        if not isinstance(document, dict) or "bound" not in document:
            raise ModelFileError(f"{run_dir / 'certificate.json'} is not a certificate (no 'bound').")
        if check:
            check_files(run_dir, document)
        cells = load_cell_certificate(run_dir / "certificate.nc")
        vertex = load_dataset(run_dir / "certificate.nc").vertex_error.values
        if check:
            per_cell = np.asarray(cells.per_cell)
            if not (np.all(np.isfinite(per_cell)) and np.all(per_cell >= 0)):
                raise ModelFileError(f"{run_dir / 'certificate.nc'} holds negative or non-finite per-cell bounds.")
            if float(document["bound"]) != cells.bound:
                raise ModelFileError(
                    f"{run_dir / 'certificate.json'} states the bound {document['bound']!r}, but the per-cell bounds "
                    f"of certificate.nc give {cells.bound!r}; the certificate does not hold together.")
        return cls(cells, vertex, document)


SLOPE_METHODS = {
    "affine": "affine forms of f' and u' on each box, their difference's interval (for GroupSort(2) networks, on "
              "the blocks, intersected with backward linear bounds of f' minus u's form), in the signed program "
              "(theory/cell-bounds.md sections 11, 12 and 14)",
    "interval": "interval ranges of f' minus those of u', in the signed program (sections 4 and 11)",
    "symmetric": "interval ranges of f' minus those of u', folded to one constant max|d_k e| per axis (section 4)",
    "both": "the intersection of the affine and the interval ranges (both certified; costs both)",
}
"""How :func:`certify` bounds the error's slope on a block (``slopes=``; ``"auto"``: ``"both"`` where the
affine forms are supported, else ``"interval"``). Measured in ``benchmarks/results/tight.md``: neither
affine nor interval ranges is tighter everywhere (affine wins on the plain MSE heat2d net, intervals on
the 4-input heat2d-kappa net), so the default takes their intersection."""


def _error_slopes(model, reference: Reference, lo: np.ndarray, hi: np.ndarray, box: np.ndarray,
                  method: str = "affine", backward: bool = True, select=None):
    """Certified signed ranges of :math:`\\partial_k (f - u)` on each box: the network's range minus the reference's.

    Networks that :func:`~lipsurrogate.bounds.affine.supports_forms` accepts use the affine forms
    of :func:`~lipsurrogate.bounds.affine.error_slopes` (the common linear part of f' and u' cancels;
    with ``backward``, intersected with the backward bounds); others the difference of the interval
    ranges, rounded outwards (one ``nextafter`` covers the half-ulp error of each subtraction).
    The batch is padded with copies of its last box to a multiple of
    :data:`~lipsurrogate.bounds.affine.ROW_ALIGN` boxes.

    ``select`` (methods ``"affine"`` and ``"both"``): see
    :func:`~lipsurrogate.bounds.affine.error_slopes`; the boxes it leaves out keep the forward
    forms' ranges (no backward bounds, no intervals). Returns ``(lower, upper, selected)`` then.
    """
    n = len(lo)
    pad = -n % ROW_ALIGN
    if select is not None:
        if method not in ("affine", "both"):
            raise ConfigurationError(f"Screening needs the affine forms (slopes 'affine' or 'both'). Got {method!r}.")
        inner = select

        def select(a, b, lower, upper):  # the padding boxes are never selected
            mask = np.zeros(b - a, dtype=bool)
            if min(b, n) > a:
                mask[: min(b, n) - a] = inner(a, min(b, n), lower[: min(b, n) - a], upper[: min(b, n) - a])
            return mask
    if pad and n:
        lo = np.concatenate([lo, np.repeat(lo[-1:], pad, axis=0)])
        hi = np.concatenate([hi, np.repeat(hi[-1:], pad, axis=0)])
        return tuple(part[:n] for part in _slope_ranges(model, reference, lo, hi, box, method, backward, select))
    return _slope_ranges(model, reference, lo, hi, box, method, backward, select)


def _slope_ranges(model, reference: Reference, lo: np.ndarray, hi: np.ndarray, box: np.ndarray,
                  method: str = "affine", backward: bool = True, select=None):
    if select is not None:
        lower, upper, kept = error_slopes(model, reference, lo, hi, box, backward=backward, select=select)
        if method == "both" and np.any(kept):
            rows = np.flatnonzero(kept)
            i_lo, i_hi = _error_slopes(model, reference, lo[rows], hi[rows], box, "interval")
            lower[rows], upper[rows] = np.maximum(lower[rows], i_lo), np.minimum(upper[rows], i_hi)
        return lower, upper, kept
    if method == "affine":
        return error_slopes(model, reference, lo, hi, box, backward=backward)
    if method == "both":
        a_lo, a_hi = error_slopes(model, reference, lo, hi, box, backward=backward)
        i_lo, i_hi = _slope_ranges(model, reference, lo, hi, box, "interval")
        return np.maximum(a_lo, i_lo), np.minimum(a_hi, i_hi)
    flo, fhi = network_intervals(model, lo, hi)
    ulo, uhi = reference.derivative_intervals(lo, hi, box)
    lo_, hi_ = np.nextafter(flo - uhi, -np.inf), np.nextafter(fhi - ulo, np.inf)
    if method == "symmetric":
        big = np.maximum(np.abs(lo_), np.abs(hi_))
        return -big, big
    return lo_, hi_


TIGHTEN = {
    "dominant": "only the blocks that may hold the largest bound get the full slope ranges",
    "all": "every block gets the full slope ranges",
}
"""The ``tighten=`` choices of :func:`certify` (see its docstring)."""


def block_sizes(local_block, d: int) -> list[int] | None:
    """Cells per axis of a slope block: ``local_block`` (an int, or one int per axis) as a list; None for 0."""
    if isinstance(local_block, (int, np.integer)) and not isinstance(local_block, bool):
        if local_block < 0:
            raise ConfigurationError(f"'local_block' must be >= 0. Got {local_block}.")
        return None if local_block == 0 else [int(local_block)] * d
    sizes = list(local_block) if isinstance(local_block, (list, tuple, np.ndarray)) else None
    if sizes is not None and len(sizes) == 1:
        return block_sizes(sizes[0], d)
    if (sizes is None or len(sizes) != d or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1
                                                for k in sizes)):
        raise ConfigurationError(f"'local_block' must be an integer >= 0 or {d} integers >= 1 (one per axis). "
                                 f"Got {local_block!r}.")
    return [int(k) for k in sizes]


def _errors(chain, reference: Reference, points: np.ndarray):
    f, f_err = network_values(chain, points)
    u, u_err = reference.values(points)
    return f - u, f_err + u_err


def _portable(model):
    """The model as Dask can send it: torch refuses to pickle weight parametrizations, so a plain copy.

    :func:`~lipsurrogate.nn.serialization.to_plain` holds the same effective weights, so workers
    compute the same numbers as this process (tested bit for bit).
    """
    from torch.nn.utils import parametrize

    from ..nn.serialization import to_plain

    if any(parametrize.is_parametrized(m) for m in model.modules()):
        return to_plain(model)
    return model


def _refine(cert: CellCertificate, found: list, floor: float, job: dict, budget: int, progress: bool):
    """Refinement of the candidate cells the tiles handed back (``theory/cell-bounds.md`` section 13).

    The candidates are every cell above ``DOMINANCE`` times a lower bound on the final bound
    (each tile used the largest floor known to it, never above the global one); those above
    ``DOMINANCE * floor`` are exactly the cells :func:`refine_certificate` with ``floor`` considers.
    """
    index = np.concatenate([c["index"] for c in found])  # every tile hands back its (maybe empty) set
    parts = {k: np.concatenate([c[k] for c in found]) for k in ("bound", "slope_lo", "slope_hi")}
    keep = parts["bound"] > DOMINANCE * floor
    flat = np.ravel_multi_index(tuple(index[keep].T), cert.per_cell.shape)
    order = np.argsort(flat, kind="stable")  # C order, as refine_certificate visits them
    flat = flat[order]
    slo, shi = parts["slope_lo"][keep][order], parts["slope_hi"][keep][order]
    lo, hi = cell_boxes(cert.edges, np.unravel_index(flat, cert.per_cell.shape))
    boxes = refine_boxes(lo, hi, cert.per_cell.reshape(-1)[flat], slo, shi, cert.lipschitz, job["errors"],
                         local_slopes=job["refine_slopes"], budget=budget, progress=progress,
                         screen_floor=floor if job["screen"] else None)
    refined = cert.per_cell.copy()
    refined.reshape(-1)[flat] = boxes.bounds
    return RefinementResult(replace(cert, per_cell=refined), boxes.rounds, boxes.evaluations, boxes.leaves,
                            boxes.refined, cert.bound, float(refined.max()), boxes.history)


@one_numpy_blas_thread
def certify(
    model,
    reference: Reference,
    box=None,
    cells=16,
    *,
    edges: Sequence[np.ndarray] | None = None,
    inputs: Sequence[str] | None = None,
    local_block: int | Sequence[int] = 1,
    refine_budget: int = 0,
    refine_slopes: bool = True,
    progress: bool = False,
    slopes: str = "auto",
    tile_cells: int | None = None,
    scheduler=None,
    n_workers: int | None = None,
    tighten: str = "dominant",
) -> Certificate:
    r"""Certify :math:`\max |f - u|` over ``box`` for a network ``f`` and a reference ``u``.

    Parameters
    ----------
    model : torch.nn.Module
        Anything :func:`~lipsurrogate.bounds.extract_chain` writes out: the networks of
        :mod:`lipsurrogate.nn`, or a user's ``nn.Sequential`` of ``nn.Linear`` layers and
        1-Lipschitz activations (ReLU, GroupSort, Tanh). It is certified as it computes in
        evaluation mode with its current weights.
    reference : Reference
        The function compared with (values, certified constants and statement).
    box : array-like of shape (d, 2), optional
        The certified box; defaults to the reference's hull when it has one (an interpolant).
    cells : int or sequence of int
        Cells per axis of the uniform certificate grid (ignored when ``edges`` is given).
    edges : sequence of ndarray, optional
        Explicit vertex coordinates per axis (strictly increasing, spacing may vary).
    inputs : sequence of str, optional
        Input names (default: the reference's, else ``x0, x1, ...``).
    local_block : int or sequence of int
        Cells per axis that share one slope range (a *block*): one number for every axis, or one per
        axis (e.g. ``(1, 1, 4)``: single cells in x and y, four in t); 0 uses global constants only.
        Smaller blocks give tighter ranges (fewer GroupSort pairs undecided, theory/cell-bounds.md
        sections 4 and 12) for more propagations; an axis whose cell count the block does not divide
        uses single cells.
    refine_budget : int
        Error evaluations for adaptive refinement; 0 for none.
    refine_slopes : bool
        Whether refinement's children compute slope ranges of their own (forward forms, intersected
        with the range they inherit). Without, each child keeps its cell's range: certified just the
        same, cheaper, and as tight where the children's own ranges do not beat the inherited ones
        (measured on heat2d-kappa: the same bound in 3.5 s of refinement against 25.5 s; on heat2d
        0.993% against 0.979% of max|u|).
    progress : bool
        Print refinement rounds.
    slopes : {"auto", "affine", "interval", "symmetric", "both"}
        How the error's slope is bounded on a block (:data:`SLOPE_METHODS`); ``"auto"`` takes
        ``"both"`` (the intersection of the affine and the interval ranges) for networks
        :func:`~lipsurrogate.bounds.affine.supports_forms` accepts and ``"interval"`` otherwise.
        All are certified; the others exist for comparison.
    tile_cells : int, optional
        Cells per tile (:mod:`~lipsurrogate.bounds.tiles`): the grid is certified tile by tile,
        so memory stays bounded for any grid size (default
        :data:`~lipsurrogate.bounds.tiles.DEFAULT_TILE_CELLS`). Tiles never cut a block of
        ``local_block`` cells.
    scheduler : None, "local", str or dask.distributed.Client
        Where the tiles are certified: ``None`` in this process; ``"local"`` on a
        :class:`~dask.distributed.LocalCluster` of ``n_workers`` processes (closed afterwards); a
        scheduler address (``"tcp://host:8786"``, workers with lipsurrogate installed); or a
        ``Client``, used as it is. The result does not depend on it (tested bit for bit).
    n_workers : int, optional
        Worker processes of the local cluster (``scheduler="local"`` only).
    tighten : {"dominant", "all"}
        Which blocks get the backward bounds (section 14; and the intervals, for
        ``slopes="both"``) on top of the forward affine forms, for networks that have them.
        ``"dominant"``: only the blocks with a cell whose bound with the forward forms alone
        exceeds 0.9 times the largest vertex error (less its margin) (Note [screened blocks] in
        :mod:`~lipsurrogate.bounds.tiles`); likewise refinement computes ranges of their own
        only for the children whose bound with their parent's range exceeds 0.9 times the largest
        vertex error less its margin (Note [screened children] of :mod:`~lipsurrogate.bounds.refine`).
        The global bound, every rung of the ladder and the refinement are those of ``"all"``; the
        cells left below that threshold keep wider, still certified, bounds. ``"all"``: every
        block (the tightest per-cell bounds, for :meth:`~lipsurrogate.Surrogate.predict` with
        ``with_bound=True``). On heat2d the slope
        stage took 0.72-0.77x the time of ``"all"`` where 20% of the blocks were selected and
        about 0.9x where 49% were (``theory/cell-bounds.md`` section 16).

    Returns
    -------
    Certificate
        The **certified** per-cell and global bounds, the whole ladder (naive to refined), the
        constants of f (certified from the weights) and of u (with the reference's statement of
        where they come from), and seconds per step.
    """
    total = time.perf_counter()
    chain = extract_chain(model)
    d = chain.in_features
    if getattr(reference, "in_features", d) != d:
        raise ConfigurationError(f"The network takes {d} inputs but the reference {reference.in_features}.")
    if chain.out_features != 1:
        raise CertificationError(f"Certificates are for single-output networks. Got {chain.out_features} outputs.")
    if edges is None:
        if box is None:
            if not hasattr(reference, "lower"):
                raise ConfigurationError("Pass the certified 'box' (d, 2): the reference has no hull of its own.")
            box = np.stack([reference.lower, reference.upper], 1)
        edges = grid_edges(_check_box(box, d), cells)
    edges = [np.asarray(e, dtype=np.float64) for e in edges]
    box = _check_box([[e[0], e[-1]] for e in edges], d)
    names = list(inputs or getattr(reference, "inputs", None) or [f"x{i}" for i in range(d)])
    if len(names) != d:
        raise ConfigurationError(f"Expected {d} input names. Got {names}.")
    if slopes not in ("auto", *SLOPE_METHODS):
        raise ConfigurationError(f"'slopes' must be 'auto' or one of {sorted(SLOPE_METHODS)}. Got {slopes!r}.")
    if slopes == "auto":
        slopes = "both" if supports_forms(model) else "interval"
    elif slopes in ("affine", "both") and not supports_forms(model):
        raise CertificationError("Affine slope forms support single-output GroupSort(2) or ReLU networks; use "
                                 "slopes='interval'.")
    if refine_budget < 0:
        raise ConfigurationError(f"'refine_budget' must be >= 0. Got {refine_budget}.")
    if tighten not in TIGHTEN:
        raise ConfigurationError(f"'tighten' must be one of {list(TIGHTEN)}. Got {tighten!r}.")
    blocks = block_sizes(local_block, d)

    if tile_cells is not None:
        tile_cells = positive_int("tile_cells", tile_cells)
    if scheduler is not None:
        check_scheduler(scheduler)

    lip = lipschitz_bounds(model, domain=box)
    lip_f = lip.per_input[0]
    lip_u = np.asarray(reference.global_constants(box), dtype=np.float64)
    if lip_u.shape != (d,) or not np.all(np.isfinite(lip_u)) or np.any(lip_u < 0):
        raise CertificationError(f"The reference's constants must be {d} finite non-negative numbers. Got {lip_u.tolist()}.")
    L = lip_f + lip_u
    local_note, use_slopes, backward, screen = "not computed (local_block = 0)", None, False, False
    if blocks is not None:
        try:
            check_interval_support(model)
        except CertificationError as err:
            local_note = f"unavailable for this network ({err}); global constants only"
        else:
            local_note = f"{SLOPE_METHODS[slopes]}; on blocks of {' x '.join(map(str, blocks))} cells"
            portable = _portable(model) if scheduler is not None else model
            use_slopes = functools.partial(_error_slopes, portable, reference, box=box, method=slopes)
            backward = slopes in ("affine", "both") and supports_backward(model)
            screen = tighten == "dominant" and backward
    cells_per_axis = [len(x) - 1 for x in edges]
    steps = [k if (use_slopes is not None and n % k == 0) else 1 for n, k in zip(cells_per_axis, blocks or [1] * d)]
    job = {"edges": edges, "lipschitz": L, "steps": steps, "slopes": use_slopes, "screen": screen,
           # refinement's children, where nearly every GroupSort pair is decided, use the forms alone
           # (measured: the same bound, less time; theory/cell-bounds.md section 14)
           "refine_slopes": (None if not refine_slopes else
                             functools.partial(use_slopes, backward=False) if backward else use_slopes),
           "errors": functools.partial(_errors, chain, reference)}
    tiles = plan_tiles(cells_per_axis, steps, tile_cells or DEFAULT_TILE_CELLS)
    shape = tuple(len(x) for x in edges)
    per_cell, naive = np.empty(cells_per_axis), np.empty(cells_per_axis)
    e = np.empty(shape)
    maxima: dict = {}
    found: list = []
    seconds = {"vertex_errors": 0.0, "global_bounds": 0.0}
    floor = [-np.inf, 0.0]  # max(|e| - m) (a lower bound of max|f - u|: refinement's floor), max(|e| + m)
    screened = [0, 0]  # blocks that kept the screening ranges, all blocks

    def collect(tile):
        cells = tuple(slice(a, b) for a, b in zip(tile.start, tile.stop))
        per_cell[cells], naive[cells] = tile.per_cell, tile.naive
        e[tuple(slice(a, a + n) for a, n in zip(tile.start, tile.vertex_errors.shape))] = tile.vertex_errors
        for key, value in tile.maxima.items():
            maxima[key] = max(maxima.get(key, -np.inf), value)
        for key, value in tile.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value
        floor[0], floor[1] = max(floor[0], tile.floor), max(floor[1], tile.max_vertex_error)
        if tile.screened is not None:
            screened[0] += tile.screened[0]
            screened[1] += tile.screened[1]
        if tile.candidates is not None:
            found.append(tile.candidates)

    run_tiles(job, tiles, scheduler=scheduler, n_workers=n_workers, candidates=refine_budget > 0,
              on_result=collect, progress=progress and len(tiles) > 1, total=len(tiles))
    local_cert = final = CellCertificate(per_cell, naive, edges, L, floor[1])
    refinement = None
    if refine_budget > 0:
        start = time.perf_counter()
        refinement = _refine(local_cert, found, floor[0], job, refine_budget, progress)
        final = refinement.certificate
        seconds["refinement"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - total

    statement = reference.statement()
    summary = final.summary()
    ladder = {**{key: maxima[key] for key in ("naive_global", "pair_global", "exact_global", "pair_local",
                                              "exact_local")}, "refined": final.bound}
    document = {
        "bound": final.bound,
        "bound_kind": statement["bound_kind"],
        "level": statement["level"],
        "reference": statement["reference"],
        "method": "per-cell linear program with signed vertex errors and, per cell, the signed range of each "
                  "slope d(f - u)/dx_k (the local range intersected with [-L, L], L = L_f + L_u global; exact when "
                  "the slopes keep their sign); local ranges from " + (SLOPE_METHODS[slopes] if blocks is not None
                  else "none (global constants only)") + "; the dominating cells are split adaptively; float64 "
                  "evaluation with certified rounding margins",
        "ladder": ladder,
        "ladder_kinds": LADDER_KINDS,
        "bound_global_constants": maxima["exact_global"],
        "bound_global_constants_kind": "certified, same grid, global constants L_f + L_u only (exact program)",
        "naive_bound": ladder["naive_global"],
        "naive_bound_kind": "certified anchor: max vertex |e| + sum_k L_k h_k / 2 with global constants",
        "domain": box.tolist(),
        "inputs": names,
        "grid": {"cells": cells_per_axis, "vertices": list(shape), "tiles": len(tiles),
                 "spacing": [float(np.max(np.diff(x))) for x in edges]},
        "local_constants": local_note,
        "slopes": slopes if blocks is not None else None,
        "blocks": steps if blocks is not None else None,
        "backward_bounds": ("on every slope block (theory/cell-bounds.md section 14)" if backward and not screen
                            else "on the dominant slope blocks, see 'tightened' (theory/cell-bounds.md section 14)"
                            if backward else None),
        "tightened": (None if not screen else
                      {"blocks": screened[1] - screened[0], "of": screened[1],
                       "rule": "blocks with a cell whose closed-form bound with the forward affine forms alone exceeds "
                               "0.9 x max(|e_v| - m_v) over its tile's vertices get the backward bounds too; the others "
                               "keep the forward forms' ranges (certified; their cells' bounds stay below that "
                               "threshold, so the global bound, the ladder and the refinement are those of tighten='all'; "
                               "theory/cell-bounds.md section 16)"}),
        "refinement_slopes": ("none: each child keeps its cell's slope range" if not refine_slopes or use_slopes is None
                              else ("each child's own forward forms, intersected with its cell's range"
                                    + ("; only children whose bound with their cell's range exceeds 0.9 x max(|e_v| - m_v) "
                                       "get them, the others keep that range (the same splits and bound; "
                                       "theory/cell-bounds.md section 18)" if screen else "")) if backward
                              else "each child's own ranges, intersected with its cell's range"),
        "refinement": refinement.summary() if refinement is not None else None,
        "per_cell": summary["per_cell"],
        "max_vertex_error": summary["max_vertex_error"],
        "lipschitz_term_global": summary["lipschitz_term_global"],
        "lipschitz_term_global_kind": "0.5 * sum_k (L_f + L_u)_k h_k with global constants (an upper bound of "
                                      "the term each cell's bound adds to its vertex errors)",
        "lipschitz_f": lip_f.tolist(),
        "lipschitz_f_kind": "certified upper bounds on |d f / d x_j| from the weights in float64",
        "lipschitz_f_method": lip.method,
        "lipschitz_u": lip_u.tolist(),
        "lipschitz_u_kind": statement["lipschitz_u_kind"],
        "lipschitz_u_source": statement["lipschitz_u_source"],
        "assumptions": list(statement["assumptions"]),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "seconds_kind": "wall seconds; with tiles on workers, vertex_errors, global_bounds and local_constants are "
                        "summed over tiles (worker time)",
        "library_version": __version__,
    }
    return Certificate(final, e, document)
