"""One sleepstudy fit, from import to printed summary, in this (fresh) process.

``python benchmarks/routes.py ROUTE`` with ROUTE one of

* ``marginal``: bayesmixed, group effects integrated out (``marginalize=True``);
* ``full``: bayesmixed, full non-centred model (``marginalize=False``);
* ``article``: the article's hand-written PyMC model (``random-models-article.md``) with
  ``pm.sample(nuts_sampler="numpyro")``, standardised response as in the article;
* ``article-warm``: the same model sampled twice in one process with JAX's persistent
  compilation cache on; the second ``pm.sample`` approximates its sampling time without
  compilation;
* ``bambi``: Bambi 0.21, ``bmb.Model("Reaction ~ Days + (Days|Subject)", df)
  .fit(inference_method="numpyro")`` (independent group effects: no LKJ block).

Every route runs 4 chains x (1000 tuning + 1000 kept draws), prints its summary, then one
line ``BENCH_JSON {...}`` with the timings and the smallest bulk ESS over the fixed
effects, group SDs, correlations and sigma. :mod:`benchmarks.run` starts one process per
route and times it from the outside.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

DRAWS, TUNE, CHAINS, SEED = 1000, 1000, 4, 1
FORMULA = "Reaction ~ Days + (Days | Subject)"
DATA = Path(__file__).resolve().parent.parent / "src" / "bayesmixed" / "datasets" / "sleepstudy.csv"


def _min_ess(idata, names: list[str], coords: dict | None = None) -> tuple[float, str]:
    """Smallest bulk ESS (and its label) over the scalar components of ``names``."""
    import arviz as az
    import numpy as np

    post = idata["posterior"].to_dataset()
    ess = az.ess(post[names], method="bulk")
    best, label = np.inf, ""
    for name in names:
        values = np.asarray(ess[name].values)
        if coords and name in coords:
            values = values[coords[name]]
        flat = np.ravel(values)
        flat = flat[np.isfinite(flat)]
        if flat.size and flat.min() < best:
            best, label = float(flat.min()), name
    return best, label


def bayesmixed_route(marginalize: bool) -> dict:
    """Fit with bayesmixed and print ``fit`` (the brms-style summary)."""
    import bayesmixed as bm

    imported = time.perf_counter()
    data = bm.datasets.sleepstudy()
    fit = bm.Model(FORMULA, data).fit(
        draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED, marginalize=marginalize,
        progressbar=False,
    )
    table = fit.summary()
    print(fit)
    printed = time.perf_counter()
    attrs = fit.idata["posterior"].attrs
    return {
        "import_s": imported - START,
        "ready_s": printed - START,
        "sampler_s": fit.sampling_time,
        "compile_s": float(attrs.get("compile_time", float("nan"))),
        "sampling_s": float(attrs.get("sampling_time", float("nan"))),
        "chain_method": attrs.get("chain_method"),
        "marginalized": bool(attrs.get("marginalized", 0)),
        "min_ess": float(table["ess_bulk"].min()),
        "min_ess_param": str(table["ess_bulk"].idxmin()),
        "max_rhat": float(table["r_hat"].max()),
        "means": {k: float(v) for k, v in table["mean"].items()},
    }


def _article_model():
    """The article's model, as written there (data standardised, subject ids mapped)."""
    import numpy as np
    import pandas as pd
    import pymc as pm

    df = pd.read_csv(DATA)
    df["y"] = (df["Reaction"] - df["Reaction"].mean()) / df["Reaction"].std()
    df["subj_id"] = df["Subject"].map(
        {elem: k for k, elem in enumerate(df["Subject"].drop_duplicates())}
    )
    df["intercept"] = 1
    X_v = df[["intercept", "Days"]]
    X_s = pd.DataFrame({"subj": df["subj_id"].drop_duplicates()})
    coords = {"cols": X_v.columns, "obs_id": X_v.index, "subj_id": X_s.index,
              "subj_col": X_s.columns}
    with pm.Model(coords=coords) as model:
        mu = pm.Normal("mu", sigma=10, dims=["cols"])
        X = pm.Data("X", X_v, dims=["obs_id", "cols"])
        sd_dist = pm.HalfNormal.dist(sigma=5, size=X_v.shape[1])
        chol, _corr, _sig = pm.LKJCholeskyCov("sig", n=X_v.shape[1], eta=1.0, sd_dist=sd_dist)
        sigma = pm.HalfNormal("sigma", sigma=5)
        alpha = pm.MvNormal(
            "alpha", mu=mu, chol=chol, dims=["subj_id", "cols"],
            shape=(len(df["Subject"].drop_duplicates()), X_v.shape[1]),
        )
        tau = pm.Deterministic(
            "tau",
            pm.math.sum([alpha[df["subj_id"], k] * X.T[k, :] for k in range(X_v.shape[1])],
                        axis=0),
            dims=["obs_id"],
        )
        pm.Normal("yhat", mu=tau, sigma=sigma, observed=df["y"], dims=["obs_id"])
    return model, np.random.default_rng(42)


