"""Thin Dagster assets and checks of the end-of-day pipeline.

Each asset reads its inputs, calls one ``risk_core`` function and returns metadata;
no maths and no SQL here. Resources are named by key (``landing``, ``ruleset``,
``warehouse``, ``artefacts``) and defined in :mod:`pipelines.resources`.
"""

from assets.backtest import backtest_results
from assets.landing import LANDING_FILES, landing_snapshot
from assets.publish import warehouse_tables
from assets.risk import instrument_marks, margin_results, position_greeks

ALL_ASSETS = [
    backtest_results,
    *LANDING_FILES,
    landing_snapshot,
    instrument_marks,
    position_greeks,
    margin_results,
    warehouse_tables,
]

__all__ = ["ALL_ASSETS"]
