"""What each speed technique buys on sleepstudy: ``.venv/bin/python benchmarks/ablations.py``.

Within one process, each configuration samples ``Reaction ~ Days + (Days | Subject)``
(4 chains x (1000 + 1000)) four times: the first run pays tracing and compilation (the
caches start empty; configurations that share an XLA program share its compilation), the
next three (seeds 1 to 3) reuse the compiled sampler, so their wall time is sampling alone.
Printed per configuration: first-run compile time, median sampling time of the warm runs,
mean leapfrog steps per draw, median of their smallest bulk ESS over the hyper-parameters,
and ESS per second. Then the import cost of each heavy dependency, each in a fresh process (median
of three).

Configurations: the marginal model with parallel / vectorised / sequential chains, a
dense mass matrix, float32, and without the Laplace preconditioner; the full model
through :func:`bayesmixed.engines.nuts.sample_pymc_jax` with parallel, sequential and
vectorised chains.
"""

from __future__ import annotations

import argparse
import ast
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CI", "1")
# an empty cache: every configuration's first run traces and compiles from scratch
if "BAYESMIXED_CACHE_DIR" not in os.environ:
    os.environ["BAYESMIXED_CACHE_DIR"] = tempfile.mkdtemp(prefix="bayesmixed-ablation-")
    atexit.register(shutil.rmtree, os.environ["BAYESMIXED_CACHE_DIR"], ignore_errors=True)

import bayesmixed as bm  # before JAX: four CPU devices for parallel chains


def _min_ess(draws: dict) -> tuple[float, str]:
    import arviz as az
    import numpy as np
    import xarray as xr

    ds = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in draws.items()})
    ess = az.ess(ds, method="bulk")
    label = min(draws, key=lambda k: float(ess[k]))
    return float(ess[label]), label


def _hyper(problem, z) -> dict:
    from bayesmixed.engines import marginal

    h = marginal.constrained_draws(problem, z)
    out = {f"beta{i}": h["beta"][..., i] for i in range(h["beta"].shape[-1])}
    out.update({f"sd{k}": h["sd"][..., k] for k in range(h["sd"].shape[-1])})
    K = h["cor"].shape[-1]
    out.update({f"cor{i}{j}": h["cor"][..., i, j] for i in range(K) for j in range(i + 1, K)})
    out["sigma"] = h["sigma"]
    return out


REPEATS = 3  # warm runs per configuration (medians); the first run compiles


def marginal_config(design, priors, *, method="parallel", dense=False, dtype="float64",
                    precondition=True) -> dict:
    import numpy as np

    from bayesmixed.engines import marginal
    from bayesmixed.engines.common import SamplerSettings, seed_sequence
    from bayesmixed.engines.nuts import run_nuts

    problem = marginal.prepare(design, priors)
    if not precondition:
        problem.data["scale"] = np.eye(problem.dim)
    settings = SamplerSettings(chains=4, random_seed=1, chain_method=method, progressbar=False)
    init = np.random.default_rng(0).uniform(-1, 1, size=(4, problem.dim))
    key = ("ablation", problem.layout, precondition)
    runs = []
    for rep in range(1 + REPEATS):
        runs.append(run_nuts(marginal._potential_fn_gen(problem.layout), problem.data, init,
                             settings=settings, seed=seed_sequence(rep), static_key=key,
                             dense_mass=dense, dtype=np.dtype(dtype)))
    ess = [_min_ess(_hyper(problem, r.z)) for r in runs[1:]]
    return {
        "compile_s": runs[0].compile_seconds,
        "first_s": runs[0].compile_seconds + runs[0].sampling_seconds,
        "sampling_s": statistics.median(r.sampling_seconds for r in runs[1:]),
        "steps": float(np.mean([r.stats["n_steps"].mean() for r in runs[1:]])),
        "min_ess": statistics.median(e[0] for e in ess),
        "param": ess[0][1],
    }


