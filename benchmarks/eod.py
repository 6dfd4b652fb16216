"""End-of-day throughput and memory: stage by stage, the I/O floor, and the full run.

    .venv/bin/python benchmarks/eod.py --positions 1000 100000 1000000 --accounts 100000
    .venv/bin/python benchmarks/eod.py --positions 1000000 \\
        --warehouse postgresql+psycopg://postgres@127.0.0.1:5432/test

For each size it generates (not timed) a landing zone of two consecutive dates, D - 1 and
D (Parquet, about 3,000 instruments over BTC, ETH and SOL with ``--strikes-scale 1.6``),
publishes D - 1 so that D's daily backtest has a margin to test, then for D:

1. stages: each step of the end of day as the assets run it (read, validation with Data
   Docs, instrument table and implied vols, position matrix, Greeks, every model of the
   ruleset, margin tables, the daily backtest, warehouse tables, the write), timed in this
   process; per stage the wall time and the peak resident memory during the stage (the
   kernel's high-water mark, reset before each stage through /proc/self/clear_refs);
2. the I/O floor: just reading the landing files and writing the same output rows;
3. the full run: ``margin-eod run`` in a new process, as users run it (Python start,
   imports, Dagster, every asset), wall time and peak memory of that process and its
   children; its ratio to the I/O floor.

Sizes share one warehouse (each size its own business dates). Figures go to stdout;
``--json FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
GIB = 1024**3


def _peak_gib() -> float:
    """The process's peak resident memory since the last reset (VmHWM), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: peaks are then since the process started


class Stages:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        _reset_peak()
        t0 = time.perf_counter()
        out = fn()
        self.rows.append((name, time.perf_counter() - t0, _peak_gib()))
        print(f"    {name:<32} {self.rows[-1][1]:8.2f} s   peak {self.rows[-1][2]:6.2f} GiB")
        return out

    @property
    def total(self) -> float:
        return sum(t for _, t, _ in self.rows)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, check=False
    )


def _generate(folder: Path, date: dt.date, positions: int, accounts: int, scale: float) -> None:
    if (folder / date.isoformat()).is_dir():
        return
    done = _cli(
        "generate",
        "--date",
        date.isoformat(),
        "--out",
        str(folder),
        "--accounts",
        str(accounts),
        "--positions",
        str(positions),
        "--seed",
        "1",
        "--format",
        "parquet",
        "--strikes-scale",
        str(scale),
    )
    if done.returncode:
        raise SystemExit(f"generate failed: {done.stderr}")


