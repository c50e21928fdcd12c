"""Refits without recompiling: 20 refits of sleepstudy-sized models in one process.

``python benchmarks/refit.py [--refits 20] [--scenario rows|subjects|both]``

One fit of ``Reaction ~ Days + (Days | Subject)`` on sleepstudy (4 chains x (1000 tuning +
1000 kept draws), brms's defaults), then ``--refits`` calls of ``fit.update(data=...,
random_seed=i)`` on resampled data, all in this process:

* ``rows``: the 180 rows resampled with replacement (same subjects, so the same number of
  group levels);
* ``subjects``: a cluster bootstrap of between 12 and 24 subjects drawn with replacement
  (each draw a new level), so rows (120-240) and levels change from refit to refit.

The exact marginal sampler passes the data to the compiled program as arguments, and its
data are per-level sufficient statistics (the number of rows does not enter the program);
the number of levels is padded up to a size bucket (8, 16, 32, ..., 256, then steps of
1/8 of a power of two; empty levels add exactly zero to the log density), so a refit
reuses the compiled sampler unless its bucket is new. Compilations are counted with
``jax.monitoring`` (XLA backend compilations and persistent-cache hits), and each fit's own
``compile_time`` is reported.

Reference: brms's ``update(fit, newdata = ..., recompile = FALSE)`` takes 10.1 s per refit
on this machine kind, its first fit (with Stan compilation) 59.7 s
(``../shared/reference/WORKFLOW_REFERENCE.md``).
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402

BRMS_REFIT, BRMS_FIRST = 10.1, 59.7


class CompileCounter:
    """Counts XLA backend compilations (and persistent-cache hits) via ``jax.monitoring``."""

    def __init__(self) -> None:
        import jax.monitoring as monitoring

        self.events: collections.Counter = collections.Counter()
        self.seconds: collections.Counter = collections.Counter()
        monitoring.register_event_listener(self._event)
        monitoring.register_event_duration_secs_listener(self._duration)

    def _event(self, name: str, **_: object) -> None:
        self.events[name] += 1

    def _duration(self, name: str, secs: float, **_: object) -> None:
        self.events[name] += 1
        self.seconds[name] += secs

    def snapshot(self) -> tuple[int, int, float]:
        """(backend compilations, persistent-cache hits, seconds compiling) so far."""
        return (
            self.events["/jax/core/compile/backend_compile_duration"],
            self.events["/jax/compilation_cache/cache_hits"],
            self.seconds["/jax/core/compile/backend_compile_duration"],
        )


def resample(df, scenario: str, rng):
    """A resampled data set: rows, or whole subjects (each draw a new level)."""
    import numpy as np
    import pandas as pd

    if scenario == "rows":
        return df.iloc[rng.integers(len(df), size=len(df))].reset_index(drop=True)
    subjects = df["Subject"].unique()
    m = int(rng.integers(12, 25))
    parts = []
    for i, s in enumerate(rng.choice(subjects, size=m, replace=True)):
        part = df[df["Subject"] == s].copy()
        part["Subject"] = f"s{i}"
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    assert out["Subject"].nunique() == m and np.isfinite(out["Reaction"]).all()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refits", type=int, default=20)
    parser.add_argument("--scenario", choices=("rows", "subjects", "both"), default="both")
    args = parser.parse_args()

    counter = CompileCounter()  # before JAX compiles anything
    import numpy as np

    import bayesmixed as bm

    df = bm.datasets.sleepstudy()
    t0 = time.perf_counter()
    before = counter.snapshot()
    fit = bm.Model("Reaction ~ Days + (Days | Subject)", df).fit(
        draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False
    )
    first = time.perf_counter() - t0
    after = counter.snapshot()
    print(
        f"first fit: {first:.2f} s (engine {fit.settings.engine}: "
        f"{fit.settings.engine_reason}), XLA compilations "
        f"{after[0] - before[0]}, persistent-cache hits {after[1] - before[1]}"
    )
    scenarios = ("rows", "subjects") if args.scenario == "both" else (args.scenario,)
    result = {"first_fit_s": round(first, 2), "brms_refit_s": BRMS_REFIT,
              "brms_first_fit_s": BRMS_FIRST, "scenarios": {}}
    for scenario in scenarios:
        rng = np.random.default_rng(2026)
        times, compiles, hits, sizes = [], [], [], []
        print(f"\nscenario {scenario!r}: {args.refits} refits")
        print(f"{'refit':>5} {'rows':>5} {'levels':>6} {'seconds':>8} {'compile_s':>9} "
              f"{'XLA compiles':>12} {'cache hits':>10}")
        t_total = time.perf_counter()
        for i in range(args.refits):
            data = resample(df, scenario, rng)
            before = counter.snapshot()
            t = time.perf_counter()
            refit = fit.update(data=data, random_seed=100 + i)
            times.append(time.perf_counter() - t)
            after = counter.snapshot()
            compiles.append(after[0] - before[0])
            hits.append(after[1] - before[1])
            levels = data["Subject"].nunique()
            sizes.append((len(data), levels))
            print(f"{i + 1:>5} {len(data):>5} {levels:>6} {times[-1]:>8.2f} "
                  f"{refit.idata['posterior'].attrs.get('compile_time', float('nan')):>9.2f} "
                  f"{compiles[-1]:>12} {hits[-1]:>10}")
        total = time.perf_counter() - t_total
        later = times[1:] if len(times) > 1 else times
        recompiled = [i + 1 for i, c in enumerate(compiles) if c > 0]
        print(
            f"total {total:.1f} s; per refit after the first {np.mean(later):.2f} s "
            f"(median {np.median(later):.2f}); brms update(recompile = FALSE) "
            f"{BRMS_REFIT} s per refit"
        )
        print(
            "recompiled: "
            + (f"yes, at refit(s) {recompiled} (a new level bucket or first use)"
               if recompiled else "no: every refit reused the sampler compiled by the first fit")
        )
        result["scenarios"][scenario] = {
            "refits": args.refits,
            "total_s": round(total, 2),
            "per_refit_after_first_s": round(float(np.mean(later)), 3),
            "median_after_first_s": round(float(np.median(later)), 3),
            "xla_compilations": int(sum(compiles)),
            "recompiled_at": recompiled,
            "rows_levels": sizes,
        }
    result["process_s"] = round(time.perf_counter() - START, 2)
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
