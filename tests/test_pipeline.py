"""The end-of-day job end to end: definitions load, one business date materialized into
DuckDB and PostgreSQL, reruns idempotent, bad input publishes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from risk_core import outputs

BUSINESS_DATE = dt.date(2026, 11, 20)
pytestmark = pytest.mark.integration
ISSUE_2_TABLES = (
    "margin_account",
    "margin_component",
    "position_risk",
    "greeks_account",
    "data_quality",
    "pipeline_run",
)


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from risk_core.landing.generator import generate_landing

    out = tmp_path_factory.mktemp("landing")
    generate_landing(out, BUSINESS_DATE, accounts=40, positions=600, seed=11)
    return out


def _run(landing: Path, url: str, tmp_path: Path, date: dt.date = BUSINESS_DATE):
    from pipelines.runner import run_business_date

    return run_business_date(
        date, landing_dir=str(landing), warehouse_url=url, artefacts_dir=str(tmp_path / "art")
    )


def _tables(url: str, date: dt.date = BUSINESS_DATE) -> dict[str, pl.DataFrame]:
    from pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    return {t.name: wh.read_table(t.name, date) for t in outputs.ALL_TABLES}


def test_definitions_load() -> None:
    import dagster as dg

    from pipelines.definitions import END_OF_DAY_JOB, defs

    job = defs.resolve_job_def(END_OF_DAY_JOB)
    assert job.partitions_def is not None
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for table in (
        "margin_account",
        "margin_component",
        "position_risk",
        "greeks_account",
        "data_quality",
        "pipeline_run",
    ):
        assert table in keys
    checks = list(graph.asset_check_keys)
    assert checks, "the landing snapshot has validation checks"
    for key in checks:
        assert graph.get_check_spec(key).blocking
    assert defs.resolve_schedule_def("daily_end_of_day").cron_schedule == "30 0 * * *"
    assert isinstance(defs, dg.Definitions)


def _check_published(tables: dict[str, pl.DataFrame]) -> None:
    for name in ISSUE_2_TABLES:
        assert tables[name].height > 0, f"{name} has no rows for the date"
    account = tables["margin_account"]
    assert set(account["model"]) >= {"portfolio", "standard"}
    key = outputs.MARGIN_ACCOUNT.key
    assert account.select(key).is_unique().all()
    # Components add up to each margin_account row's initial margin.
    sums = (
        tables["margin_component"]
        .group_by("account_id", "model", "pool_currency")
        .agg(pl.col("amount").sum())
    )
    joined = account.join(sums, on=["account_id", "model", "pool_currency"], how="left")
    diff = (joined["amount"].fill_null(0.0) - joined["initial_margin"]).abs()
    assert (diff <= 1e-6 * (1.0 + joined["initial_margin"].abs())).all()
    # Position contributions add up to the account's portfolio initial margin in USD.
    contrib = (
        tables["position_risk"].group_by("account_id").agg(pl.col("margin_contribution_usd").sum())
    )
    portfolio = (
        account.filter(pl.col("model") == "portfolio")
        .group_by("account_id")
        .agg(pl.col("initial_margin_usd").sum())
        .join(contrib, on="account_id", how="left")
    )
    gap = portfolio["margin_contribution_usd"].fill_null(0.0) - portfolio["initial_margin_usd"]
    assert (gap.abs() <= 1e-6 * (1.0 + portfolio["initial_margin_usd"])).all()
    # Every account with a position has some risk-based margin.
    with_positions = set(tables["position_risk"]["account_id"])
    im = portfolio.filter(pl.col("account_id").is_in(list(with_positions)))
    assert (im["initial_margin_usd"] > 0).all()


VIEWS = (
    "v_margin_calls",
    "v_capital_efficiency",
    "v_top_margin_contributors",
    "v_greeks_by_bucket",
    "v_margin_change",
    "v_backtest_traffic_lights",
)


def _check_views(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        for view in VIEWS:
            conn.execute(sa.text(f"select * from {view}")).fetchall()
        ratio = conn.execute(
            sa.text("select sum(portfolio_im_usd) / sum(standard_im_usd) from v_capital_efficiency")
        ).scalar()
        buckets = conn.execute(sa.text("select count(*) from v_greeks_by_bucket")).scalar()
    engine.dispose()
    assert 0 < ratio < 1 and buckets > 0


def _without_run(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("run_id", "started_at", "finished_at", strict=False)


@pytest.mark.slow
def test_end_to_end_duckdb_and_rerun(landing: Path, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    first = _run(landing, url, tmp_path)
    assert first.success, first.errors
    tables = _tables(url)
    _check_published(tables)
    _check_views(url)
    second = _run(landing, url, tmp_path)
    assert second.success, second.errors
    again = _tables(url)
    for name in outputs.DATE_TABLES:
        assert _without_run(again[name.name]).equals(_without_run(tables[name.name])), name.name
    assert again["pipeline_run"].height == 2  # one row per run of the date


@pytest.mark.slow
@pytest.mark.postgres
def test_end_to_end_postgres(landing: Path, tmp_path: Path, postgres_url: str) -> None:
    first = _run(landing, postgres_url, tmp_path)
    assert first.success, first.errors
    _check_published(_tables(postgres_url))
    _check_views(postgres_url)


@pytest.mark.slow
def test_bad_input_publishes_nothing(landing: Path, tmp_path: Path) -> None:
    import shutil

    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    assert _run(landing, url, tmp_path).success
    before = _tables(url)
    broken = tmp_path / "broken"
    shutil.copytree(landing, broken)
    positions = broken / BUSINESS_DATE.isoformat() / "positions.csv"
    lines = positions.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",abc"
    positions.write_text("\n".join(lines) + "\n")
    outcome = _run(broken, url, tmp_path)
    assert not outcome.success
    text = "\n".join(outcome.errors)
    assert "positions.csv" in text and "quantity" in text and "3" in text
    after = _tables(url)
    for name, frame in before.items():
        assert frame.equals(after[name]), name


@pytest.mark.slow
def test_backfill_publishes_daily_backtests(tmp_path: Path) -> None:
    from scipy.stats import binom, chi2

    from pipelines.cli import main
    from risk_core.landing.generator import generate_landing

    landing = tmp_path / "landing"
    dates = [BUSINESS_DATE - dt.timedelta(days=k) for k in (2, 1, 0)]
    for date in dates:
        generate_landing(landing, date, accounts=15, positions=120, seed=5)
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    code = main(
        [
            "backfill",
            "--start",
            dates[0].isoformat(),
            "--end",
            dates[-1].isoformat(),
            "--landing",
            str(landing),
            "--warehouse",
            url,
            "--artefacts",
            str(tmp_path / "art"),
        ]
    )
    assert code == 0
    from pipelines.warehouse import Warehouse

    charts = sorted(p.name for p in (tmp_path / "art" / "backtest").rglob("*.png"))
    assert charts and "portfolio.png" in charts
    wh = Warehouse(url)
    results = wh.read_table("backtest_result")
    assert sorted(set(results["business_date"])) == dates[1:]
    summary = wh.read_table("backtest_summary", dates[-1])
    assert set(summary["model"]) == {"portfolio", "standard", "hs_es"}
    for row in summary.iter_rows(named=True):
        mine = results.filter(pl.col("model") == row["model"])
        n, x = mine.height, int(mine["exceedance"].sum())
        assert (row["observations"], row["exceedances"]) == (n, x)
        p = 1 - row["confidence"]
        ll0 = binom.logpmf(x, n, p)
        ll1 = binom.logpmf(x, n, x / n) if 0 < x < n else 0.0
        assert row["kupiec_pvalue"] == pytest.approx(chi2.sf(2 * (ll1 - ll0), 1), abs=1e-9)
        cdf = binom.cdf(x, n, p)
        light = "green" if cdf < 0.95 else "yellow" if cdf < 0.9999 else "red"
        assert row["traffic_light"] == light


@pytest.mark.slow
@pytest.mark.postgres
def test_duckdb_and_postgres_publish_identical_tables(
    landing: Path, tmp_path: Path, postgres_url: str
) -> None:
    duck = f"duckdb:///{tmp_path / 'same.duckdb'}"
    assert _run(landing, duck, tmp_path).success
    assert _run(landing, postgres_url, tmp_path).success
    a, b = _tables(duck), _tables(postgres_url)
    for table in outputs.DATE_TABLES:
        left, right = _without_run(a[table.name]), _without_run(b[table.name])
        assert left.equals(right), table.name
    how = ["inputs_sha256", "ruleset_sha256", "code_version"]
    assert set(a["pipeline_run"].select(how).iter_rows()) == set(
        b["pipeline_run"].select(how).iter_rows()
    )


@pytest.mark.slow
def test_materializations_carry_audit_metadata(landing: Path, tmp_path: Path) -> None:
    from pipelines.definitions import END_OF_DAY_JOB, build_definitions

    defs = build_definitions(
        str(landing),
        f"duckdb:///{tmp_path / 'meta.duckdb'}",
        None,
        str(tmp_path / "a"),
        in_memory=True,
    )
    result = defs.resolve_job_def(END_OF_DAY_JOB).execute_in_process(
        partition_key=BUSINESS_DATE.isoformat()
    )
    assert result.success
    meta = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]  # type: ignore[union-attr]
    }
    assert {"sha256_positions", "inputs_sha256", "rows_positions", "data_docs"} <= set(
        meta["landing_snapshot"]
    )
    assert any(k.startswith("net_delta_") for k in meta["position_greeks"])
    assert {"ruleset_sha256", "total_im_usd_portfolio"} <= set(meta["margin_results"])
    for table in ISSUE_2_TABLES:
        assert {"rows", "ruleset_sha256", "code_version"} <= set(meta[table]), table
