"""Time and memory against rows: ``python benchmarks/scale_curve.py [--rows 10000 50000 200000]``.

Simulates ``y ~ x + (1 + x | g) + (1 | h)`` with one group ``g`` per 20 rows (10,000 groups
at 200,000 rows; a correlated 2 x 2 block: SDs 0.5 and 0.3, correlation 0.4) and 500 crossed
levels ``h`` (SD 0.7), residual SD 1, and fits it with the blocked Gibbs sampler (4 chains
x 1000 draws after 1000 burn-in sweeps), each size in a fresh process. Prints wall time,
peak RSS, min bulk ESS, max R-hat and the recovered parameters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

TRUE = {
    "Intercept": 1.0,
    "x": 0.5,
    "sd(Intercept|g)": 0.5,
    "sd(x|g)": 0.3,
    "cor(Intercept,x|g)": 0.4,
    "sd(Intercept|h)": 0.7,
    "sigma": 1.0,
}


def simulate(n: int, groups: int | None = None, crossed: int = 500, seed: int = 1):
    """The simulated data set (pandas DataFrame) with ``n`` rows (``n // 20`` groups)."""
    import numpy as np
    import pandas as pd

    groups = groups or n // 20
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    h = rng.integers(0, crossed, n)
    x = rng.normal(size=n)
    sd = np.array([TRUE["sd(Intercept|g)"], TRUE["sd(x|g)"]])
    cor = TRUE["cor(Intercept,x|g)"]
    cov = np.outer(sd, sd) * np.array([[1, cor], [cor, 1]])
    b = rng.multivariate_normal([0, 0], cov, size=groups)
    c = rng.normal(scale=TRUE["sd(Intercept|h)"], size=crossed)
    y = (TRUE["Intercept"] + b[g, 0] + (TRUE["x"] + b[g, 1]) * x + c[h]
         + rng.normal(scale=TRUE["sigma"], size=n))
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h})


def one(n: int) -> dict:
    """Fit one size in this process; return the figures."""
    import resource
    import time

    start = time.perf_counter()
    import bayesmixed as bm

    data = simulate(n)
    fit = bm.Model("y ~ x + (1 + x | g) + (1 | h)", data).fit(sampler="gibbs", random_seed=1)
    table = fit.summary()
    return {
        "rows": n,
        "wall_s": time.perf_counter() - start,
        "sampling_s": fit.sampling_time,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "max_r_hat": float(table["r_hat"].max()),
        "means": {k: float(table.loc[k, "mean"]) for k in TRUE},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    print(f"{'rows':>8} {'wall s':>8} {'sampling s':>10} {'RSS GB':>7} {'min ESS':>8} "
          f"{'max R-hat':>9}  recovered (truth: {TRUE})")
    for n in args.rows:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                             text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        means = ", ".join(f"{k}={v:.3f}" for k, v in res["means"].items())
        print(f"{n:>8} {res['wall_s']:>8.1f} {res['sampling_s']:>10.1f} "
              f"{res['peak_rss_gb']:>7.2f} {res['min_ess_bulk']:>8.0f} "
              f"{res['max_r_hat']:>9.4f}  {means}")


if __name__ == "__main__":
    main()
