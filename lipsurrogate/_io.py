"""Atomic writes (a result file is either complete or absent, never half-written) and file digests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .exceptions import LipsurrogateError

__all__ = ["atomic_path", "write_json", "read_json", "atomic_directory", "sha256_of", "RunFolderBusy", "RunFolderExists",
           "abandon_active_runs"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file (never a pickle)."""
    return json.loads(Path(path).read_text())


class RunFolderBusy(LipsurrogateError, FileExistsError):
    """Another live process is writing the same run folder."""


class RunFolderExists(LipsurrogateError, FileExistsError):
    """The run folder exists already (and overwriting was not asked for, or it is not a run)."""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _me() -> str:
    """``PID@HOST``: who holds a lock or a partial folder."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _stale(owner: str) -> bool:
    """Whether ``PID@HOST`` names a process of this machine that no longer runs."""
    pid, _, host = owner.partition("@")
    try:
        return host == socket.gethostname() and not _alive(int(pid))
    except ValueError:
        return False


def _claim(lock: Path, target: Path) -> None:
    """Create ``lock`` exclusively (it holds ``PID@HOST``); a stale lock of a dead process is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = lock.read_text().strip()
            except OSError:
                holder = ""
            if holder and _stale(holder):
                lock.unlink(missing_ok=True)
                continue
            raise RunFolderBusy(f"Another run (process {holder or 'unknown'}) is writing {target}; wait for it or "
                                f"choose another --out (a stale lock can be removed: {lock}).") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(_me())
        return
    raise RunFolderBusy(f"Could not claim {target}: its lock {lock} keeps reappearing.")


_ACTIVE: dict = {}
"""Lock and partial folder of every :func:`atomic_directory` block now running (by lock path)."""


def abandon_active_runs() -> None:
    """Remove the partial folders and locks of the runs of this process (for an emergency exit).

    The normal way out of :func:`atomic_directory` is an exception, which removes them itself;
    this is for the case where the exception cannot travel (a signal that arrived inside a
    finaliser), before ``os._exit``.
    """
    for lock, tmp in list(_ACTIVE.items()):
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        Path(lock).unlink(missing_ok=True)
        _ACTIVE.pop(lock, None)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only when the block succeeds.

    * Claims ``path`` first with an exclusive lock file ``.<name>.lock`` (host and pid), so a
      second run into the same place fails at once (:class:`RunFolderBusy`), before any work.
    * Refuses an existing ``path`` (:class:`RunFolderExists`) unless ``overwrite`` is set and it
      is a run folder (it holds ``config.json``); it is then replaced only when the new run
      succeeded.
    * Removes leftover ``.<name>.partial@PID@HOST@*`` folders of processes that no longer run
      (a run killed with SIGKILL); an interrupted run (any exception, Ctrl-C, SIGTERM through
      the CLI) removes its own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    _claim(lock, path)
    _ACTIVE[str(lock)] = None
    try:
        if path.exists() and not (overwrite and path.is_dir() and (path / "config.json").is_file()):
            hint = (" Pass --overwrite (overwrite=True) to replace it." if path.is_dir() and (path / "config.json").is_file()
                    else " It is not a run folder; choose another --out.")
            raise RunFolderExists(f"{path} already exists.{hint}")
        prefix = f".{path.name}.partial@"
        for leftover in path.parent.glob(f"{prefix}*"):
            if _stale(leftover.name[len(prefix):].rpartition("@")[0]):  # .NAME.partial@PID@HOST@RANDOM
                shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{_me()}@", dir=path.parent))
        _ACTIVE[str(lock)] = tmp
        try:
            yield tmp
            if path.exists():
                old = path.parent / f".{path.name}.replaced@{_me()}"
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        _ACTIVE.pop(str(lock), None)
        lock.unlink(missing_ok=True)


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of the file at ``path`` (read in chunks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
