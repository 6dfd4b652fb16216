"""``margin-eod``: generate a landing zone, run or backfill business dates, summarize.

Exit codes: 0 success, 1 a business date failed (bad input: the message names file,
column, rule and rows; the warehouse is left as it was), 2 wrong usage.

Secrets never go on the command line (it shows in ``ps`` and shell history): a
``--warehouse`` URL with a password is refused; put it in ``MARGIN_WAREHOUSE_URL`` (read
through Dagster's ``EnvVar``) or leave it to libpq (``PGPASSWORD``, ``~/.pgpass``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

#: URL query parameters that carry a secret (libpq takes ``?password=...``).
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--landing", help="landing folder (default: $MARGIN_LANDING_DIR)")
    parser.add_argument(
        "--warehouse",
        help="SQLAlchemy URL (default: $MARGIN_WAREHOUSE_URL, else duckdb:///margin_eod.duckdb)",
    )
    parser.add_argument("--ruleset", help="ruleset name or file (default: cross-margin)")
    parser.add_argument("--artefacts", help="folder for Data Docs and charts (default: artefacts)")
    parser.add_argument(
        "--shards",
        type=_positive,
        help="account shards of the margin models (default: $MARGIN_SHARDS, else 1)",
    )
    parser.add_argument(
        "--processes",
        type=_positive,
        default=1,
        help="steps run at once, each in its own process (default 1: all in this process)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="margin-eod", description="End-of-day portfolio margining for crypto derivatives."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a generated landing zone for a date")
    gen.add_argument("--date", type=_date, required=True)
    gen.add_argument("--out", type=Path, required=True, help="landing folder to write")
    gen.add_argument("--accounts", type=_positive, default=200)
    gen.add_argument("--positions", type=_positive, default=2_000)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--history", type=Path, action="append", default=[], help="real daily price file(s)"
    )
    gen.add_argument("--format", choices=("csv", "parquet"), default="csv")
    gen.add_argument(
        "--strikes-scale",
        type=float,
        default=1.0,
        help="multiplies the strikes listed per expiry (default 1.0: about 1,900 "
        "instruments; 1.6: about 3,000)",
    )

    run = sub.add_parser("run", help="materialize every asset of a business date")
    run.add_argument("--date", type=_date, required=True)
    _add_run_options(run)

    backfill = sub.add_parser("backfill", help="run every business date of a range")
    backfill.add_argument("--start", type=_date, required=True)
    backfill.add_argument("--end", type=_date, required=True)
    backfill.add_argument(
        "--force",
        action="store_true",
        help="rerun every date (default: skip dates already published from the same "
        "landing files, ruleset and code, up to the first date that must run again, so "
        "an interrupted backfill resumes where it stopped)",
    )
    _add_run_options(backfill)

    summary = sub.add_parser("summary", help="print the published figures of a date")
    summary.add_argument("--date", type=_date, required=True)
    summary.add_argument("--warehouse")

    sub.add_parser("rulesets", help="list the shipped rulesets")
    migrate = sub.add_parser("migrate", help="upgrade the warehouse schema in place (Alembic)")
    migrate.add_argument("--warehouse", help="SQLAlchemy URL (default: $MARGIN_WAREHOUSE_URL)")
    migrate.add_argument("--revision", default="head")
    roles = sub.add_parser("roles", help="create the warehouse's pipeline and analyst roles")
    roles.add_argument("--warehouse", required=True, help="PostgreSQL SQLAlchemy URL")
    from pipelines import backtest_commands

    backtest_commands.add_commands(sub, _date)
    backtest_commands.add_calibrate(sub, _date)
    return parser


def _generate(args: argparse.Namespace) -> int:
    from risk_core.landing.generator import generate_landing

    if not 0 < args.strikes_scale < float("inf"):  # also refuses nan
        print("margin-eod: --strikes-scale must be a positive number", file=sys.stderr)
        return 2
    out = generate_landing(
        args.out,
        args.date,
        accounts=args.accounts,
        positions=args.positions,
        seed=args.seed,
        history_files=tuple(args.history),
        file_format=args.format,
        strikes_scale=args.strikes_scale,
    )
    counts = ", ".join(f"{name} {rows:,}" for name, rows in out.rows.items())
    print(f"landing zone for {args.date} written to {out.folder}: {counts}")
    return 0


class _Published:
    """Which dates of a backfill are already published from exactly today's landing files,
    ruleset and code, so that an interrupted backfill resumes with the missing dates only.

    A date's backtest reads the margin of the dates before it, so once a backfill runs a
    date again it runs every later date of the range too (an earlier date corrected
    outside the range needs the range to start there, or ``--force``).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        from assets.common import code_version
        from pipelines.resources import build_resources, resolved_warehouse_url
        from pipelines.warehouse import Warehouse

        # the landing zone and ruleset that the runs resolve (arguments, else environment)
        resources = build_resources(args.landing, args.warehouse, args.ruleset)
        self.landing = resources["landing"].path()  # type: ignore[attr-defined]
        self.ruleset = resources["ruleset"]
        self.warehouse = Warehouse(resolved_warehouse_url(args.warehouse))
        self.code_version = code_version()
        self.rerun_rest = False

    def run_of(self, date: dt.date) -> str | None:
        """The run whose rows ``date`` holds when running it again would change nothing;
        None when it must run (also when this cannot be known: the run reports why)."""
        from risk_core.landing.reader import landing_inputs_sha256

        if self.rerun_rest:
            return None
        try:
            run = self.warehouse.latest_run(date)
            same = run is not None and (
                run["inputs_sha256"] == landing_inputs_sha256(self.landing, date)
                and run["ruleset_sha256"] == self.ruleset.load().sha256  # type: ignore[attr-defined]
                and run["code_version"] == self.code_version
            )
        except Exception:  # unknown means run it: the run names the error
            same = False
        if not same:
            self.rerun_rest = True
            return None
        return str(run["run_id"])  # type: ignore[index]

    def close(self) -> None:
        self.warehouse.engine.dispose()


