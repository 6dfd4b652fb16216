"""Rulesets: versioned TOML files of model parameters, shipped in ``risk_core/rulesets``.

A ruleset names its models; each ``[models.<name>]`` table has a ``method`` (a function
of :mod:`risk_core.margin.registry`) and that method's parameters. The model called
``portfolio`` is the governing risk-based requirement, ``standard`` the per-position
baseline; further models (``hs_es``) add rows of their own. The file's SHA-256 is
recorded with every number it produced.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RULESET_DIR = Path(__file__).parent / "rulesets"
DEFAULT_RULESET = "cross-margin"
BACKTEST_DEFAULTS: dict[str, Any] = {"horizon_days": 1, "confidence": 0.99, "window_days": 250}


class RulesetError(ValueError):
    """A ruleset that does not exist or does not parse."""


@dataclass(frozen=True)
class Ruleset:
    name: str
    version: str
    description: str
    models: dict[str, dict[str, Any]]
    sha256: str
    path: Path
    #: daily backtest settings: horizon_days, confidence, window_days
    backtest: dict[str, Any] = field(default_factory=lambda: dict(BACKTEST_DEFAULTS))

    @property
    def label(self) -> str:
        """``name@version``, as stored in the warehouse ``ruleset`` columns."""
        return f"{self.name}@{self.version}"


def available_rulesets() -> list[str]:
    return sorted(p.stem for p in RULESET_DIR.glob("*.toml"))


def load_ruleset(name_or_path: str | Path = DEFAULT_RULESET) -> Ruleset:
    """Load a shipped ruleset by name, or any ruleset file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RULESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise RulesetError(
            f"unknown ruleset {str(name_or_path)!r}; shipped: {', '.join(available_rulesets())}"
        )
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesetError(f"{path}: {exc}") from None
    try:
        models = {str(k): dict(v) for k, v in data["models"].items()}
        ruleset = Ruleset(
            name=str(data["name"]),
            version=str(data["version"]),
            description=str(data.get("description", "")),
            models=models,
            sha256=hashlib.sha256(raw).hexdigest(),
            path=path,
            backtest={**BACKTEST_DEFAULTS, **dict(data.get("backtest", {}))},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise RulesetError(f"{path}: missing or malformed {exc}") from None
    for required in ("portfolio", "standard"):
        if required not in models:
            raise RulesetError(f"{path}: no [models.{required}] table")
    for model, params in models.items():
        if "method" not in params:
            raise RulesetError(f"{path}: [models.{model}] has no method")
    return ruleset
