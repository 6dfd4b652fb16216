"""Validation results, their warehouse rows and their HTML audit page."""

from __future__ import annotations

import datetime as dt
import html
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
    #: names the column, the rule and up to five sample rows (1-based data rows)
    detail: str
    file: str


@dataclass(frozen=True)
class ValidationReport:
    business_date: dt.date
    results: tuple[CheckResult, ...]

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
                "detail": [r.detail for r in self.results],
            },
            schema=outputs.DATA_QUALITY.schema,
        )

    def summary(self) -> str:
        return "\n".join(f"{r.file}: {r.check}: {r.detail}" for r in self.errors)


def build_data_docs(report: ValidationReport, out_dir: Path) -> Path:
    """A self-contained HTML page of every rule's outcome; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(
        "<tr class='{cls}'><td>{d}</td><td>{c}</td><td>{s}</td><td>{ok}</td><td>{n}</td>"
        "<td>{det}</td></tr>".format(
            cls="ok" if r.success else r.severity,
            d=html.escape(r.dataset),
            c=html.escape(r.check),
            s=r.severity,
            ok="passed" if r.success else "FAILED",
            n=r.failed_rows,
            det=html.escape(r.detail),
        )
        for r in report.results
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Landing validation {report.business_date}</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #ccc;padding:4px}}
tr.error{{background:#fdd}} tr.warning{{background:#ffd}} tr.ok{{background:#efe}}</style>
</head><body><h1>Landing validation {report.business_date}</h1>
<p>{len(report.results)} rules, {len(report.errors)} errors, {len(report.warnings)} warnings.</p>
<table><tr><th>dataset</th><th>rule</th><th>severity</th><th>outcome</th><th>failed rows</th>
<th>detail</th></tr>
{rows}
</table></body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