def _run_dates(args: argparse.Namespace, dates: Sequence[dt.date], resume: bool = False) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from pipelines.runner import run_business_date

    console = Console(stderr=True)
    failed = 0
    published = _Published(args) if resume else None
    with (
        contextlib.ExitStack() as stack,
        Progress(console=console, transient=len(dates) == 1) as progress,
    ):
        if published:
            stack.callback(published.close)
        task = progress.add_task("end of day", total=len(dates))
        for date in dates:
            progress.update(task, description=f"end of day {date}")
            done = published.run_of(date) if published else None
            if done is not None:
                progress.console.print(
                    f"{date}: already published from these inputs, ruleset and code (run {done})"
                )
                progress.advance(task)
                continue
            outcome = run_business_date(
                date,
                landing_dir=args.landing,
                warehouse_url=args.warehouse,
                ruleset=args.ruleset,
                artefacts_dir=args.artefacts,
                shards=args.shards,
                processes=args.processes,
            )
            if outcome.success:
                progress.console.print(f"{date}: published (run {outcome.run_id})")
            else:
                failed += 1
                progress.console.print(f"[red]{date}: FAILED, nothing published[/red]")
                for line in outcome.errors:
                    progress.console.print(f"  {line}", markup=False, highlight=False)
            progress.advance(task)
    return 1 if failed else 0


def _summary(args: argparse.Namespace) -> int:
    from pipelines.summary import print_summary

    return print_summary(args.date, args.warehouse)


def _password_on_command_line(args: argparse.Namespace) -> bool:
    url = getattr(args, "warehouse", None)
    if not url:
        return False
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return False  # not a URL: the command reports it
    return parsed.password is not None or bool(SECRET_QUERY_KEYS & set(parsed.query))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if _password_on_command_line(args):
        print(
            "margin-eod: the --warehouse URL carries a password; put the URL in "
            "MARGIN_WAREHOUSE_URL (or the password in PGPASSWORD or ~/.pgpass) instead",
            file=sys.stderr,
        )
        return 2
    if args.command == "generate":
        return _generate(args)
    if args.command == "run":
        return _run_dates(args, [args.date])
    if args.command == "backfill":
        if args.end < args.start:
            print("margin-eod: --end is before --start", file=sys.stderr)
            return 2
        days = (args.end - args.start).days + 1
        dates = [args.start + dt.timedelta(days=i) for i in range(days)]
        return _run_dates(args, dates, resume=not args.force)
    if args.command == "backtest":
        from pipelines import backtest_commands

        return backtest_commands.run(args)
    if args.command == "calibrate":
        from pipelines import backtest_commands

        return backtest_commands.run_calibrate(args)
    if args.command == "migrate":
        from pipelines.resources import resolved_warehouse_url
        from pipelines.warehouse import Warehouse

        warehouse = Warehouse(resolved_warehouse_url(args.warehouse))
        warehouse.migrate(args.revision)
        print(f"warehouse schema at revision {warehouse.schema_revision()}")
        return 0
    if args.command == "roles":
        from pipelines.warehouse import Warehouse

        warehouse = Warehouse(args.warehouse)
        warehouse.create_schema()
        warehouse.create_roles()
        print("roles pipeline (writes) and analyst (reads) are in place")
        return 0
    if args.command == "summary":
        return _summary(args)
    if args.command == "rulesets":
        from risk_core.ruleset import available_rulesets, load_ruleset

        for name in available_rulesets():
            r = load_ruleset(name)
            print(f"{r.label:32} {r.sha256[:16]}  {r.description}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
