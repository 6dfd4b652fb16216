"""Margin models. Each model is a function ``compute(inputs, params) -> MarginResult``
registered by its method name in :mod:`risk_core.margin.registry`."""
