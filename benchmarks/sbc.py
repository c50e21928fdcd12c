"""Simulation-based calibration (SBC) of the correlated model ``y ~ x + (x | g)``, per engine.

Talts, Betancourt, Simpson, Vehtari and Gelman (2018), "Validating Bayesian inference
algorithms with simulation-based calibration": draw parameters from the prior, simulate a
data set from them, fit it, and record the rank of each true value among (thinned)
posterior draws. If the model code and the sampler are right, each rank is uniform on
``0 .. L``; a chi-square test over ``B`` bins checks it, and the rank histograms show how
it fails (a U shape: too narrow posteriors; a hump: too wide; a slope: bias).

The model fitted is exactly what users get from ``bm.Model("y ~ x + (x | g)", data,
priors=PRIORS).fit()`` (Bambi design, LKJ block, non-centred effects, numpyro NUTS), with
explicit, proper priors so that data sets can be drawn from them:

* ``Intercept``, ``x`` ~ Normal(0, 1);
* ``sd(Intercept|g)``, ``sd(x|g)`` ~ HalfNormal(1);
* ``cor(g)`` ~ LKJ(eta=2) (for a 2 x 2 block, ``(rho + 1) / 2 ~ Beta(2, 2)``);
* ``sigma`` ~ HalfNormal(1);

8 groups of 5 observations, ``x ~ Normal(0, 1)`` drawn anew for each data set.
``--family poisson`` and ``--family bernoulli`` simulate and fit the same block with a log or
logit link (no ``sigma``).

Run::

    python benchmarks/sbc.py --n 100                       # the default fit (marginal engine)
    python benchmarks/sbc.py --n 500 --sampler nuts        # NUTS on the full model
    python benchmarks/sbc.py --n 500 --sampler gibbs       # the blocked Gibbs sampler
    python benchmarks/sbc.py --n 500 --family poisson      # a GLMM (the engine auto picks)
    python benchmarks/sbc.py --n 100 --control             # negative control: must fail
    python benchmarks/sbc.py --n 20 --jobs 2               # a quick look

(results in ``docs/calibration.md``). The exit status is 0 when every p-value is above 0.01.

It prints one row per parameter (chi-square statistic and p-value, mean and SD of the
normalised ranks; uniform ranks have mean 0.5 and SD 0.289), the sampler's diagnostics over
all fits, and saves the rank histograms to ``docs/images/sbc_ranks.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PARAMETERS = ("Intercept", "x", "sd(Intercept|g)", "sd(x|g)", "cor(Intercept,x|g)", "sigma")
FAMILIES = ("gaussian", "poisson", "bernoulli")
#: fit options that select each engine (``"auto"``: the chooser's pick)
SAMPLERS = {
    "auto": {},
    "marginal": {"marginalize": True},
    "nuts": {"sampler": "numpyro", "marginalize": False},
    "gibbs": {"sampler": "gibbs"},
}


def parameters(family: str) -> tuple[str, ...]:
    """The calibrated parameters of a family's model (``sigma`` only for the Gaussian)."""
    return PARAMETERS if family == "gaussian" else PARAMETERS[:-1]
N_GROUPS, PER_GROUP = 8, 5
ETA = 2.0


def priors(sd_scale: float = 1.0, family: str = "gaussian") -> dict:
    """The explicit priors of the SBC model (the ones data sets are drawn from).

    ``sd_scale`` other than 1 fits with a wrong prior on the group SDs (a negative control:
    SBC must then flag them).
    """
    import bayesmixed as bm

    out = {
        "Intercept": bm.Prior("Normal", mu=0.0, sigma=1.0),
        "x": bm.Prior("Normal", mu=0.0, sigma=1.0),
        "sd(g)": bm.Prior("HalfNormal", sigma=sd_scale),
        "cor(g)": ETA,
    }
    if family == "gaussian":
        out["sigma"] = bm.Prior("HalfNormal", sigma=1.0)
    return out


