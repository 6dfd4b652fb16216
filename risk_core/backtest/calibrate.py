"""Calibration: the smallest scan range (grid models) or confidence (ES) that meets a
target coverage on the historical backtest, and the cost of anti-procyclicality tools.

Grid models (``cross_grid``, ``deribit_spm``) scale every ``price_range`` of the ruleset
by one factor; ES models move ``confidence``. The search is a bisection on the
historical backtest of :mod:`risk_core.backtest.historical` (coverage is monotone in
both, up to sampling noise). The proposed ruleset is written as a new TOML file, never
over an existing one.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from risk_core.backtest.historical import run_backtest
from risk_core.ruleset import Ruleset

GRID_METHODS = ("cross_grid", "deribit_spm")


@dataclass(frozen=True)
class Calibration:
    model: str
    parameter: str  #: "price_range scale" or "confidence"
    target: float
    value: float
    coverage: float
    average_margin_usd: float
    tool_costs: dict[str, float]  #: anti-procyclicality tool -> average extra margin, USD

    @property
    def met(self) -> bool:
        """False when even the widest value searched misses the target."""
        return self.coverage >= self.target


def _scaled(params: dict[str, Any], scale: float) -> dict[str, Any]:
    out = copy.deepcopy(params)

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if key == "price_range":
                node[key] = float(value) * scale
            elif isinstance(value, dict):
                walk(value)

    walk(out)
    return out


def _only(ruleset: Ruleset, params: dict[str, Any]) -> Ruleset:
    """A ruleset whose governing model is ``params`` alone (faster backtests)."""
    return replace(ruleset, models={"portfolio": params})


def _coverage(
    history: pl.DataFrame, ruleset: Ruleset, start: dt.date, end: dt.date, horizon: int
) -> tuple[float, float, pl.DataFrame]:
    results = run_backtest(history, ruleset, start, end, horizon)
    mine = results.filter(pl.col("model") == "portfolio")
    if mine.is_empty():
        return 1.0, 0.0, mine
    exceeded = float(mine["exceedance"].cast(pl.Float64).to_numpy().mean())
    return 1.0 - exceeded, float(mine["margin_usd"].to_numpy().mean()), mine


def calibrate(
    history: pl.DataFrame,
    ruleset: Ruleset,
    model: str,
    start: dt.date,
    end: dt.date,
    target: float,
    horizon: int = 1,
    steps: int = 6,
) -> tuple[Calibration, dict[str, Any]]:
    """Calibrate ``model`` of ``ruleset``; returns the result and the proposed params."""
    params = dict(ruleset.models[model])
    method = str(params["method"])
    grid = method in GRID_METHODS
    lo, hi = (0.25, 2.0) if grid else (0.90, 0.9995)
    parameter = "price_range scale" if grid else "confidence"

    def make(x: float) -> dict[str, Any]:
        return _scaled(params, x) if grid else {**params, "confidence": x}

    best = hi
    cov, avg, _ = _coverage(history, _only(ruleset, make(hi)), start, end, horizon)
    best_cov, best_avg = cov, avg
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        cov, avg, _ = _coverage(history, _only(ruleset, make(mid)), start, end, horizon)
        if cov >= target:
            hi, best, best_cov, best_avg = mid, mid, cov, avg
        else:
            lo = mid
    proposed = make(best)
    costs = {"buffer_25pct": 0.25 * best_avg}
    if method == "hs_es":
        _, without, _ = _coverage(
            history, _only(ruleset, {**proposed, "stress_weight": 0.0}), start, end, horizon
        )
        costs["stressed_weight_25pct"] = best_avg - without
        _, ten_years, _ = _coverage(
            history, _only(ruleset, {**proposed, "lookback_days": 3652}), start, end, horizon
        )
        costs["ten_year_lookback"] = ten_years - without
    return Calibration(model, parameter, target, best, best_cov, best_avg, costs), proposed


def write_proposed(
    ruleset: Ruleset, model: str, proposed: dict[str, Any], path: Path, calibration: Calibration
) -> Path:
    """A new ruleset file with the calibrated model; refuses to overwrite."""
    if path.exists():
        raise FileExistsError(f"{path} exists: a proposed ruleset never overwrites a file")
    models = {**ruleset.models, model: proposed}
    lines = [
        f"# Proposed by margin-eod calibrate from {ruleset.label} ({ruleset.sha256[:12]}):",
        f"# {calibration.model} {calibration.parameter} = {calibration.value:.6g} meets coverage "
        f"{calibration.coverage:.4%} >= {calibration.target:.2%}.",
        f'name = "{ruleset.name}-calibrated"',
        f'version = "{ruleset.version}+cal"',
        f'description = "{ruleset.description} (calibrated)"',
        "",
        "[backtest]",
        *(f"{k} = {_toml(v)}" for k, v in ruleset.backtest.items()),
    ]
    for name, params in models.items():
        lines += _table(f"models.{name}", params)
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _table(name: str, params: dict[str, Any]) -> list[str]:
    """TOML lines of a table: its scalars, then arrays of tables, then sub-tables."""
    lines = ["", f"[{name}]"]
    arrays = {
        k: v for k, v in params.items() if isinstance(v, list) and v and isinstance(v[0], dict)
    }
    nested = {k: v for k, v in params.items() if isinstance(v, dict)}
    for key, value in params.items():
        if key not in arrays and key not in nested:
            lines.append(f"{key} = {_toml(value)}")
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{name}.{key}]]", *(f"{k} = {_toml(v)}" for k, v in item.items())]
    for key, value in nested.items():
        lines += _table(f"{name}.{key}", value)
    return lines
