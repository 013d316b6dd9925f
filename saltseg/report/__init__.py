"""Error analysis of a run's out-of-fold predictions, written as a self-contained HTML report."""

from saltseg.report.analysis import ReportData, analyse
from saltseg.report.html import build_report, write_report
from saltseg.report.tables import CATEGORIES

__all__ = ["CATEGORIES", "ReportData", "analyse", "build_report", "write_report"]