def _run(folder: Path, date: dt.date, url: str, extra: list[str]) -> tuple[float, float, str]:
    """``margin-eod run`` in a new process: wall seconds, peak GiB, last output line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    done = _cli(
        "run",
        "--date",
        date.isoformat(),
        "--landing",
        str(folder),
        "--warehouse",
        url,
        "--artefacts",
        str(folder / "artefacts"),
        *extra,
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode:
        raise SystemExit(f"run {date} failed:\n{done.stderr[-3000:]}")
    # ru_maxrss of children is the largest child so far: exact when this one is the largest
    return wall, max(peak, before) * 1024 / GIB, done.stderr.strip().splitlines()[-1]


def measure(
    size: int,
    accounts: int,
    date: dt.date,
    folder: Path,
    url: str,
    ruleset_name: str,
    extra: list[str],
) -> dict[str, Any]:
    from pipelines.warehouse import Warehouse
    from quality import validate_landing
    from risk_core import eod, outputs
    from risk_core.backtest.daily import daily_backtest
    from risk_core.landing.reader import read_landing
    from risk_core.ruleset import load_ruleset

    before = date - dt.timedelta(days=1)
    scale = 1.6
    print(f"\n{size:,} positions, {accounts:,} accounts ({folder})")
    t0 = time.perf_counter()
    for d in (before, date):
        _generate(folder, d, size, accounts, scale)
    print(f"  generated in {time.perf_counter() - t0:.1f} s (not part of the end of day)")
    warm, _, _ = _run(folder, before, url, extra)
    print(f"  published {before} first (its margin is what {date} backtests): {warm:.1f} s")

    ruleset = load_ruleset(ruleset_name)
    warehouse = Warehouse(url)
    stage = Stages()
    print(f"  stages of {date}, in this process:")
    data = stage("read landing", lambda: read_landing(folder, date))
    docs = folder / "artefacts" / "bench_docs"
    report = stage("validate (GX, Data Docs)", lambda: validate_landing(data, docs))
    table = stage("instrument table + IVs", lambda: eod.instrument_table(data))
    inputs = stage("position matrix", lambda: eod.margin_inputs(data, table))
    greeks = stage("position Greeks", lambda: eod.position_greeks(inputs))
    from risk_core.margin.registry import get_method

    results = {}
    for model, params in sorted(ruleset.models.items()):
        results[model] = stage(
            f"model {model} ({params['method']})",
            lambda p=params: get_method(str(p["method"]))(inputs, p),
        )
    tables = stage("margin tables", lambda: eod.margin_tables(results, ruleset))

    def backtest() -> Any:
        previous = read_landing(folder, before)
        margin = warehouse.read_table("margin_account", before)
        return daily_backtest(previous.positions, margin, eod.instrument_table(previous), table, 1)

    tested = stage("daily backtest (book of D-1)", backtest)

    def shape() -> dict[str, Any]:
        frames = {**eod.margin_frames(tables, greeks), "backtest_result": tested}
        stamped = {
            n: eod.stamp(f, date, "bench", list(outputs.BY_NAME[n].columns))
            for n, f in frames.items()
        }
        stamped["data_quality"] = report.to_frame("bench")
        return stamped

    rows = stage("warehouse tables", shape)
    stage("warehouse write (one transaction)", lambda: warehouse.replace_business_date(date, rows))
    print(f"    {'sum of stages':<32} {stage.total:8.2f} s")

    # The I/O floor: the same files read, the same rows written, nothing computed.
    t_read = time.perf_counter()
    read_landing(folder, date)
    t_read = time.perf_counter() - t_read
    t_write = time.perf_counter()
    warehouse.replace_business_date(date, rows)
    t_write = time.perf_counter() - t_write
    floor = t_read + t_write
    print(f"  I/O floor: read {t_read:.2f} s + write {t_write:.2f} s = {floor:.2f} s")

    wall, peak, last = _run(folder, date, url, extra)
    print(
        f"  full run (margin-eod run, new process): {wall:.2f} s wall, peak {peak:.2f} GiB, "
        f"{size / wall:,.0f} positions/s, {wall / floor:.1f} x the I/O floor; {last}"
    )
    return {
        "positions": size,
        "accounts": accounts,
        "instruments": len(table),
        "stages": [{"stage": n, "seconds": t, "peak_gib": p} for n, t, p in stage.rows],
        "stages_total_s": stage.total,
        "io_floor_s": floor,
        "full_run_s": wall,
        "full_run_peak_gib": peak,
        "ratio_to_floor": wall / floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[100_000])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--warehouse", help="SQLAlchemy URL (default: DuckDB in --workdir)")
    parser.add_argument("--ruleset", default="cross-margin")
    parser.add_argument("--workdir", type=Path, help="keep landing zones here and reuse them")
    parser.add_argument("--shards", type=int, default=1, help="account shards of the full run")
    parser.add_argument("--processes", type=int, default=1, help="processes of the full run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eod-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.warehouse or f"duckdb:///{workdir / 'bench.duckdb'}"
    extra = ["--ruleset", args.ruleset, "--shards", str(args.shards)]
    extra += ["--processes", str(args.processes)]
    print(f"warehouse {url.split('@')[-1]}, ruleset {args.ruleset}, {os.cpu_count()} CPUs")
    figures = []
    for i, size in enumerate(args.positions):
        date = dt.date(2026, 11, 20) - dt.timedelta(days=2 * i)
        folder = workdir / f"p{size}"
        figures.append(measure(size, args.accounts, date, folder, url, args.ruleset, extra))
    print("\nsummary")
    print(
        f"  {'positions':>10} {'full run s':>10} {'positions/s':>12} {'peak GiB':>9} "
        f"{'floor s':>8} {'x floor':>8} {'us/position':>12}"
    )
    for f in figures:
        print(
            f"  {f['positions']:>10,} {f['full_run_s']:>10.2f} "
            f"{f['positions'] / f['full_run_s']:>12,.0f} {f['full_run_peak_gib']:>9.2f} "
            f"{f['io_floor_s']:>8.2f} {f['ratio_to_floor']:>8.1f} "
            f"{1e6 * f['full_run_s'] / f['positions']:>12.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
