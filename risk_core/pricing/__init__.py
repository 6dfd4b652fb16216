"""Option pricing, implied volatility and volatility surfaces (Black-76, r = 0)."""
