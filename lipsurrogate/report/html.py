"""A self-contained HTML report: headings, paragraphs, tables and embedded PNG figures."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

from .._io import atomic_path

__all__ = ["HtmlReport", "save_figure", "run_documents", "pyplot", "plot_training"]


def pyplot():
    """``matplotlib.pyplot`` for figures that are written to files.

    Selects the non-interactive Agg backend only when nobody has imported pyplot yet (a shell
    run); inside a Jupyter session or a user's script that already chose a backend it is left
    alone, so the user's own figures still show.
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(ax, history: dict, loss: str | None) -> None:
    """The training curve of a run's ``training.json`` on ``ax``, labelled with the loss trained on
    (``config["loss"]``; mini-batch values: **estimates** of the training loss)."""
    ax.semilogy(history["steps"], history["losses"])
    ax.set(xlabel="step", ylabel=f"mini-batch {str(loss or 'mse').upper()} loss (estimate)", title="training")


def save_figure(fig, path: str | Path, dpi: int = 110) -> bytes:
    """Save a matplotlib figure as PNG at ``path`` (atomically) and return the PNG bytes.

    A figure with a layout engine (``layout="constrained"``) is saved as laid out; others are
    cropped to their contents (``bbox_inches="tight"``, which draws the figure twice).
    """
    buffer = io.BytesIO()
    tight = fig.get_layout_engine() is None
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return data


class HtmlReport:
    """Build a report piece by piece, then :meth:`write` it as one self-contained file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> "HtmlReport":
        """Add a heading (level 2 by default)."""
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def banner(self, text: str, ok: bool) -> "HtmlReport":
        """A coloured box: green when ``ok``, red otherwise (the status of the whole report)."""
        kind = "ok" if ok else "fail"
        self._parts.append(f'<div class="banner {kind}">{html.escape(text)}</div>')
        return self

    def bullets(self, items: Sequence[str]) -> "HtmlReport":
        """A bulleted list of (escaped) text."""
        self._parts.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in items) + "</ul>")
        return self

    def paragraph(self, text: str) -> "HtmlReport":
        """Add a paragraph of (escaped) text."""
        self._parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def table(self, header: Sequence[str] | None, rows: Sequence[Sequence[object]]) -> "HtmlReport":
        """Add a table (``header`` None: none); numbers get 4 significant digits and align right, text left."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header or [])
        body = "".join(
            "<tr>" + "".join(f"<td{_align(c)}>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
        )
        thead = f"<thead><tr>{head}</tr></thead>" if header else ""
        self._parts.append(f"<table>{thead}<tbody>{body}</tbody></table>")
        return self

    def figure(self, png: bytes, caption: str = "") -> "HtmlReport":
        """Add a PNG (bytes), embedded as base64, with a caption."""
        data = base64.b64encode(png).decode("ascii")
        self._parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        return self

    def render(self) -> str:
        """The whole self-contained HTML page as text."""
        style = (
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;"
            "text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}"
            "th{background:#eee}img{max-width:100%}figcaption{font-size:90%;color:#444}"
            ".banner{padding:0.8em 1em;border-radius:4px;font-weight:bold;margin:1em 0}"
            ".banner.ok{background:#e3f4e1;border:2px solid #2e7d32;color:#1b5e20}"
            ".banner.fail{background:#fde7e7;border:2px solid #c62828;color:#b71c1c}"
        )
        body = "\n".join(self._parts)
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the page atomically to ``path``; returns the path."""
        with atomic_path(path) as tmp:
            tmp.write_text(self.render(), encoding="utf-8")
        return Path(path)


def _align(value: object) -> str:
    """Numbers (and numbers printed as text, such as rounded-up bounds and percentages) align right."""
    text = str(value).rstrip("%")
    try:
        float(text)
    except ValueError:
        return ""
    return ' class="num"'


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_documents(run_dir) -> tuple[dict, dict, dict, dict, dict]:
    """``config``, ``certificate``, ``verification``, ``fit`` and ``training`` JSON of a run folder."""
    from .._io import read_json

    run_dir = Path(run_dir)
    return tuple(read_json(run_dir / f"{name}.json") for name in ("config", "certificate", "verification", "fit", "training"))
