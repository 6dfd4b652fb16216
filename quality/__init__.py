"""Validation of the landing data: every rule's outcome, blocking errors and warnings.

``validate_landing`` runs the Great Expectations suites of :mod:`quality.rules` on the
typed frames of a business date and returns a :class:`ValidationReport`; errors block
publication, warnings are recorded, and the GX Data Docs of the run are the audit page.
"""

from quality.report import CheckResult, ValidationReport
from quality.rules import validate_landing

__all__ = ["CheckResult", "ValidationReport", "validate_landing"]