def simulate(rng: np.random.Generator,
             family: str = "gaussian") -> tuple[dict[str, float], pd.DataFrame]:
    """Draw the parameters from the prior and a data set from the model."""
    truth = {
        "Intercept": rng.normal(0.0, 1.0),
        "x": rng.normal(0.0, 1.0),
        "sd(Intercept|g)": abs(rng.normal(0.0, 1.0)),
        "sd(x|g)": abs(rng.normal(0.0, 1.0)),
        "cor(Intercept,x|g)": 2.0 * rng.beta(ETA, ETA) - 1.0,
        "sigma": abs(rng.normal(0.0, 1.0)),
    }
    sd = np.array([truth["sd(Intercept|g)"], truth["sd(x|g)"]])
    rho = truth["cor(Intercept,x|g)"]
    cov = np.outer(sd, sd) * np.array([[1.0, rho], [rho, 1.0]])
    effects = rng.multivariate_normal(np.zeros(2), cov, size=N_GROUPS)
    g = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    x = rng.normal(size=g.size)
    mu = truth["Intercept"] + effects[g, 0] + (truth["x"] + effects[g, 1]) * x
    if family == "poisson":
        y = rng.poisson(np.exp(np.minimum(mu, 8.0)))  # exp(8): counts stay finite
    elif family == "bernoulli":
        y = rng.binomial(1, 1.0 / (1.0 + np.exp(-mu)))
    else:
        y = mu + rng.normal(0.0, truth["sigma"], size=g.size)
    return truth, pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def one(args: tuple[int, int, int, int, int, float, float, str, str]) -> dict:
    """Simulate data set ``i``, fit it and return the ranks and the sampler's diagnostics."""
    i, seed, draws, tune, thin, target_accept, sd_scale, sampler, family = args
    import bayesmixed as bm
    from bayesmixed.diagnostics import check_fit
    from bayesmixed.summary import hyper_draws

    truth, data = simulate(np.random.default_rng([seed, i]), family)
    model = bm.Model("y ~ x + (x | g)", data, family=family, priors=priors(sd_scale, family))
    start = time.perf_counter()
    with warnings.catch_warnings():  # one chain never reaches ESS 400: collected below
        warnings.simplefilter("ignore")
        fit = model.fit(
            draws=draws,
            tune=tune,
            chains=1,
            target_accept=target_accept,
            random_seed=seed * 1000 + i,
            progressbar=False,
            **SAMPLERS[sampler],
        )
    seconds = time.perf_counter() - start
    posterior = hyper_draws(fit.posterior, fit.design)
    out: dict = {"dataset": i, "seconds": seconds, "engine": fit.settings.engine}
    for name in parameters(family):
        kept = posterior[name].reshape(-1)[thin - 1 :: thin]
        out[name] = int(np.sum(kept < truth[name]))
    diag = check_fit(fit, warn=False)
    out["divergences"] = diag.divergences
    out["max_r_hat"] = float(diag.table["r_hat"].max())
    out["min_ess_bulk"] = float(diag.table["ess_bulk"].min())
    return out


