"""Throughput of Black-76 price + Greeks and of implied volatility, with peak memory.

    .venv/bin/python benchmarks/pricing.py [--n 1000000] [--repeat 3]

Prints options per second (best of ``repeat``) and the peak resident memory of the
process. Single-threaded NumPy: the figure is per core.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from risk_core.pricing import black76
from risk_core.pricing.implied_vol import implied_vol


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.n
    f = rng.uniform(1_000.0, 100_000.0, n)
    k = f * np.exp(rng.uniform(-0.8, 0.8, n))
    t = rng.uniform(1.0 / 365.0, 2.0, n)
    s = rng.uniform(0.2, 1.5, n)
    c = rng.random(n) < 0.5
    price = black76.price(f, k, t, s, c)
    greeks = _best(lambda: black76.greeks(f, k, t, s, c), args.repeat)
    iv = _best(lambda: implied_vol(price, f, k, t, c), args.repeat)
    result = implied_vol(price, f, k, t, c)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"options: {n:,}")
    print(f"price + delta, gamma, vega, theta: {greeks:.3f} s  {n / greeks:,.0f} options/s")
    print(
        f"implied volatility:                {iv:.3f} s  {n / iv:,.0f} options/s "
        f"({result.ok.mean():.2%} solvable)"
    )
    print(f"peak memory: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
