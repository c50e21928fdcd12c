"""The figure and numbers of ``docs/distributional.md``: sleep study, ``sigma ~ Days``.

Fits brms's ``bf(Reaction ~ Days + (Days | Subject), sigma ~ Days)`` with brms's settings
(4 chains of 1000 tuning and 1000 kept draws, seed 1) and the same model with one residual
SD, prints the summary and the sigma predictions quoted on the page, and draws the
residual SD by day: the distributional model's sigma (posterior mean and 95% band), the
constant model's sigma, and the SD of each day's residuals.

Run::

    python tools/distributional_figure.py          # writes docs/images/distributional_sigma.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayesmixed as bm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "distributional_sigma.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    df = bm.datasets.sleepstudy()
    formula = bm.Formula("Reaction ~ Days + (Days | Subject)", "sigma ~ Days")
    start = time.perf_counter()
    fit = bm.Model(formula, df).fit(draws=1000, tune=1000, chains=4, random_seed=1)
    print(f"fit in {time.perf_counter() - start:.1f} s on engine {fit.settings.engine!r}: "
          f"{fit.settings.engine_reason}")
    print(fit)
    constant = bm.Model("Reaction ~ Days + (Days | Subject)", df).fit(random_seed=1)

    days = pd.DataFrame({"Days": np.arange(10.0)})
    sigma = fit.predict(days, dpar="sigma", include_groups=False).summary()
    print(sigma.round(2))
    mu = fit.predict().summary()["mean"].to_numpy()
    resid = pd.Series(df["Reaction"].to_numpy() - mu).groupby(df["Days"].to_numpy()).std()
    flat = constant.summary().loc["sigma"]

    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.fill_between(days["Days"], sigma["q2.5"], sigma["q97.5"], color="C0", alpha=0.25,
                    label="sigma ~ Days: 95% interval")
    ax.plot(days["Days"], sigma["mean"], color="C0", lw=2, label="sigma ~ Days: mean")
    ax.axhline(flat["mean"], color="C1", ls="--", lw=1.5,
               label=f"one sigma for all days ({flat['mean']:.1f})")
    ax.plot(resid.index, resid.to_numpy(), "o", color="0.3",
            label="SD of the day's residuals")
    ax.set_xlabel("Days of sleep deprivation")
    ax.set_ylabel("residual SD of reaction time (ms)")
    ax.set_title("Sleep study: residual SD by day (fit.predict(dpar='sigma'))",
                 fontsize="medium")
    ax.set_xticks(range(10))
    ax.legend(fontsize="small", loc="upper left")
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
