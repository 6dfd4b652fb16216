"""The rules of every landing dataset, as Great Expectations suites defined in code.

Each dataset gets one suite. Column rules use GX's own expectations (not null, in set,
between, unique); rules that need other datasets (references, expiry against the
business date, the smile, day-over-day moves) are computed with Polars into boolean
``_ok_*`` columns that the suite expects to be true. Every rule yields one
:class:`~quality.report.CheckResult` naming the column, the rule and up to five sample
rows (1-based data rows of the file: the reader keeps file order). Errors block the
publication; warnings (suspicious but possible data) are only recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from quality.gx_runner import flag_column, run_suites
from quality.report import CheckResult, ValidationReport
from risk_core.conventions import CONTRACT_UNITS, KINDS, OPTION_TYPES, SETTLEMENTS
from risk_core.landing.reader import LandingData
from risk_core.landing.schemas import BY_NAME

SAMPLE = 5
#: Day-over-day index move (relative) above which a warning is raised.
INDEX_MOVE_WARNING = 0.25
#: Absolute distance of an IV from its expiry's median IV above which a warning is raised.
IV_DISTANCE_WARNING = 1.0
#: Put-call parity gap |C - P - (F - K)| in USD, as a fraction of the forward, above which
#: both legs are flagged (warning).
PARITY_WARNING = 0.005


@dataclass(frozen=True)
class Rule:
    """One expectation: ``kind`` is a GX expectation shape, ``column`` what it reads."""

    dataset: str
    check: str
    kind: Literal["not_null", "in_set", "between", "unique", "compound_unique", "flag", "rows"]
    column: str
    text: str
    severity: Literal["error", "warning"] = "error"
    options: dict[str, Any] = field(default_factory=dict)


def _flag(frame: pl.DataFrame, name: str, ok: pl.Expr) -> pl.DataFrame:
    return frame.with_columns(ok.fill_null(True).alias(f"_ok_{name}"))


def _in(column: str, other: pl.Series) -> pl.Expr:
    return pl.col(column).is_in(other.implode())


def _frames(data: LandingData) -> dict[str, pl.DataFrame]:
    """Each dataset with the ``_ok_*`` columns of its cross-dataset rules."""
    snapshot = dt.datetime.combine(data.business_date, dt.time(0), tzinfo=dt.UTC)
    instruments = data.instruments
    option = pl.col("kind") == "option"
    instruments = _flag(
        instruments,
        "option_fields",
        ~option
        | (
            pl.col("expiry").is_not_null()
            & pl.col("strike").is_not_null()
            & pl.col("option_type").is_not_null()
        ),
    )
    instruments = _flag(
        instruments, "future_expiry", (pl.col("kind") != "future") | pl.col("expiry").is_not_null()
    )
    instruments = _flag(
        instruments, "has_index", _in("underlying", data.index_prices["underlying"])
    )
    instruments = _flag(instruments, "has_mark", _in("instrument_id", data.marks["instrument_id"]))

    marks = _flag(
        data.marks, "instrument_exists", _in("instrument_id", data.instruments["instrument_id"])
    )
    options = marks.join(
        data.instruments.select("instrument_id", "kind", "underlying", "expiry"),
        on="instrument_id",
        how="left",
        maintain_order="left",
    )
    median = pl.col("mark_iv").median().over("underlying", "expiry")
    far = (pl.col("kind") == "option") & ((pl.col("mark_iv") - median).abs() > IV_DISTANCE_WARNING)
    marks = marks.with_columns(options.select((~far).fill_null(True).alias("_ok_near_smile")))
    marks = marks.with_columns(_parity_ok(data).alias("_ok_parity"))

    previous = (
        data.price_history.filter(pl.col("date") < data.business_date)
        .sort("date")
        .group_by("underlying")
        .agg(pl.col("close").last().alias("_previous"))
    )
    index = data.index_prices.join(previous, on="underlying", how="left", maintain_order="left")
    index = _flag(
        index,
        "index_move",
        (pl.col("index_price") / pl.col("_previous") - 1.0).abs() <= INDEX_MOVE_WARNING,
    ).drop("_previous")

    positions = data.positions.join(
        data.instruments.select("instrument_id", "expiry"),
        on="instrument_id",
        how="left",
        maintain_order="left",
    )
    positions = _flag(
        positions, "instrument_exists", _in("instrument_id", data.instruments["instrument_id"])
    )
    positions = _flag(positions, "has_mark", _in("instrument_id", data.marks["instrument_id"]))
    positions = _flag(
        positions, "not_expired", pl.col("expiry").is_null() | (pl.col("expiry") > pl.lit(snapshot))
    )
    positions = positions.drop("expiry")

    collateral = _flag(data.collateral, "has_index", _in("asset", data.index_prices["underlying"]))
    history = data.price_history
    missing = (
        data.instruments.select("underlying")
        .unique()
        .filter(~_in("underlying", history["underlying"].unique()))
    )
    return {
        "instruments": instruments,
        "marks": marks,
        "index_prices": index,
        "positions": positions,
        "collateral": collateral,
        "price_history": history,
        "price_history_coverage": missing.with_columns(pl.lit(False).alias("_ok_covered")),
    }


def _parity_ok(data: LandingData) -> pl.Series:
    """Per marks row: False where the option's call/put pair breaks put-call parity."""
    legs = (
        data.marks.with_row_index("_row")
        .join(data.instruments, on="instrument_id", how="inner")
        .filter(pl.col("kind") == "option")
        .with_columns(
            pl.when(pl.col("settlement") == "inverse")
            .then(pl.col("mark_price") * pl.col("underlying_price"))
            .otherwise(pl.col("mark_price"))
            .alias("_usd")
        )
    )
    keys = ["underlying", "settlement", "expiry", "strike"]
    calls = legs.filter(pl.col("option_type") == "C").select(
        *keys, pl.col("_usd").alias("_c"), "underlying_price", "_row"
    )
    puts = legs.filter(pl.col("option_type") == "P").select(
        *keys, pl.col("_usd").alias("_p"), pl.col("_row").alias("_prow")
    )
    pairs = calls.join(puts, on=keys, how="inner").with_columns(
        (
            (pl.col("_c") - pl.col("_p") - (pl.col("underlying_price") - pl.col("strike"))).abs()
            <= PARITY_WARNING * pl.col("underlying_price")
        ).alias("_ok")
    )
    bad_rows = pl.concat(
        [pairs.filter(~pl.col("_ok"))["_row"], pairs.filter(~pl.col("_ok"))["_prow"]]
    )
    return ~pl.Series(range(data.marks.height)).is_in(bad_rows.implode())


