"""Many fits in one process: per-fit time after the first, memory growth, memory maps.

A loop of fits of ``y ~ x + (x | g)`` on fresh simulated 40-row data sets (8 groups of 5
rows), one chain of ``--tune`` tuning steps and ``--draws`` draws, as a simulation study
or a cross-validation runs them (issue 14). For each engine it prints the first fit's
time (compilation included, unless JAX's persistent cache already holds the programs),
the median and 90th percentile of the later fits, and the growth of the resident memory
(RSS) and of the number of memory mappings (``/proc/self/maps``) per fit after a warm-up.

Usage::

    python benchmarks/many_fits.py --engines marginal gibbs glmm --fits 30

Results are recorded in ``docs/benchmarks.md`` ("Many fits in one process").
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
import warnings

import numpy as np
import pandas as pd


def simulate(seed: int, groups: int = 8, per_group: int = 5) -> pd.DataFrame:
    """40 rows of ``y = 1 + 0.5 x + b0_g + b1_g x + e`` with correlated group effects."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0], [[0.5, 0.1], [0.1, 0.2]], size=groups)
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(scale=0.7, size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


#: fit options that select each engine (``glmm``: the full model, where
#: ``marginalize=False`` sends Gaussian models with numpyro since issue 14)
OPTIONS = {
    "marginal": {},
    "gibbs": {"sampler": "gibbs"},
    "glmm": {"marginalize": False},
}


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def n_maps() -> int:
    """Number of memory mappings of this process (Linux)."""
    with open("/proc/self/maps") as fh:
        return sum(1 for _ in fh)


def run(engine: str, fits: int, draws: int, tune: int, warmup: int = 3) -> dict:
    import bayesmixed as bm

    times, cpu, rss, maps = [], [], [], []
    for i in range(fits):
        data = simulate(1000 + i)
        start, start_cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bm.Model("y ~ x + (x | g)", data).fit(
                draws=draws, tune=tune, chains=1, random_seed=i, progressbar=False,
                **OPTIONS[engine])
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert fit.settings.engine == engine, fit.settings.engine
        del fit
        gc.collect()
        rss.append(rss_mb())
        maps.append(n_maps())
    later = times[1:]
    span = max(1, fits - 1 - warmup)
    return {
        "engine": engine,
        "first_s": times[0],
        "median_s": statistics.median(later),
        "p90_s": float(np.quantile(later, 0.9)),
        "cpu_s": statistics.median(cpu[1:]),
        "rss_mb_per_fit": (rss[-1] - rss[warmup]) / span,
        "maps_per_fit": (maps[-1] - maps[warmup]) / span,
        "rss_mb": rss[-1],
        "maps": maps[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["marginal", "gibbs", "glmm"],
                        choices=list(OPTIONS))
    parser.add_argument("--fits", type=int, default=30)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
          f"(load average {load:.1f} at start), Python {platform.python_version()}")
    print(f"({args.fits} fits of y ~ x + (x | g), 40 rows, 1 chain x {args.draws} draws "
          f"+ {args.tune} tuning.)\n")
    print("| engine | first fit (s) | later fits, median (s) | 90th pct (s) | CPU per fit, "
          "median (s) | RSS growth per fit (MB) | maps growth per fit | RSS at end (MB) | "
          "maps at end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for engine in args.engines:
        r = run(engine, args.fits, args.draws, args.tune)
        print(f"| {r['engine']} | {r['first_s']:.2f} | {r['median_s']:.3f} | {r['p90_s']:.3f} | "
              f"{r['cpu_s']:.3f} | {r['rss_mb_per_fit']:.2f} | {r['maps_per_fit']:.1f} | "
              f"{r['rss_mb']:.0f} | {r['maps']} |", flush=True)


if __name__ == "__main__":
    main()
