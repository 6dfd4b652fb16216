"""Units, signs and calendar conventions, stated once for the whole project.

Pricing
    European options on a forward are priced with Black-76 on ``underlying_price``
    (the forward ``F``) with r = 0. Time to expiry ``T`` is in years of
    :data:`DAYS_PER_YEAR` calendar days, from the valuation time to the expiry
    timestamp. Volatilities are decimals (0.65 = 65 %).

Unit-level Greeks (per one unit of underlying, in USD)
    ``delta``  d(value in USD) / d(F), dimensionless (0.5 for an ATM-ish call)
    ``gamma``  d(delta) / d(F), per USD
    ``vega``   value change for +1 volatility point (+0.01), USD
    ``theta``  value change for one calendar day less to expiry, USD (negative for
               a long option)

Position-level amounts
    Unit Greeks times ``quantity`` times the position's size in underlying units;
    suffixed with the currency (``delta_usd``, ``vega_usd``, ``theta_usd``).
    ``delta`` of a position is in underlying units (coins).

Inverse (coin-settled) contracts
    An inverse option's USD value equals the linear Black-76 value; its coin value is
    the USD value divided by the forward. An inverse future or perpetual of USD
    notional ``N`` has a base size ``q = N / F0`` coins: its USD P&L for a relative
    move ``m`` is ``q * F0 * m`` and its coin P&L is ``q * m / (1 + m)``.

Risk measures
    Losses, VaR, ES and margins are positive numbers. Confidence levels are named
    ``confidence`` (0.99), never ``alpha``.
"""

from __future__ import annotations

from typing import Final

DAYS_PER_YEAR: Final = 365.0
SECONDS_PER_YEAR: Final = DAYS_PER_YEAR * 86_400.0
VOL_POINT: Final = 0.01
ONE_DAY_YEARS: Final = 1.0 / DAYS_PER_YEAR

KINDS: Final = ("option", "future", "perpetual", "spot")
SETTLEMENTS: Final = ("inverse", "linear")
CONTRACT_UNITS: Final = ("base", "usd")
OPTION_TYPES: Final = ("C", "P")

#: Assets that are treated as USD for pooling (their index price is still applied).
USD_LIKE: Final = frozenset({"USD", "USDC", "USDT", "DAI", "FDUSD", "USDE"})