def full_config(model, *, method="parallel") -> dict:
    import numpy as np

    from bayesmixed.build import hyper_var_names
    from bayesmixed.engines.common import SamplerSettings
    from bayesmixed.engines.nuts import sample_pymc_jax

    runs = []
    for rep in range(1 + REPEATS):
        settings = SamplerSettings(chains=4, random_seed=rep, chain_method=method,
                                   progressbar=False)
        idata, _ = sample_pymc_jax(model.build(), settings, hyper_var_names(model.design))
        runs.append(idata)
    attrs = [r["posterior"].attrs for r in runs]
    ess = []
    for run in runs[1:]:
        post = run["posterior"]
        ess.append(_min_ess({
            "beta0": post["Intercept"].values, "beta1": post["Days"].values,
            "sd0": post["sd_Subject"].values[..., 0], "sd1": post["sd_Subject"].values[..., 1],
            "cor01": post["cor_Subject"].values[..., 0, 1], "sigma": post["sigma"].values,
        }))
    return {
        "compile_s": attrs[0]["compile_time"],
        "first_s": attrs[0]["compile_time"] + attrs[0]["sampling_time"],
        "sampling_s": statistics.median(a["sampling_time"] for a in attrs[1:]),
        "steps": float(np.mean([r["sample_stats"]["n_steps"].mean() for r in runs[1:]])),
        "min_ess": statistics.median(e[0] for e in ess),
        "param": ess[0][1],
    }


IMPORTS = {
    "bayesmixed": "import bayesmixed",
    "bambi (pymc, arviz, formulae)": "import bambi",
    "pymc": "import pymc",
    "arviz": "import arviz",
    "jax + numpyro.infer": "import jax, numpyro.infer",
}


def import_costs(pycache: Path | None, repeats: int = 3) -> dict[str, float]:
    """Median import time of each library in a fresh process.

    ``pycache=None``: the environment as installed (uv compiled the bytecode). With an empty
    folder as ``pycache`` and ``PYTHONDONTWRITEBYTECODE=1``, Python looks for bytecode there
    only, finds none and recompiles every source: an install without compiled bytecode.
    """
    from run import _env  # benchmarks/run.py

    env = _env()
    if pycache is not None:
        env.update(PYTHONPYCACHEPREFIX=str(pycache), PYTHONDONTWRITEBYTECODE="1")
    out = {}
    for label, stmt in IMPORTS.items():
        times = []
        for _ in range(repeats):
            code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, env=env)
            times.append(float(res.stdout.strip().splitlines()[-1]))
        out[label] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--only-float32", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
    if args.only_float32:  # JAX's x64 flag is global: float32 runs in its own process
        print("FLOAT32", marginal_config(model.design, model.priors, dtype="float32"))
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  nproc={os.cpu_count()}  "
          f"load {os.getloadavg()}", flush=True)
    design, priors = model.design, model.priors
    configs = {
        "marginal, parallel chains (default)": {},
        "marginal, vectorised chains": {"method": "vectorized"},
        "marginal, sequential chains": {"method": "sequential"},
        "marginal, dense mass matrix": {"dense": True},
        "marginal, no Laplace preconditioner": {"precondition": False},
    }
    rows = {}
    for name, kw in configs.items():
        rows[name] = marginal_config(design, priors, **kw)
        print(f"  {name}: {rows[name]}", flush=True)
    res = subprocess.run([sys.executable, __file__, "--only-float32"], capture_output=True,
                         text=True, check=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("FLOAT32 ")][-1]
    rows["marginal, float32 (own process)"] = ast.literal_eval(line[len("FLOAT32 "):])
    print(f"  float32: {rows['marginal, float32 (own process)']}", flush=True)
    if not args.skip_full:
        for name, method in [("full, parallel chains", "parallel"),
                             ("full, sequential chains", "sequential"),
                             ("full, vectorised chains", "vectorized")]:
            rows[name] = full_config(model, method=method)
            print(f"  {name}: {rows[name]}", flush=True)
    print("\n| configuration | first run: compile (s) | first run total (s) | sampling (s) "
          "| leapfrog steps / draw | min bulk ESS | ESS/s | ESS per chain-s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        rate = r["min_ess"] / r["sampling_s"]
        print(f"| {name} | {r['compile_s']:.2f} | {r['first_s']:.2f} | {r['sampling_s']:.2f} | "
              f"{r['steps']:.1f} | {r['min_ess']:.0f} ({r['param']}) | {rate:,.0f} | "
              f"{rate / 4:,.0f} |")
    if not args.skip_imports:
        print("\n| import (fresh process, median of 3) | as installed: compiled bytecode (s) | "
              "without bytecode, PYTHONDONTWRITEBYTECODE=1 (s) |\n|---|---|---|")
        warm = import_costs(None)
        with tempfile.TemporaryDirectory(prefix="bayesmixed-pyc-") as tmp:
            cold = import_costs(Path(tmp))
        for label in warm:
            print(f"| {label} | {warm[label]:.2f} | {cold[label]:.2f} |")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
