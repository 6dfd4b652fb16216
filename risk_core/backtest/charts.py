"""Backtest charts (PNG, matplotlib's Agg backend, deterministic file content)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

METADATA = {"Software": "margin-eod", "Creation Time": None}


def margin_vs_loss(results: pl.DataFrame, model: str, account: str, path: Path) -> Path:
    """Margin of ``model`` against the realized loss of one book, exceedances marked."""
    rows = results.filter((pl.col("model") == model) & (pl.col("account_id") == account)).sort(
        "business_date"
    )
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    dates = rows["business_date"].to_list()
    ax.plot(dates, rows["margin_usd"].to_list(), label="margin (USD)", lw=1.0)
    ax.plot(dates, (-rows["pnl_usd"]).to_list(), label="realized loss (USD)", lw=0.6, alpha=0.7)
    hit = rows.filter(pl.col("exceedance"))
    ax.scatter(
        hit["business_date"].to_list(),
        (-hit["pnl_usd"]).to_list(),
        color="red",
        s=12,
        label=f"exceedances ({hit.height})",
        zorder=3,
    )
    ax.set_title(f"{model}: {account}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, metadata=METADATA)
    plt.close(fig)
    return path


def coverage_comparison(summary: pl.DataFrame, path: Path) -> Path:
    """Coverage and peak-to-trough ratio of every model, side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    models = summary["model"].to_list()
    coverage = (1 - summary["exceedances"] / summary["observations"]).to_list()
    left.bar(models, coverage, color="tab:blue")
    left.axhline(float(summary["confidence"][0]), color="red", lw=1, label="target")
    left.set_ylim(min(min(coverage), 0.95) - 0.005, 1.0)
    left.set_title("coverage")
    left.legend()
    right.bar(models, summary["peak_to_trough"].to_list(), color="tab:orange")
    right.set_title("peak-to-trough margin ratio")
    fig.tight_layout()
    fig.savefig(path, metadata=METADATA)
    plt.close(fig)
    return path
