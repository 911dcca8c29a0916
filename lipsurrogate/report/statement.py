"""The top of every surrogate report: what the certificate vouches for, and whether it holds.

:func:`run_status` decides whether a run folder may be called certified: its files match the
digests in ``certificate.json`` (else the report is refused, as ``load`` and ``verify`` refuse),
its verification is of this very certificate, and it found no violation and no non-finite
value. :func:`add_statement` writes, from that status and before anything else, a green or a red banner saying so,
then the statement: level, bound kind, reference, the assumptions as ``certificate.json`` lists
them, max|u|, what the run is about (initial condition or data file), the file digests, the
library and package versions and the dates.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from .._format import up, up_fixed
from .._io import read_json, sha256_of
from .html import HtmlReport

__all__ = ["run_status", "add_statement", "sampling_in_words", "percent_up", "percent"]


def percent_up(value: float, u_max: float) -> str:
    """A certified number as a percentage of max|u|, rounded up as the CLI prints it (``3.1%``)."""
    return f"{up_fixed(100 * value / u_max)}%"


def percent(value: float, u_max: float) -> str:
    """A measured number as a percentage of max|u| (``2.35%``)."""
    return f"{100 * value / u_max:.2f}%"


def run_status(run_dir) -> dict:
    """Whether the run folder's certificate holds: ``{"certified", "reasons", "certificate", "verification"}``.

    Raises :class:`~lipsurrogate.exceptions.ModelFileError` (through
    :meth:`~lipsurrogate.bounds.Certificate.load`) when a file changed after certification.
    """
    from ..bounds import Certificate

    run_dir = Path(run_dir)
    certificate = Certificate.load(run_dir)
    reasons = []
    path = run_dir / "verification.json"
    verification = read_json(path) if path.is_file() else None
    if verification is None:
        reasons.append("the certificate has not been verified (no verification.json)")
    else:
        recorded = verification.get("certificate_sha256")
        if recorded is not None and recorded != sha256_of(run_dir / "certificate.json"):
            reasons.append("verification.json is about another certificate; run 'lipsurrogate verify RUN'")
        if verification.get("bound") != certificate.bound:
            reasons.append(f"verification.json checked the bound {verification.get('bound')!r}, not this "
                           f"certificate's {certificate.bound!r}")
        if verification.get("violations", 1):
            reasons.append(f"verification found {verification.get('violations')} sampled point(s) whose error exceeds "
                           "the bound of their cell: the bound does not hold")
        if verification.get("non_finite", 0):
            reasons.append(f"the network or the reference is not finite at {verification['non_finite']} sampled point(s)")
    return {"certified": not reasons, "reasons": reasons, "certificate": certificate, "verification": verification}


def sampling_in_words(samples: dict) -> str:
    """The verification's sampling settings as a sentence."""
    parts = []
    dense = samples.get("dense")
    if dense:
        parts.append(f"{dense['points']:,} points on grids {dense['density']} times finer per axis inside "
                     f"{dense['cells']:,} cells (those with the largest bounds, the largest vertex errors, and at random)")
    random = samples.get("random")
    if random:
        parts.append(f"{random['points']:,} uniformly random points in the box")
    adversarial = samples.get("adversarial")
    if adversarial and adversarial.get("starts"):
        parts.append(f"{adversarial['starts']} adversarial searches of {adversarial['steps']} steps "
                     "(signed-gradient ascent on |f - u|, each kept inside its start cell)")
    elif adversarial:
        parts.append(f"no adversarial search ({adversarial.get('method', 'skipped')})")
    return "; ".join(parts) + "." if parts else "no samples."


def add_statement(report: HtmlReport, run_dir, status: dict, about: str, u_max: float) -> None:
    """Banner and statement at the top of ``report``, from ``status`` = :func:`run_status` of the run."""
    run_dir = Path(run_dir)
    doc = status["certificate"].document
    ver = status["verification"] or {}
    if status["certified"]:
        report.banner(f"Certified: |f - u| <= {up(doc['bound'], 4)} ({percent_up(doc['bound'], u_max)} of max|u|) "
                      f"everywhere in the box, u being {doc['reference']}; verification found no violation "
                      f"(observed max {ver['max_error_observed']:.4g}, tightness {ver['tightness']:.2f}).", ok=True)
    else:
        report.banner("NOT certified: " + "; ".join(status["reasons"]) + ". No number in this report is a guarantee.",
                      ok=False)
    report.heading("What the certificate says")
    environment = read_json(run_dir / "environment.json") if (run_dir / "environment.json").is_file() else {}
    packages = environment.get("packages", {})
    rows = [
        ["about", about],
        ["level", doc["level"]],
        ["statement" if status["certified"] else "statement (claimed, does NOT hold)", doc["bound_kind"]],
        ["reference", doc["reference"]],
        ["max|u|", f"{u_max:.4g} (the scale of every percentage below)"],
        ["box", ", ".join(f"{name} in [{lo:.4g}, {hi:.4g}]" for name, (lo, hi) in zip(doc["inputs"], doc["domain"]))],
        ["L_u comes from", f"{doc['lipschitz_u_source']} ({doc['lipschitz_u_kind']})"],
        ["verification", sampling_in_words(ver.get("samples", {}))],
        ["certified on", str(doc.get("created", "not recorded"))],
        ["report written", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")],
        ["versions", f"lipsurrogate {doc.get('library_version', '?')}; "
                     + ", ".join(f"{k} {v}" for k, v in packages.items() if k != "lipsurrogate")
                     + (f"; Python {environment['python']}" if "python" in environment else "")],
    ]
    report.table(None, rows)
    report.paragraph("Assumptions (as certificate.json lists them):")
    report.bullets(doc.get("assumptions", []))
    report.paragraph("Files the certificate is bound to (SHA-256; load, verify, report and export refuse them if "
                     "they change):")
    report.table(["file", "sha256"], [[name, digest] for name, digest in doc.get("files", {}).items()])
