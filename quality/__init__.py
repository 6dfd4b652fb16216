"""Validation of the landing data: every rule's outcome, blocking errors and warnings.

``validate_landing`` evaluates the rules of :mod:`quality.rules` on the typed frames of a
business date and returns a :class:`ValidationReport`; errors block publication, warnings
are recorded. ``build_data_docs`` writes the report as a static HTML audit page.
"""

from quality.report import CheckResult, ValidationReport, build_data_docs
from quality.rules import validate_landing

__all__ = ["CheckResult", "ValidationReport", "build_data_docs", "validate_landing"]
