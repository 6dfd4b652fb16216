"""Backtesting of margin models: statistics, the daily backtest, historical runs."""