def uniformity(ranks: pd.DataFrame, n_ranks: int, bins: int) -> pd.DataFrame:
    """Chi-square test of uniform ranks per parameter (``n_ranks`` values, ``bins`` bins)."""
    from scipy import stats

    rows = []
    for name in [p for p in PARAMETERS if p in ranks]:
        r = ranks[name].to_numpy()
        counts = np.bincount(r * bins // n_ranks, minlength=bins)
        expected = len(r) / bins
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        rows.append(
            {
                "parameter": name,
                "chi2": chi2,
                "df": bins - 1,
                "p_value": float(stats.chi2.sf(chi2, bins - 1)),
                "mean_rank": float(np.mean(r / (n_ranks - 1))),
                "sd_rank": float(np.std(r / (n_ranks - 1), ddof=1)),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


def plot(
    ranks: pd.DataFrame, table: pd.DataFrame, n_ranks: int, bins: int, path: Path, note: str = ""
) -> None:
    """Rank histograms with the 99% band of bin counts under uniformity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    n = len(ranks)
    low, high = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharey=True, constrained_layout=True)
    names = [p for p in PARAMETERS if p in ranks]
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        counts = np.bincount(ranks[name].to_numpy() * bins // n_ranks, minlength=bins)
        ax.axhspan(low, high, color="0.85", zorder=0, label="99% band (uniform)")
        ax.axhline(n / bins, color="0.5", lw=1, zorder=1)
        ax.bar(np.arange(bins), counts, width=0.9, color="C0", zorder=2)
        ax.set_title(f"{name}\np = {table.loc[name, 'p_value']:.2f}", fontsize=10)
        ax.set_xticks([0, bins - 1], ["0", f"{n_ranks - 1}"])
        ax.set_xlabel("rank (binned)")
    axes[0, 0].set_ylabel("data sets")
    axes[1, 0].set_ylabel("data sets")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.suptitle(
        f"SBC of y ~ x + (x | g){note}: {n} data sets, {N_GROUPS} groups x {PER_GROUP} obs, "
        f"{n_ranks - 1} thinned draws each"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="data sets (default 100)")
    parser.add_argument("--draws", type=int, default=990, help="draws per fit (one chain)")
    parser.add_argument("--tune", type=int, default=500, help="tuning steps per fit")
    parser.add_argument("--thin", type=int, default=10, help="keep every thin-th draw")
    parser.add_argument("--bins", type=int, default=10, help="bins of the chi-square test")
    parser.add_argument("--target-accept", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=1, help="fits run in parallel processes")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "images" / "sbc_ranks.png")
    parser.add_argument("--csv", type=Path, default=None, help="also write the ranks here")
    parser.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        default="auto",
        help="the engine: 'auto' (the chooser's pick: marginal for the Gaussian model), "
        "'marginal' (group effects integrated out, then drawn exactly), 'nuts' (NUTS on the "
        "full model) or 'gibbs' (blocked Gibbs, Gaussian only)",
    )
    parser.add_argument("--family", choices=FAMILIES, default="gaussian")
    parser.add_argument(
        "--control",
        action="store_true",
        help="negative control: fit with HalfNormal(0.5) SD priors while simulating from "
        "HalfNormal(1); the SD ranks must come out non-uniform",
    )
    args = parser.parse_args(argv)
    n_ranks = args.draws // args.thin + 1  # ranks 0 .. L with L kept draws
    if n_ranks % args.bins:
        parser.error(f"draws/thin + 1 = {n_ranks} must be a multiple of --bins {args.bins}")

    os.environ.setdefault("CI", "1")  # no progress bars
    tasks = [
        (i, args.seed, args.draws, args.tune, args.thin, args.target_accept,
         0.5 if args.control else 1.0, args.sampler, args.family)
        for i in range(args.n)
    ]
    start = time.perf_counter()
    if args.jobs > 1:
        spawn = multiprocessing.get_context("spawn")  # JAX is not fork-safe
        with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
            results = list(pool.map(one, tasks))
    else:
        results = []
        for task in tasks:
            results.append(one(task))
            if (task[0] + 1) % 10 == 0:
                print(f"  {task[0] + 1}/{args.n} fits", file=sys.stderr, flush=True)
    ranks = pd.DataFrame(results).set_index("dataset")
    table = uniformity(ranks, n_ranks, args.bins)
    engines = ", ".join(sorted(set(ranks["engine"])))
    note = f" ({args.family}, engine {engines})"
    plot(ranks, table, n_ranks, args.bins, args.png, note + (" - CONTROL" if args.control else ""))
    if args.csv:
        ranks.to_csv(args.csv)

    wall = time.perf_counter() - start
    if args.control:
        print("NEGATIVE CONTROL: fitted with sd(g) ~ HalfNormal(0.5), simulated with 1")
    print(
        f"SBC of y ~ x + (x | g), {args.family}: {args.n} data sets ({N_GROUPS} groups x "
        f"{PER_GROUP} obs), 1 chain, {args.tune} tuning + {args.draws} draws thinned by "
        f"{args.thin} (L = {n_ranks - 1}), {args.bins} bins, sampler={args.sampler} "
        f"(engine {engines})"
    )
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(table.to_string())
    divergent = int((ranks["divergences"] > 0).sum())
    low_ess = int((ranks["min_ess_bulk"] < 20).sum())
    r_hat = ranks["max_r_hat"].max()  # NaN with one chain: split R-hat is not reported
    r_hat_text = f"max R-hat {r_hat:.3f}" if np.isfinite(r_hat) else "R-hat n/a (one chain)"
    print(
        f"\nsampler: {int(ranks['divergences'].sum())} divergences in {divergent} of "
        f"{args.n} fits; {r_hat_text}; smallest bulk ESS "
        f"{ranks['min_ess_bulk'].min():.0f} (median over fits "
        f"{ranks['min_ess_bulk'].median():.0f}; {low_ess} fits below 20); "
        f"median fit {ranks['seconds'].median():.1f} s; "
        f"total {wall / 60:.1f} min"
    )
    print(f"rank histograms: {args.png}")
    calibrated = bool((table["p_value"] > 0.01).all())
    print("calibrated (every p > 0.01):", "yes" if calibrated else "NO")
    return 0 if calibrated else 1


if __name__ == "__main__":
    sys.exit(main())
