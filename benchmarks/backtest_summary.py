"""The daily backtest summary at scale: aggregates in the warehouse against the whole table.

    .venv/bin/python benchmarks/backtest_summary.py --accounts 100000 --dates 250 \\
        [--models 3] [--keep bench.duckdb] [--old-max-rows 20000000] [--postgres URL]

Fills a DuckDB warehouse with ``dates`` business dates of synthetic backtest_result rows
(``accounts`` x ``models`` a date, 2 % of accounts missing on any date, exceedances at
about 1 %) through ``Warehouse.replace_business_date``, then times the summary of one
more date (its rows in memory) as the ``backtest_results`` asset computes it:

* new: ``read_backtest_window`` (aggregates in SQL) + ``summarize_window`` + the daily
  totals of the charts;
* old: the whole backtest_result table read as before (every row a Python tuple), then
  ``summarize``; skipped above ``--old-max-rows`` stored rows, where it would run for
  most of an hour in tens of GiB (run a few dates to see its rate).

Each path runs in its own process, so that its peak resident memory (``ru_maxrss``,
DuckDB's included) is its own. Then times ``read_table`` of one date of margin_account
(``accounts`` x ``models`` rows) row by row (the previous implementation) and
column-wise, on DuckDB and, with ``--postgres``, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa

from pipelines.warehouse import Warehouse
from risk_core import outputs
from risk_core.backtest.summary import (
    stored_dates_needed,
    summarize,
    summarize_window,
    window_daily_totals,
)

FIRST = dt.date(2025, 1, 1)
MODELS = ("portfolio", "standard", "hs_es", "m4", "m5")
CONFIDENCE = 0.99
WINDOW_DAYS = 250


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _day(rng: np.random.Generator, date: dt.date, accounts: int, models: int) -> pl.DataFrame:
    """backtest_result rows of one date (without run_id): margin log-normal around
    3,000 USD, P&L normal with a 1 % chance of a loss beyond the margin."""
    ids = pl.Series("account_id", [f"ACC{i:07d}" for i in range(accounts)])
    frames = []
    for model in MODELS[:models]:
        present = rng.random(accounts) >= 0.02
        n = int(present.sum())
        margin = rng.lognormal(8.0, 1.0, n)
        pnl = margin * rng.standard_normal(n) / 2.326
        frames.append(
            pl.DataFrame(
                {
                    "business_date": pl.repeat(date, n, eager=True),
                    "account_id": ids.filter(present),
                    "model": pl.repeat(model, n, eager=True),
                    "horizon_days": pl.repeat(1, n, dtype=pl.Int64, eager=True),
                    "margin_usd": margin,
                    "pnl_usd": pnl,
                    "exceedance": -pnl > margin,
                }
            )
        )
    return pl.concat(frames)


def _today(args: argparse.Namespace) -> tuple[dt.date, pl.DataFrame]:
    date = FIRST + dt.timedelta(days=args.dates)
    return date, _day(np.random.default_rng(args.seed + 1), date, args.accounts, args.models)


def fill(args: argparse.Namespace, url: str) -> None:
    warehouse = Warehouse(url)
    warehouse.create_schema()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for k in range(args.dates):
        date = FIRST + dt.timedelta(days=k)
        day = _day(rng, date, args.accounts, args.models).with_columns(
            pl.lit("bench").alias("run_id")
        )
        warehouse.replace_business_date(date, {"backtest_result": day})
    rows = args.dates * args.accounts * args.models
    print(
        f"fill: {args.dates} dates x {args.accounts:,} accounts x {args.models} models "
        f"(~{rows * 0.98:,.0f} rows) in {time.perf_counter() - start:.0f} s"
    )


def run_path(args: argparse.Namespace, url: str) -> None:
    """One path (``args.path``), timed, in this process."""
    warehouse = Warehouse(url)
    date, today = _today(args)
    start = time.perf_counter()
    if args.path == "new":
        stored = warehouse.read_backtest_window(date, stored_dates_needed(today, WINDOW_DAYS))
        read_s = time.perf_counter() - start
        summary = summarize_window(stored, today, date, CONFIDENCE, WINDOW_DAYS)
        window_daily_totals(stored, today)
        detail = f"warehouse aggregates {read_s:.1f} s"
    else:
        history = _read_row_by_row(warehouse, "backtest_result", None)
        history = history.filter(pl.col("business_date") < date)
        read_s = time.perf_counter() - start
        combined = pl.concat([history.drop("run_id"), today], how="diagonal_relaxed")
        summary = summarize(combined, date, CONFIDENCE, WINDOW_DAYS)
        detail = f"read_table {read_s:.1f} s ({history.height:,} rows)"
    elapsed = time.perf_counter() - start
    print(f"{args.path} path: {elapsed:.1f} s ({detail}), peak {_peak_gib():.2f} GiB")
    summary.write_parquet(Path(args.keep).with_suffix(f".{args.path}.parquet"))


def _read_row_by_row(warehouse: Warehouse, name: str, date: dt.date | None) -> pl.DataFrame:
    """The previous ``read_table`` (of one date, or the whole table): Python tuples."""
    table = outputs.BY_NAME[name]
    columns = ", ".join(f'"{c}"' for c in table.columns)
    sql = f"select {columns} from {table.name}"
    if date is not None:
        sql += " where business_date = :d"
    sql += " order by " + ", ".join(f'"{k}"' for k in table.key)
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"d": date} if date else {}).fetchall()
    frame = pl.DataFrame([tuple(r) for r in rows], schema=list(table.columns), orient="row")
    return frame.cast(table.columns, strict=False)  # type: ignore[arg-type]


def time_reads(args: argparse.Namespace, url: str) -> None:
    """read_table of one margin_account date, row by row against column-wise."""
    warehouse = Warehouse(url)
    warehouse.create_schema()
    date = FIRST
    rng = np.random.default_rng(args.seed)
    n = args.accounts * args.models
    numbers = {
        c: rng.normal(1e4, 1e3, n)
        for c, t in outputs.MARGIN_ACCOUNT.columns.items()
        if t == pl.Float64
    }
    frame = pl.DataFrame(
        {
            "business_date": pl.repeat(date, n, eager=True),
            "run_id": pl.repeat("bench", n, eager=True),
            "account_id": [f"ACC{i // args.models:07d}" for i in range(n)],
            "model": [MODELS[i % args.models] for i in range(n)],
            "pool_currency": pl.repeat("USD", n, eager=True),
            "ruleset": pl.repeat("cross-margin@1", n, eager=True),
            "ruleset_sha256": pl.repeat("ab" * 32, n, eager=True),
            **numbers,
            "margin_call": rng.random(n) < 0.05,
        },
        schema=outputs.MARGIN_ACCOUNT.schema,
    )
    warehouse.replace_business_date(date, {"margin_account": frame})
    timings = []
    for label, read in (
        ("row by row (before)", lambda: _read_row_by_row(warehouse, "margin_account", date)),
        ("column-wise (now)", lambda: warehouse.read_table("margin_account", date)),
        (
            "column-wise, 4 columns (the asset)",
            lambda: warehouse.read_table(
                "margin_account",
                date,
                columns=["account_id", "model", "pool_currency", "initial_margin_usd"],
            ),
        ),
    ):
        start = time.perf_counter()
        got = read()
        timings.append(got)
        print(
            f"  {warehouse.dialect} read_table {n:,} rows, {label}: "
            f"{time.perf_counter() - start:.2f} s"
        )
    assert timings[0].equals(timings[1]), "column-wise read differs from row by row"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--dates", type=int, default=250)
    parser.add_argument("--models", type=int, default=3, choices=range(1, len(MODELS) + 1))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", help="DuckDB file: filled when missing, reused when present")
    parser.add_argument("--old-max-rows", type=int, default=20_000_000)
    parser.add_argument(
        "--postgres", help="also time read_table on this PostgreSQL URL (writes one date there)"
    )
    parser.add_argument("--path", choices=["new", "old"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.keep is None:
        args.keep = str(Path(tempfile.mkdtemp(prefix="backtest-bench-")) / "bench.duckdb")
    url = f"duckdb:///{args.keep}"
    if args.path:
        run_path(args, url)
        return
    if not Path(args.keep).exists():
        fill(args, url)
    else:
        print(f"reusing {args.keep}")
    with Warehouse(url).engine.connect() as conn:
        stored_rows = conn.execute(sa.text("select count(*) from backtest_result")).scalar()
    print(f"backtest_result: {stored_rows:,} rows; summary as of one more date")
    for path in ("new", "old"):
        Path(args.keep).with_suffix(f".{path}.parquet").unlink(missing_ok=True)
        if path == "old" and stored_rows > args.old_max_rows:
            print(
                f"old path skipped: {stored_rows:,} rows > --old-max-rows {args.old_max_rows:,} "
                "(every row through Python tuples)"
            )
            continue
        command = [sys.executable, __file__, *sys.argv[1:], "--keep", args.keep, "--path", path]
        subprocess.run(command, check=True)
    new = Path(args.keep).with_suffix(".new.parquet")
    old = Path(args.keep).with_suffix(".old.parquet")
    if old.exists() and new.exists():
        from polars.testing import assert_frame_equal

        assert_frame_equal(pl.read_parquet(new), pl.read_parquet(old), rel_tol=1e-12)
        print("old and new summaries agree")
    print("read_table:")
    with tempfile.TemporaryDirectory() as folder:
        time_reads(args, f"duckdb:///{Path(folder) / 'reads.duckdb'}")
    if args.postgres:
        time_reads(args, args.postgres)


if __name__ == "__main__":
    main()