def rules() -> list[Rule]:
    out: list[Rule] = []
    for name, dataset in BY_NAME.items():
        out += [
            Rule(name, f"{c}_not_null", "not_null", c, "must not be empty")
            for c in dataset.required
        ]
        key = list(dataset.key)
        if len(key) == 1:
            out.append(Rule(name, "key_unique", "unique", key[0], "must be unique"))
        else:
            out.append(Rule(name, "key_unique", "compound_unique", ",".join(key), "must be unique"))
    out += [
        Rule(
            "instruments",
            "not_empty",
            "rows",
            "instrument_id",
            "needs at least one row",
            options={"min_value": 1},
        ),
        Rule(
            "instruments",
            "kind_in_set",
            "in_set",
            "kind",
            f"must be one of {', '.join(KINDS)}",
            options={"value_set": list(KINDS)},
        ),
        Rule(
            "instruments",
            "settlement_in_set",
            "in_set",
            "settlement",
            f"must be one of {', '.join(SETTLEMENTS)}",
            options={"value_set": list(SETTLEMENTS)},
        ),
        Rule(
            "instruments",
            "contract_unit_in_set",
            "in_set",
            "contract_unit",
            f"must be one of {', '.join(CONTRACT_UNITS)}",
            options={"value_set": list(CONTRACT_UNITS)},
        ),
        Rule(
            "instruments",
            "option_type_in_set",
            "in_set",
            "option_type",
            "must be C or P",
            options={"value_set": list(OPTION_TYPES)},
        ),
        Rule(
            "instruments",
            "contract_size_positive",
            "between",
            "contract_size",
            "must be > 0",
            options={"min_value": 0, "strict_min": True},
        ),
        Rule(
            "instruments",
            "strike_positive",
            "between",
            "strike",
            "must be > 0",
            options={"min_value": 0, "strict_min": True},
        ),
        Rule(
            "instruments",
            "option_fields_present",
            "flag",
            "expiry,strike,option_type",
            "options need expiry, strike and option_type",
        ),
        Rule("instruments", "future_expiry_present", "flag", "expiry", "futures need an expiry"),
        Rule(
            "instruments",
            "underlying_has_index",
            "flag",
            "underlying",
            "must have an index price in index_prices",
        ),
        Rule(
            "instruments",
            "instrument_has_mark",
            "flag",
            "instrument_id",
            "every instrument needs a mark in marks",
        ),
        Rule(
            "marks",
            "mark_price_non_negative",
            "between",
            "mark_price",
            "must be >= 0",
            options={"min_value": 0},
        ),
        Rule(
            "marks",
            "mark_iv_range",
            "between",
            "mark_iv",
            "must be in (0, 5] when present",
            options={"min_value": 0, "max_value": 5, "strict_min": True},
        ),
        Rule(
            "marks",
            "underlying_price_positive",
            "between",
            "underlying_price",
            "must be > 0",
            options={"min_value": 0, "strict_min": True},
        ),
        Rule("marks", "instrument_exists", "flag", "instrument_id", "must exist in instruments"),
        Rule(
            "marks",
            "iv_near_smile",
            "flag",
            "mark_iv",
            f"more than {IV_DISTANCE_WARNING} from its expiry's median IV",
            "warning",
        ),
        Rule(
            "marks",
            "put_call_parity",
            "flag",
            "mark_price",
            f"call and put of one strike break parity by more than {PARITY_WARNING:.1%} of "
            "the forward",
            "warning",
        ),
        Rule(
            "index_prices",
            "index_price_positive",
            "between",
            "index_price",
            "must be > 0",
            options={"min_value": 0, "strict_min": True},
        ),
        Rule(
            "index_prices",
            "index_move",
            "flag",
            "index_price",
            f"moves more than {INDEX_MOVE_WARNING:.0%} from the last close",
            "warning",
        ),
        Rule("positions", "quantity_non_zero", "flag_expr", "quantity", "must be non-zero"),
        Rule(
            "positions", "instrument_exists", "flag", "instrument_id", "must exist in instruments"
        ),
        Rule("positions", "has_mark", "flag", "instrument_id", "must have a mark in marks"),
        Rule(
            "positions",
            "not_expired",
            "flag",
            "instrument_id",
            "instrument expired at or before the business date's 00:00 UTC snapshot",
        ),
        Rule(
            "collateral", "has_index", "flag", "asset", "must have an index price in index_prices"
        ),
        Rule(
            "price_history",
            "close_positive",
            "between",
            "close",
            "must be > 0",
            options={"min_value": 0, "strict_min": True},
        ),
        Rule(
            "price_history_coverage",
            "covered",
            "flag",
            "underlying",
            "every underlying needs price history up to the business date",
        ),
    ]
    return out


