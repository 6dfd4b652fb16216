"""Validation results and their warehouse rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from risk_core import outputs


@dataclass(frozen=True)
class CheckResult:
    dataset: str
    check: str
    severity: Literal["error", "warning"]
    success: bool
    failed_rows: int
    #: names the column, the rule and up to five sample rows (1-based data rows of the file)
    detail: str
    file: str
    #: the same without file row numbers, the samples named by their values: what the
    #: warehouse keeps, so that it does not depend on the order of the file's rows
    published_detail: str = ""


@dataclass(frozen=True)
class ValidationReport:
    business_date: dt.date
    results: tuple[CheckResult, ...]
    #: index page of the GX Data Docs written for this validation, if any
    data_docs: Path | None = None

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warning"]

    def to_frame(self, run_id: str) -> pl.DataFrame:
        """One data_quality row per rule evaluated."""
        return pl.DataFrame(
            {
                "business_date": [self.business_date] * len(self.results),
                "run_id": [run_id] * len(self.results),
                "dataset": [r.dataset for r in self.results],
                "check": [r.check for r in self.results],
                "severity": [r.severity for r in self.results],
                "success": [r.success for r in self.results],
                "failed_rows": [r.failed_rows for r in self.results],
                "detail": [r.published_detail or r.detail for r in self.results],
            },
            schema=outputs.DATA_QUALITY.schema,
        )

    def summary(self) -> str:
        return "\n".join(f"{r.file}: {r.check}: {r.detail}" for r in self.errors)
