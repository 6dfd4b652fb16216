"""Pure risk computation for the end-of-day margin pipeline.

Nothing in this package imports dagster, sqlalchemy or great_expectations: it works
on NumPy arrays and Polars frames so that it can be tested, benchmarked and reused
without an orchestrator. Units and signs are stated once in :mod:`risk_core.conventions`.
"""

__version__ = "0.1.0"
