"""A certificate is bound to the files it speaks about: SHA-256 digests, checked before use.

A certified bound is a statement about *these* weights, *this* model description, *these*
per-cell bounds and, at level 1, *these* data. :meth:`Certificate.save
<lipsurrogate.bounds.Certificate.save>` records the SHA-256 of each of them (and the library
version) under ``files`` in ``certificate.json``; :func:`check_files` recomputes the digests
and refuses a run folder in which any of them changed, naming the file. ``load``, ``verify``,
``report``, ``export`` and ``certify RUN`` all go through it, so a weight scaled by 100, a
bias moved by one ulp, an edited input budget or per-cell bounds scaled by 0.9 are refused
instead of being served with the old bound.

This protects against accidents and naive edits, not against an adversary who rewrites the
digests as well: the digests are not signed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .._io import sha256_of
from ..exceptions import ModelFileError

__all__ = ["BOUND_FILES", "file_digests", "check_files", "check_run_folder", "RunFolderChanged"]

BOUND_FILES = ("model.safetensors", "model.json", "config.json")
"""Files a certificate is bound to whenever they are in the run folder (plus ``certificate.nc``
and what the caller adds, e.g. ``data.nc`` at level 1)."""


class RunFolderChanged(ModelFileError):
    """A file of a run folder differs from the one its certificate was computed for."""


def file_digests(run_dir: str | os.PathLike, names: Iterable[str]) -> dict:
    """``{name: sha256}`` of the files ``names`` of ``run_dir`` (each must exist)."""
    run_dir = Path(run_dir)
    digests = {}
    for name in names:
        path = run_dir / name
        if not path.is_file():
            raise ModelFileError(f"Cannot bind the certificate to {path}: the file does not exist.")
        digests[name] = sha256_of(path)
    return digests


def check_files(run_dir: str | os.PathLike, document: dict) -> None:
    """Refuse ``run_dir`` unless every file listed in ``document["files"]`` has its recorded SHA-256.

    Raises
    ------
    RunFolderChanged
        Naming the first file that is missing or whose digest differs, or saying that the
        certificate records no files (written before certificates were bound).
    """
    run_dir = Path(run_dir)
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        raise RunFolderChanged(f"{run_dir / 'certificate.json'} records no file digests, so it cannot vouch for the "
                               "files beside it; recompute it with 'lipsurrogate certify RUN'.")
    for name, digest in files.items():
        path = run_dir / name
        if not path.is_file():
            raise RunFolderChanged(f"{path} is missing: the certificate of {run_dir} is about it.")
        actual = sha256_of(path)
        if actual != digest:
            raise RunFolderChanged(f"{path} changed after it was certified (sha256 {actual[:12]}... instead of "
                                   f"{digest[:12]}...); the certificate of {run_dir} does not vouch for it. "
                                   "Restore the certified file, or fit a new run.")


def check_run_folder(run_dir: str | os.PathLike) -> None:
    """Before recomputing from a run folder's files: refuse them if an existing certificate is bound to other ones.

    A folder without a certificate, or with one that records no digests (written before
    certificates were bound), passes: there is nothing to contradict.
    """
    import json

    path = Path(run_dir) / "certificate.json"
    if not path.is_file():
        return
    try:
        document = json.loads(path.read_text())
    except ValueError as err:
        raise ModelFileError(f"{path} is not valid JSON: {err}") from None
    if isinstance(document, dict) and document.get("files"):
        check_files(run_dir, document)
