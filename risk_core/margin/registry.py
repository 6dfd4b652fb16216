"""Margin methods by the name a ruleset's ``method`` uses (imported on first use)."""

from __future__ import annotations

import importlib
from typing import cast

from risk_core.margin.base import MarginModel

#: method name -> "module:function"
METHODS: dict[str, str] = {
    "standard": "risk_core.margin.standard:compute",
    "deribit_spm": "risk_core.margin.deribit:compute",
    "cross_grid": "risk_core.margin.cross:compute",
    "hs_es": "risk_core.margin.hs_es:compute",
}


def get_method(name: str) -> MarginModel:
    try:
        target = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown margin method {name!r}; known: {', '.join(METHODS)}") from None
    module, function = target.split(":")
    return cast(MarginModel, getattr(importlib.import_module(module), function))
