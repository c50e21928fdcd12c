"""A 100,000-row bernoulli model with crossed correlated slopes: time, memory, R-hat, recovery.

``python benchmarks/glmm_scale.py [--draws 1000 --tune N --chains 4 --sampler auto]``
simulates ``y ~ x + (1 + x | subj) + (1 + x | item)`` with 2,000 subjects x 500 items, each
subject seeing 50 items (100,000 rows), fits it with ``sampler=`` (``"auto"``: bayesmixed's
choice; ``"numpyro"``: full-model NUTS on the JAX engine of :mod:`bayesmixed.engines.glmm`;
``"gibbs"``: the Polya-Gamma blocked Gibbs sampler of :mod:`bayesmixed.engines.gibbs`) and
prints one ``BENCH_JSON`` line: the engine, the tuning steps or burn-in sweeps used (without
``--tune``, the package's default for the engine that ran: ``fit(tune=None)``), whole-process
wall time, CPU
time, peak RSS, the largest R-hat and smallest bulk ESS over the common effects, SDs and
correlations, whether the simulated SDs and correlations (as realised in the drawn effects)
lie inside their 95 % intervals, and the load average.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TRUE = {"beta": (-0.5, 0.8), "subj_sd": (1.0, 0.4), "subj_cor": 0.3,
        "item_sd": (0.6, 0.3), "item_cor": -0.2}


def simulate(seed: int = 2026, n_subj: int = 2000, n_item: int = 500,
             per_subj: int = 50) -> tuple[pd.DataFrame, dict]:
    """The data and the realised SDs and correlations of the drawn effects."""
    rng = np.random.default_rng(seed)

    def effects(n, sd, cor):
        cov = np.outer(sd, sd) * np.array([[1.0, cor], [cor, 1.0]])
        return rng.multivariate_normal(np.zeros(2), cov, size=n)

    u = effects(n_subj, TRUE["subj_sd"], TRUE["subj_cor"])
    v = effects(n_item, TRUE["item_sd"], TRUE["item_cor"])
    subj = np.repeat(np.arange(n_subj), per_subj)
    item = np.concatenate([rng.choice(n_item, per_subj, replace=False) for _ in range(n_subj)])
    x = rng.normal(size=subj.size)
    b0, b1 = TRUE["beta"]
    eta = b0 + u[subj, 0] + v[item, 0] + (b1 + u[subj, 1] + v[item, 1]) * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    data = pd.DataFrame({"y": y, "x": x, "subj": [f"s{i}" for i in subj],
                         "item": [f"i{i}" for i in item]})
    realised = {
        "sd(Intercept|subj)": u[:, 0].std(ddof=1), "sd(x|subj)": u[:, 1].std(ddof=1),
        "cor(Intercept,x|subj)": np.corrcoef(u.T)[0, 1],
        "sd(Intercept|item)": v[:, 0].std(ddof=1), "sd(x|item)": v[:, 1].std(ddof=1),
        "cor(Intercept,x|item)": np.corrcoef(v.T)[0, 1],
    }
    return data, realised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=None,
                        help="tuning steps / burn-in sweeps (default: the package's default)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--sampler", default="auto", choices=["auto", "numpyro", "gibbs"])
    parser.add_argument("--subjects", type=int, default=2000,
                        help="subjects (rows = 50 x subjects; 2000 for the 100k goal)")
    args = parser.parse_args()
    import bayesmixed as bm

    data, realised = simulate(n_subj=args.subjects)
    model = bm.Model("y ~ x + (1 + x | subj) + (1 + x | item)", data, family="bernoulli")
    fit = model.fit(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=1,
                    progressbar=False, sampler=args.sampler)
    table = fit.summary()
    hyper = table.loc[[i for i in table.index if not i.startswith("r_")]]
    inside = {k: bool(hyper.loc[k, "q2.5"] <= v <= hyper.loc[k, "q97.5"])
              for k, v in realised.items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    attrs = fit.idata["posterior"].attrs
    print(hyper.round(3).to_string())
    print("BENCH_JSON " + json.dumps({
        "engine": fit.settings.engine, "rows": len(data), "draws": args.draws,
        "tune": fit.settings.tune, "chains": args.chains,
        "wall_s": time.perf_counter() - START, "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "compile_s": float(attrs.get("compile_time", float("nan"))),
        "sampling_s": float(attrs["sampling_time"]),
        "centred": attrs.get("centred"), "max_rhat": float(hyper["r_hat"].max()),
        "min_ess": float(hyper["ess_bulk"].min()), "inside_95": inside,
        "load": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
