"""End-of-day throughput: stage by stage, then the full Dagster run.

    .venv/bin/python benchmarks/eod.py --positions 100000 --accounts 10000 \\
        [--warehouse duckdb:///bench.duckdb] [--ruleset cross-margin] [--keep DIR]

Generates a landing zone (Parquet; not timed as part of the end of day), then times each
stage of the computation as the assets run it, the warehouse write, and the whole job
through Dagster. Peak memory is the process's maximum resident set so far.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

from risk_core import eod
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import read_landing
from risk_core.ruleset import load_ruleset

DATE = dt.date(2026, 11, 20)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--warehouse")
    parser.add_argument("--ruleset", default="cross-margin")
    parser.add_argument("--keep", type=Path, help="write the landing zone here and keep it")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="eod-bench-"))
    url = args.warehouse or f"duckdb:///{folder / 'bench.duckdb'}"
    start = time.perf_counter()
    if args.keep and (folder / DATE.isoformat()).is_dir():
        print(f"reusing the landing zone in {folder}")
    else:
        generate_landing(
            folder,
            DATE,
            accounts=args.accounts,
            positions=args.positions,
            seed=1,
            file_format="parquet",
        )
        print(
            f"generate {args.positions:,} positions / {args.accounts:,} accounts: "
            f"{time.perf_counter() - start:.1f} s (not part of the end of day)"
        )

    from pipelines.runner import run_business_date
    from quality import validate_landing

    rows: list[tuple[str, float]] = []

    def stage(name: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - t0))
        print(f"  {name:<28} {rows[-1][1]:8.2f} s   peak {_peak_gib():5.2f} GiB", flush=True)
        return out

    ruleset = load_ruleset(args.ruleset)
    data = stage("read landing", lambda: read_landing(folder, DATE))
    stage("validate", lambda: validate_landing(data))
    table = stage("instrument table + IVs", lambda: eod.instrument_table(data))
    inputs = stage("position matrix", lambda: eod.margin_inputs(data, table))
    stage("position Greeks", lambda: eod.position_greeks(inputs))
    for model, params in sorted(ruleset.models.items()):
        from risk_core.margin.registry import get_method

        stage(f"model {model}", lambda p=params: get_method(str(p["method"]))(inputs, p))
    total = sum(t for _, t in rows)
    print(f"  {'computation total':<28} {total:8.2f} s")

    t0 = time.perf_counter()
    outcome = run_business_date(
        DATE,
        landing_dir=str(folder),
        warehouse_url=url,
        ruleset=args.ruleset,
        artefacts_dir=str(folder / "artefacts"),
    )
    wall = time.perf_counter() - t0
    status = "published" if outcome.success else f"FAILED: {outcome.errors}"
    print(
        f"full Dagster run into {url.split(':')[0]}: {wall:.2f} s wall, {status}; "
        f"{args.positions / wall:,.0f} positions/s; peak {_peak_gib():.2f} GiB"
    )


if __name__ == "__main__":
    main()
