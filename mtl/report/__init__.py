"""Reports: collect a sweep's runs into tables (Markdown, LaTeX, CSV) and plots.

`python -m mtl.report <sweep dir> [...]`; see `mtl/report/__main__.py` for the options.
"""

from mtl.report.aggregate import Report, Stat, build_report
from mtl.report.collect import ReportError, RunRecord, collect

__all__ = ["Report", "ReportError", "RunRecord", "Stat", "build_report", "collect"]
