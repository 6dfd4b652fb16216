"""Small shared pieces of the assets: owners, the business date of a run."""

import datetime as dt

import dagster as dg

OWNERS = ["team:risk-engineering"]


def business_date(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def code_version() -> str:
    """The package version and, in a git checkout, the commit (``+dirty`` if modified)."""
    import subprocess
    from pathlib import Path

    from risk_core import __version__

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
