"""Shared by the benchmark scripts: the header of a results file and its atomic write."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

from lipsurrogate._io import atomic_path


def header(title: str, extra: list[str]) -> list[str]:
    """Title, date, the command that ran, the machine, and ``extra`` bullet lines."""
    command = " ".join(["python", *(Path(a).as_posix() for a in sys.argv)])
    return [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- python {platform.python_version()}, {platform.platform()}, CPUs: {os.cpu_count()}",
        *[f"- {line}" for line in extra],
        "",
    ]


def write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and say so on stderr."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    print(f"wrote {path}", file=sys.stderr)
