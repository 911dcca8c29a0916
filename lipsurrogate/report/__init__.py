"""What a person reads: self-contained HTML reports and figures.

Modules
-------
html
    :class:`HtmlReport` (tables, paragraphs, embedded PNG figures), :func:`save_figure`.
"""

from .html import HtmlReport, save_figure

__all__ = ["HtmlReport", "save_figure"]
