"""Which dates a backfill skips: exactly those whose published run read today's inputs
with the same ruleset and code, up to the first date that must run again (the later
dates' backtests read it)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from assets.common import code_version
from pipelines.cli import _Published
from pipelines.warehouse import Warehouse
from risk_core import outputs
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import landing_inputs_sha256
from risk_core.ruleset import load_ruleset

DATES = [dt.date(2026, 11, 18) + dt.timedelta(days=i) for i in range(3)]


def _publish(wh: Warehouse, date: dt.date, inputs: str, code: str) -> None:
    """A pipeline_run row as a run of ``date`` writes it (the skip reads nothing else)."""
    row = pl.DataFrame(
        {
            "run_id": [f"run-{date}"],
            "business_date": [date],
            "started_at": [dt.datetime(2026, 11, 25, tzinfo=dt.UTC)],
            "finished_at": [dt.datetime(2026, 11, 25, tzinfo=dt.UTC)],
            "status": ["success"],
            "code_version": [code],
            "ruleset": ["cross-margin"],
            "ruleset_sha256": [load_ruleset("cross-margin").sha256],
            "inputs_sha256": [inputs],
            "landing_dir": ["landing"],
            "message": [""],
        },
        schema=outputs.PIPELINE_RUN.schema,
    )
    wh.replace_business_date(date, {}, pipeline_run=row)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    for date in DATES:
        generate_landing(tmp_path / "landing", date, accounts=5, positions=20, seed=5)
    return tmp_path / "landing"


def _args(landing: Path, warehouse: str | None) -> argparse.Namespace:
    return argparse.Namespace(landing=str(landing), warehouse=warehouse, ruleset="cross-margin")


def test_skips_up_to_the_first_date_that_must_run(
    landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    wh = Warehouse(url)
    wh.create_schema()
    code = code_version()
    _publish(wh, DATES[0], landing_inputs_sha256(landing, DATES[0]), code)
    _publish(wh, DATES[1], "other inputs", code)
    _publish(wh, DATES[2], landing_inputs_sha256(landing, DATES[2]), code)
    # the URL from the environment, as a password-carrying URL must come
    monkeypatch.setenv("MARGIN_WAREHOUSE_URL", url)
    published = _Published(_args(landing, None))
    try:
        assert published.run_of(DATES[0]) == f"run-{DATES[0]}"
        assert published.run_of(DATES[1]) is None  # its inputs changed
        assert published.run_of(DATES[2]) is None  # up to date, but its backtest reads D1
    finally:
        published.close()


def test_other_code_or_an_unreadable_warehouse_means_run(landing: Path, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    wh = Warehouse(url)
    wh.create_schema()
    _publish(wh, DATES[0], landing_inputs_sha256(landing, DATES[0]), "0.0.1+somewhere-else")
    published = _Published(_args(landing, url))
    assert published.run_of(DATES[0]) is None
    published.close()
    broken = _Published(_args(landing, "postgresql+psycopg://postgres@127.0.0.1:1/none"))
    broken.warehouse.retry_s = 0.5
    assert broken.run_of(DATES[0]) is None
    broken.close()
