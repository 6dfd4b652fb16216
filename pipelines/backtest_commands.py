"""``margin-eod backtest``: every model of a ruleset over real daily prices."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(sub: Any, date_type: Any) -> None:
    parser = sub.add_parser("backtest", help="historical backtest of rulesets' models")
    parser.add_argument("--start", type=date_type, required=True)
    parser.add_argument("--end", type=date_type, required=True)
    parser.add_argument(
        "--ruleset", action="append", help="ruleset name or file; repeat to compare side by side"
    )
    parser.add_argument("--horizon", type=int, default=1, help="holding period, days")
    parser.add_argument(
        "--history",
        type=Path,
        action="append",
        required=True,
        help="real daily price file(s), e.g. ../shared/data/prices/BTC-USD.csv",
    )
    parser.add_argument("--dvol", type=Path, help="Deribit DVOL daily file (BTC)")
    parser.add_argument("--confidence", type=float, default=0.99)
    parser.add_argument(
        "--out", type=Path, default=Path("backtest"), help="folder for results, summary and charts"
    )
    parser.add_argument(
        "--warehouse",
        help="also publish the rows (models named 'backtest:<ruleset>:<model>') to this URL",
    )


def _publish(url: str, ruleset_name: str, results: Any, summary: Any, end: Any) -> None:
    import uuid

    import polars as pl

    from pipelines.warehouse import Warehouse
    from risk_core import outputs

    run_id = f"backtest-{uuid.uuid4()}"
    prefix = pl.lit(f"backtest:{ruleset_name}:") + pl.col("model")
    result = results.with_columns(prefix.alias("model"), pl.lit(run_id).alias("run_id"))
    summary = summary.with_columns(
        prefix.alias("model"), pl.lit(run_id).alias("run_id"), pl.lit(end).alias("business_date")
    )
    warehouse = Warehouse(url)
    warehouse.create_schema()
    warehouse.replace_models(
        {
            "backtest_result": result.select(list(outputs.BACKTEST_RESULT.columns)),
            "backtest_summary": summary.select(list(outputs.BACKTEST_SUMMARY.columns)),
        }
    )


def run(args: argparse.Namespace) -> int:
    import polars as pl
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from risk_core.backtest import charts, historical
    from risk_core.backtest.stats import rolling_worst_window
    from risk_core.backtest.summary import summarize
    from risk_core.ruleset import DEFAULT_RULESET, load_ruleset

    history = historical.load_history(args.history)
    dvol = historical.read_dvol(args.dvol) if args.dvol else None
    days = (args.end - args.start).days + 1
    console = Console(stderr=True)
    summaries = []
    for name in args.ruleset or [DEFAULT_RULESET]:
        ruleset = load_ruleset(name)
        with Progress(console=console) as progress:
            task = progress.add_task(f"backtest {ruleset.label}", total=days)
            results = historical.run_backtest(
                history,
                ruleset,
                args.start,
                args.end,
                args.horizon,
                dvol,
                progress=lambda _d, t=task: progress.advance(t),
            )
        if results.is_empty():
            console.print("no date in the range has prices for every underlying")
            return 1
        out = args.out / ruleset.name
        out.mkdir(parents=True, exist_ok=True)
        results.write_parquet(out / "backtest_result.parquet")
        summary = summarize(results, args.end, args.confidence, window_days=10**6)
        worst = {
            model: max(
                rolling_worst_window(g.sort("business_date")["exceedance"].to_numpy(), 250)
                for _, g in results.filter(pl.col("model") == model).group_by("account_id")
            )
            for model in summary["model"]
        }
        summary = summary.with_columns(
            pl.lit(ruleset.label).alias("ruleset"),
            pl.col("model")
            .replace_strict(worst, return_dtype=pl.Int64)
            .alias("worst_250d_per_book"),
        )
        summary.write_csv(out / "backtest_summary.csv")
        if args.warehouse:
            published = summary.drop("ruleset", "worst_250d_per_book")
            _publish(args.warehouse, ruleset.name, results, published, args.end)
        charts.coverage_comparison(summary, out / "coverage.png")
        for model in summary["model"]:
            charts.margin_vs_loss(
                results, model, "BTC:short_straddle", out / f"margin_vs_loss_{model}.png"
            )
        summaries.append(summary)
    table = Table(
        title=f"{args.start} .. {args.end}, horizon {args.horizon} d, "
        f"confidence {args.confidence:.2%}"
    )
    for column in (
        "ruleset",
        "model",
        "obs",
        "exceed.",
        "coverage",
        "Kupiec p",
        "Christ. p",
        "light",
        "worst 250d/book",
        "peak/trough",
    ):
        table.add_column(column, justify="left" if column in ("ruleset", "model") else "right")
    for r in pl.concat(summaries).iter_rows(named=True):
        table.add_row(
            r["ruleset"],
            r["model"],
            f"{r['observations']:,}",
            f"{r['exceedances']:,}",
            f"{1 - r['exceedances'] / r['observations']:.2%}",
            f"{r['kupiec_pvalue']:.3f}",
            f"{r['christoffersen_pvalue']:.3f}",
            r["traffic_light"],
            str(r["worst_250d_per_book"]),
            f"{r['peak_to_trough']:.1f}",
        )
    Console(width=140).print(table)
    Console().print(f"results, summaries and charts in {args.out}/<ruleset>/")
    return 0


def add_calibrate(sub: Any, date_type: Any) -> None:
    parser = sub.add_parser("calibrate", help="smallest scan range / confidence meeting a coverage")
    parser.add_argument("--start", type=date_type, required=True)
    parser.add_argument("--end", type=date_type, required=True)
    parser.add_argument("--ruleset", default=None)
    parser.add_argument("--model", default="portfolio", help="model of the ruleset")
    parser.add_argument(
        "--target", type=float, action="append", help="coverage target(s), default 0.99 and 0.995"
    )
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--history", type=Path, action="append", required=True)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("proposed"),
        help="folder for the proposed ruleset files (never overwritten)",
    )


def run_calibrate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from risk_core.backtest import historical
    from risk_core.backtest.calibrate import calibrate, write_proposed
    from risk_core.ruleset import DEFAULT_RULESET, load_ruleset

    ruleset = load_ruleset(args.ruleset or DEFAULT_RULESET)
    history = historical.load_history(args.history)
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    for target in args.target or [0.99, 0.995]:
        result, proposed = calibrate(
            history, ruleset, args.model, args.start, args.end, target, args.horizon
        )
        path = args.out / f"{ruleset.name}-{args.model}-{target:.4f}.toml"
        try:
            write_proposed(ruleset, args.model, proposed, path, result)
        except FileExistsError as err:
            console.print(f"[red]{err}[/red]")
            return 1
        if not result.met:
            console.print(f"[red]target {target:.2%} not met even at {result.value:.4g}[/red]")
        costs = ", ".join(f"{k} {v:,.2f} USD" for k, v in result.tool_costs.items())
        console.print(
            f"{args.model} target {target:.2%}: {result.parameter} = {result.value:.4g} "
            f"(coverage {result.coverage:.3%}, average margin {result.average_margin_usd:,.2f} "
            f"USD); anti-procyclicality cost: {costs}; proposed ruleset {path}"
        )
    return 0