def validate_landing(data: LandingData, data_docs_dir: Path | None = None) -> ValidationReport:
    """Run every suite on the date's datasets; GX Data Docs go to ``data_docs_dir``."""
    frames = _frames(data)
    frames["positions"] = frames["positions"].with_columns(
        (pl.col("quantity") != 0).fill_null(True).alias("_ok_quantity_non_zero")
    )
    all_rules = [
        Rule(r.dataset, r.check, "flag", r.column, r.text, r.severity, r.options)
        if r.kind == "flag_expr"
        else r
        for r in rules()
    ]
    outcomes, docs = run_suites(frames, all_rules, data_docs_dir)
    results = []
    for rule in all_rules:
        failing_rows, count = outcomes[(rule.dataset, rule.check)]
        dataset = "price_history" if rule.dataset == "price_history_coverage" else rule.dataset
        results.append(_result(data, dataset, rule, frames[rule.dataset], failing_rows, count))
    return ValidationReport(data.business_date, tuple(results), docs)


def _result(
    data: LandingData, dataset: str, rule: Rule, frame: pl.DataFrame, rows: list[int], n: int
) -> CheckResult:
    """The outcome of one rule. Samples of a flag rule (every soft check: the only
    failures ever published) are its failing rows first by the dataset's key, so they
    do not depend on the file's row order; others are GX's first failing rows."""
    path = str(data.files.get(dataset, dataset))
    if n == 0:
        text = f"{rule.column}: {rule.text}"
        return CheckResult(dataset, rule.check, rule.severity, True, 0, text, path, text)
    if rule.kind == "flag":
        schema = BY_NAME.get(rule.dataset)
        key = [c for c in (schema.key if schema else ()) if c in frame.columns]
        failing = frame.with_row_index("_row").filter(~pl.col(flag_column(rule)).fill_null(False))
        rows = failing.sort(key or "_row", maintain_order=True).head(SAMPLE)["_row"].to_list()
    shown = frame.drop([c for c in frame.columns if c.startswith("_ok_")])
    rows = [r for r in rows[:SAMPLE] if r < shown.height]
    values = [", ".join(f"{k}={v!r}" for k, v in shown.row(r, named=True).items()) for r in rows]
    head = f"{rule.column}: {rule.text}; {n} row(s) fail"
    with_rows = "; ".join(f"row {r + 1}: {v}" for r, v in zip(rows, values, strict=True))
    detail = head + (f", e.g. {with_rows}" if rows else "")
    published = head + (f", e.g. {'; '.join(values)}" if rows else "")
    return CheckResult(dataset, rule.check, rule.severity, False, n, detail, path, published)
