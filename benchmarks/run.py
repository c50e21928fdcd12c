"""Sleepstudy speed benchmark: ``.venv/bin/python benchmarks/run.py`` (about 5 minutes).

Times ``Reaction ~ Days + (Days | Subject)``, 4 chains x (1000 tuning + 1000 draws), from
a fresh Python process to the printed summary, for

* bayesmixed with the group effects integrated out (``marginal``) and the full model
  (``full``), each once with an empty cache directory (``cold``: everything compiles) and
  ``--repeats`` times with the cache it left (``warm``, the usual case);
* the article's route: its hand-written PyMC model with ``pm.sample(nuts_sampler=
  "numpyro")`` (``article``), plus one process that samples it twice with JAX's
  persistent cache on, whose second run approximates its sampling time without
  compilation (``article-warm``);
* Bambi 0.21 with ``inference_method="numpyro"`` (independent group effects).

Routes are interleaved so that a busy moment does not hit one route only; the table shows
medians. Child processes run in the environment exactly as the README's install leaves it
(its first command runs ``uv sync --frozen --compile-bytecode`` and ``python -m compileall
-q src``, so the dependencies and bayesmixed's sources are compiled once); no bytecode cache of the benchmark's own is added. Sampling efficiency
is the smallest bulk ESS over fixed effects, group SDs, correlations and sigma, per second
of sampling wall time (compile excluded where the route reports it) and per chain-second
(wall time x chains: chains that share the cores count in full). Recorded figures of brms
2.18 and lme4 1.1-31 (same machine kind, listed with their provenance in
``docs/benchmarks.md``) are printed alongside; they are not re-run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BRMS = {"min_ess": 991.0, "sampling_chain_s": 9.73, "wall_s": 59.7, "refit_s": 10.1}
LME4_S = 0.014


def _machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load": [round(x, 2) for x in load],
    }


def _env() -> dict[str, str]:
    """The environment as installed: no bytecode cache or JAX flags of the benchmark's own."""
    env = dict(os.environ, CI="1")
    env.pop("XLA_FLAGS", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def run_route(route: str, cache: Path | None) -> dict:
    """Run one route in a fresh process; add the wall time measured from outside."""
    env = _env()
    if cache is not None:
        env["BAYESMIXED_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / "routes.py"), route],
        capture_output=True, text=True, env=env, check=False,
    )
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"route {route} failed (exit {proc.returncode})")
    out = json.loads(lines[-1][len("BENCH_JSON "):])
    out["wall_s"] = wall
    out["load1"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return out


def _median(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None and r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


def _row(name: str, runs: list[dict], chains: int = 4) -> dict:
    wall = _median(runs, "wall_s")
    ready = _median(runs, "ready_s")
    sampler = _median(runs, "sampler_s")
    sampling = _median(runs, "sampling_s")
    ess = _median(runs, "min_ess")
    per_s = ess / sampling if sampling == sampling else ess / sampler
    return {
        "route": name,
        "n": len(runs),
        "ready_s": ready,
        "wall_s": wall,
        "load1": _median(runs, "load1"),
        "sampler_s": sampler,
        "sampling_s": sampling,
        "min_ess": ess,
        "min_ess_param": runs[-1].get("min_ess_param", ""),
        "ess_per_s": per_s,
        "ess_per_chain_s": per_s / chains,
        "compile_excluded": sampling == sampling,
    }


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x != x else f"{x:,.{digits}f}"


def table(rows: list[dict], article: dict) -> str:
    """Markdown table of the results, with ratios to the article's route and to brms."""
    brms_rate = BRMS["min_ess"] / BRMS["sampling_chain_s"]
    head = ("| route | runs | import to printed summary (s) | whole process (s) | in sampler "
            "(s) | sampling, compile excluded (s) | min bulk ESS | ESS/s | ESS per chain-s "
            "| speed-up vs article (to summary / process) | ESS per chain-s vs brms |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        star = "" if r["compile_excluded"] else " *"
        twice = r["route"] == "article-warm"  # two pm.sample calls, no summary: not end to end
        ready = "–" if twice else _fmt(r["ready_s"])
        speedup = "–" if twice else (f"{_fmt(article['ready_s'] / r['ready_s'], 1)}x / "
                                     f"{_fmt(article['wall_s'] / r['wall_s'], 1)}x")
        lines.append(
            f"| {r['route']} | {r['n']} | {ready} | {_fmt(r['wall_s'])} | "
            f"{_fmt(r['sampler_s'])} | {_fmt(r['sampling_s'], 2)} | "
            f"{_fmt(r['min_ess'], 0)} ({r['min_ess_param']}) | "
            f"{_fmt(r['ess_per_s'], 0)}{star} | {_fmt(r['ess_per_chain_s'], 0)}{star} | "
            f"{speedup} | {_fmt(r['ess_per_chain_s'] / brms_rate, 1)}x |"
        )
    lines.append(
        f"| brms 2.18 (recorded) | – | – | {BRMS['wall_s']} (refit {BRMS['refit_s']}) | – | "
        f"{BRMS['sampling_chain_s']} (sum of 4 chains) | {BRMS['min_ess']:.0f} (cor) | – | "
        f"{brms_rate:.0f} | – / {_fmt(article['wall_s'] / BRMS['wall_s'], 2)}x | 1.0x |"
    )
    lines.append(f"| lme4 1.1-31 REML (recorded) | – | – | {LME4_S} (fit only) | – | – | – | "
                 "– | – | – | – |")
    lines.append("")
    lines.append("`*` compile included (the route does not report its sampling time alone). "
                 "`article-warm`: one process that runs `pm.sample` twice with JAX's "
                 "persistent cache on; its sampling columns are the second call's.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per route")
    parser.add_argument("--routes", default="marginal,full,article,article-warm,bambi")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier --json")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        runs = saved["runs"]
        article = {k: _median(runs.get("article", [{}]), k) for k in ("ready_s", "wall_s")}
        print(saved["machine"])
        print(table([_row(name, rs) for name, rs in runs.items()], article))
        return
    routes = args.routes.split(",")
    before = _machine()
    print(f"{before['date']}  nproc={before['nproc']}  {before['machine']}  "
          f"Python {before['python']}  load {before['load']}", flush=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bayesmixed-bench-") as tmp:
        caches = {r: Path(tmp) / r for r in ("marginal", "full")}
        for route in ("marginal", "full"):  # cold: empty cache directories
            if route in routes:
                out = run_route(route, caches[route])
                results.setdefault(f"{route} (cold cache)", []).append(out)
                print(f"  {route} cold: {out['wall_s']:.1f} s", flush=True)
        for rep in range(args.repeats):
            for route in routes:
                if route == "article-warm" and rep:
                    continue  # one process is enough: it samples twice
                out = run_route(route, caches.get(route))
                name = f"{route} (warm cache)" if route in caches else route
                results.setdefault(name, []).append(out)
                print(f"  {route} #{rep + 1}: {out['wall_s']:.1f} s "
                      f"(load {out['load1']:.2f})", flush=True)
    after = _machine()
    order = ["marginal (warm cache)", "marginal (cold cache)", "full (warm cache)",
             "full (cold cache)", "article", "article-warm", "bambi"]
    rows = [_row(name, results[name]) for name in order if name in results]
    article = {k: _median(results.get("article", [{}]), k) for k in ("ready_s", "wall_s")}
    print()
    print(table(rows, article))
    print(f"\nmedian 1-minute load during the runs: "
          f"{statistics.median(r['load1'] for rs in results.values() for r in rs):.2f}")
    print(f"\nload average before {before['load']}, after {after['load']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": before, "after": after, "rows": rows,
                                         "runs": results}, indent=1))


if __name__ == "__main__":
    main()
