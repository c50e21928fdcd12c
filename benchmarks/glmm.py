"""VerbAgg (bernoulli, crossed random intercepts): bayesmixed's routes against Bambi and PyMC.

``python benchmarks/glmm.py [--repeats N] [--routes a,b,...]`` runs every route in a fresh
process, interleaved (route 1, route 2, ..., then again), and prints a Markdown table of
medians: whole-process wall time (from outside), CPU time, smallest bulk ESS over the
common effects and group SDs, ESS per second of whole process, largest R-hat, and the load
average of the machine while each route ran. ``python benchmarks/glmm.py --route NAME``
runs one route in this process and prints a ``BENCH_JSON`` line.

Model: ``r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)``, bernoulli (logit),
7,584 rows, 316 subjects x 24 items; 4 chains x (1000 tuning + 1000 kept draws), seed 1.

Routes:

* ``ours``: bayesmixed's default (the JAX engine of :mod:`bayesmixed.engines.glmm`), with its
  persistent caches as a user has them after a first fit (the runner warms them once);
* ``ours-cold``: the same with empty caches (every program compiled);
* ``ours-laplace``: ``fit(marginalize="laplace")``: NUTS on the hyper-parameters, group
  effects integrated out by a Laplace approximation (:mod:`bayesmixed.engines.laplace`);
* ``ours-gibbs``: ``fit(sampler="gibbs")``: blocked Gibbs with Polya-Gamma augmentation
  (:mod:`bayesmixed.engines.gibbs`);
* ``ours-pymc``: bayesmixed's previous full path: the PyMC model's log density translated
  to JAX by PyTensor (:func:`bayesmixed.engines.nuts.run_sampler`), non-centred;
* ``bambi``: Bambi 0.21, ``fit(inference_method="numpyro")``;
* ``article``: a hand-written PyMC model (non-centred intercepts) with
  ``pm.sample(nuts_sampler="numpyro")``.

brms's figures (GLMM_REFERENCE.md, same machine kind, idle): 152 s, min bulk ESS 717.
Data: ``benchmarks/data/verbagg.csv.gz`` (lme4's VerbAgg, ``r2`` coded 1 = Y).
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "verbagg.csv.gz"
FORMULA = "r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)"
DRAWS, TUNE, CHAINS, SEED = 1000, 1000, 4, 1
BRMS = {"wall_s": 152.0, "min_ess": 717.0}
ROUTES = ("ours", "ours-cold", "ours-laplace", "ours-gibbs", "ours-pymc", "bambi", "article")


def _data():
    import pandas as pd

    df = pd.read_csv(DATA)
    df["id"] = df["id"].astype(str)
    df["item"] = df["item"].astype(str)
    return df


def _ess_rhat(idata, names: list[str]) -> tuple[float, str, float]:
    import arviz as az
    import numpy as np

    post = idata["posterior"].to_dataset()[names]
    ess, rhat = az.ess(post, method="bulk"), az.rhat(post)
    best, label = np.inf, ""
    for name in names:
        value = float(np.nanmin(np.asarray(ess[name].values)))
        if value < best:
            best, label = value, name
    worst = max(float(np.nanmax(np.asarray(rhat[n].values))) for n in names)
    return best, label, worst


def ours(engine: str) -> dict:
    import bayesmixed as bm

    model = bm.Model(FORMULA, _data(), family="bernoulli")
    kwargs = {"draws": DRAWS, "tune": TUNE, "chains": CHAINS, "random_seed": SEED,
              "progressbar": False}
    if engine == "pymc":
        from bayesmixed.build import hyper_var_names
        from bayesmixed.engines.common import SamplerSettings
        from bayesmixed.engines.nuts import run_sampler

        settings = SamplerSettings(sampler="numpyro", **kwargs)
        idata, _ = run_sampler(model.build(), settings, hyper_var_names(model.design))
    elif engine == "laplace":
        idata = model.fit(marginalize="laplace", **kwargs).idata
    elif engine == "gibbs":
        idata = model.fit(sampler="gibbs", **kwargs).idata
    else:
        idata = model.fit(**kwargs).idata
    names = [v for v in idata["posterior"].data_vars if not v.startswith("r_")]
    attrs = idata["posterior"].attrs
    out = {"compile_s": float(attrs.get("compile_time", float("nan"))),
           "sampling_s": float(attrs.get("sampling_time", float("nan"))),
           "centred": attrs.get("centred", "none")}
    out.update(zip(("min_ess", "min_ess_param", "max_rhat"), _ess_rhat(idata, names),
                   strict=True))
    return out


def bambi() -> dict:
    import bambi as bmb

    model = bmb.Model(FORMULA, _data(), family="bernoulli")
    idata = model.fit(inference_method="numpyro", draws=DRAWS, tune=TUNE, chains=CHAINS,
                      random_seed=SEED, progressbar=False)
    names = ["Intercept", "Anger", "Gender", "btype", "situ", "1|id_sigma", "1|item_sigma"]
    return dict(zip(("min_ess", "min_ess_param", "max_rhat"), _ess_rhat(idata, names),
                    strict=True))


def article() -> dict:
    import numpy as np
    import pandas as pd
    import pymc as pm

    df = _data()
    X = pd.get_dummies(df[["Anger", "Gender", "btype", "situ"]], drop_first=True,
                       dtype=float)
    ids, id_idx = np.unique(df["id"], return_inverse=True)
    items, item_idx = np.unique(df["item"], return_inverse=True)
    coords = {"cols": list(X.columns), "id": ids, "item": items}
    with pm.Model(coords=coords):
        a = pm.Normal("Intercept", 0, 2.5)
        b = pm.Normal("b", 0, 2.5, dims="cols")
        s_id = pm.HalfNormal("sd_id", 2.5)
        s_item = pm.HalfNormal("sd_item", 2.5)
        z_id = pm.Normal("z_id", 0, 1, dims="id")
        z_item = pm.Normal("z_item", 0, 1, dims="item")
        eta = a + pm.math.dot(X.to_numpy(), b) + s_id * z_id[id_idx] + s_item * z_item[item_idx]
        pm.Bernoulli("r2", logit_p=eta, observed=df["r2"].to_numpy())
        idata = pm.sample(nuts_sampler="numpyro", draws=DRAWS, tune=TUNE, chains=CHAINS,
                          random_seed=SEED, progressbar=False)
    return dict(zip(("min_ess", "min_ess_param", "max_rhat"),
                    _ess_rhat(idata, ["Intercept", "b", "sd_id", "sd_item"]), strict=True))


def run_here(route: str) -> None:
    """Run ``route`` in this process and print its ``BENCH_JSON`` line."""
    if route in ("ours", "ours-cold"):
        out = ours("jax")
    elif route == "ours-laplace":
        out = ours("laplace")
    elif route == "ours-gibbs":
        out = ours("gibbs")
    elif route == "ours-pymc":
        out = ours("pymc")
    elif route == "bambi":
        out = bambi()
    else:
        out = article()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.update(route=route, inside_s=time.perf_counter() - START,
               cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024)
    print("BENCH_JSON " + json.dumps(out))


def run_fresh(route: str, cache: Path | None) -> dict:
    """One route in a fresh process, timed from outside."""
    env = dict(os.environ, CI="1")
    env.pop("XLA_FLAGS", None)
    if cache is not None:
        env["BAYESMIXED_CACHE_DIR"] = str(cache)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--route", route], capture_output=True,
                          text=True, env=env, check=False)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-3000:])
        raise SystemExit(f"route {route} failed (exit {proc.returncode})")
    out = json.loads(lines[-1][len("BENCH_JSON "):])
    out.update(wall_s=wall, load=round((load + os.getloadavg()[0]) / 2, 1))
    out["ess_per_s"] = out["min_ess"] / wall
    return out


def table(results: dict[str, list[dict]]) -> str:
    rows = ["| route | runs | wall s | CPU s | min bulk ESS | ESS/s | vs Bambi | max R-hat "
            "| load |", "|---|---|---|---|---|---|---|---|---|"]

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    bambi_rate = med(results["bambi"], "ess_per_s") if results.get("bambi") else float("nan")
    for route, runs in results.items():
        rate = med(runs, "ess_per_s")
        rows.append(
            f"| {route} | {len(runs)} | {med(runs, 'wall_s'):.0f} | {med(runs, 'cpu_s'):.0f} "
            f"| {med(runs, 'min_ess'):.0f} ({runs[0]['min_ess_param']}) | {rate:.1f} "
            f"| {rate / bambi_rate:.1f}x | {max(r['max_rhat'] for r in runs):.3f} "
            f"| {med(runs, 'load'):.1f} |"
        )
    brms_rate = BRMS["min_ess"] / BRMS["wall_s"]
    rows.append(f"| brms 2.18 (recorded, idle) | 1 | {BRMS['wall_s']:.0f} | | "
                f"{BRMS['min_ess']:.0f} | {brms_rate:.1f} | {brms_rate / bambi_rate:.1f}x | | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=ROUTES)
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.route:
        run_here(args.route)
        return
    routes = args.routes.split(",")
    results: dict[str, list[dict]] = {r: [] for r in routes}
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        for route in ("ours", "ours-laplace", "ours-gibbs"):
            if route in routes:
                run_fresh(route, warm)  # a user's caches after a first fit
        for i in range(args.repeats):
            for route in routes:
                cache = Path(tmp) / f"cold{i}" if route == "ours-cold" else warm
                out = run_fresh(route, cache)
                results[route].append(out)
                print(json.dumps(out), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