ARTICLE_NAMES = ["mu", "sig_stds", "sig_corr", "sigma"]


def article_route(times: int = 1) -> dict:
    """The article's route; ``times=2`` samples twice (second run: compile cached)."""
    import arviz as az
    import pymc as pm

    imported = time.perf_counter()
    model, rng = _article_model()
    runs = []
    for _ in range(times):
        start = time.perf_counter()
        with model:
            idata = pm.sample(nuts_sampler="numpyro", random_seed=rng, draws=DRAWS, tune=TUNE,
                              chains=CHAINS, progressbar=False)
        runs.append((time.perf_counter() - start, float(idata["posterior"].attrs.get(
            "sampling_time", float("nan"))), idata))
        if times == 1:
            print(az.summary(idata, var_names=ARTICLE_NAMES))
    printed = time.perf_counter()
    wall, inner, idata = runs[-1]
    # the correlation's diagonal is constant 1: only the off-diagonal entry counts
    ess, label = _min_ess(idata, ARTICLE_NAMES, {"sig_corr": (0, 1)})
    return {
        "import_s": imported - START,
        "ready_s": printed - START,
        "sampler_s": wall,
        "compile_s": float("nan"),
        "sampling_s": inner if times > 1 else float("nan"),
        "pm_sample_s": [r[0] for r in runs],
        "min_ess": ess,
        "min_ess_param": label,
    }


def bambi_route() -> dict:
    """Bambi 0.21 on the same formula (its group effects are independent)."""
    import arviz as az
    import bambi as bmb
    import pandas as pd

    imported = time.perf_counter()
    df = pd.read_csv(DATA)
    df["Subject"] = df["Subject"].astype(str)
    model = bmb.Model(FORMULA, df)
    start = time.perf_counter()
    idata = model.fit(inference_method="numpyro", draws=DRAWS, tune=TUNE, chains=CHAINS,
                      random_seed=SEED, progressbar=False)
    wall = time.perf_counter() - start
    names = ["Intercept", "Days", "1|Subject_sigma", "Days|Subject_sigma", "sigma"]
    print(az.summary(idata, var_names=names))
    printed = time.perf_counter()
    ess, label = _min_ess(idata, names)
    return {
        "import_s": imported - START,
        "ready_s": printed - START,
        "sampler_s": wall,
        "compile_s": float("nan"),
        "sampling_s": float("nan"),
        "min_ess": ess,
        "min_ess_param": label,
    }


def main(route: str) -> None:
    """Run ``route`` and print its ``BENCH_JSON`` line."""
    if route == "marginal":
        out = bayesmixed_route(True)
    elif route == "full":
        out = bayesmixed_route(False)
    elif route == "article":
        out = article_route()
    elif route == "article-warm":
        import jax

        from bayesmixed.engines.common import cache_dir

        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax-article"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        out = article_route(times=2)
    elif route == "bambi":
        out = bambi_route()
    else:
        raise SystemExit(f"unknown route {route!r}")
    out["route"] = route
    print("BENCH_JSON " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
