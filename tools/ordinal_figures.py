"""Make the figures of ``docs/ordinal.md`` from brms's inhaler data.

Fits ``rating ~ treat + period + carry + (1 | subject)`` (cumulative logit, 4 chains x
(1000 + 1000), seed 1) and writes

* ``docs/images/ordinal_ppc.png``: ``bm.plot_ppc`` (observed category counts against the
  replicated ones);
* ``docs/images/ordinal_probabilities.png``: the population-level probability of each
  rating for each inhaler (``fit.predict(..., kind="mean", include_groups=False)``).

Run from the repository root: ``.venv/bin/python tools/ordinal_figures.py`` (about a
minute); it prints the summary table the page quotes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayesmixed as bm

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def main() -> None:
    df = bm.datasets.inhaler()
    model = bm.Model("rating ~ treat + period + carry + (1 | subject)", df,
                     family="cumulative")
    fit = model.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(fit.summary())
    print(fit.settings.engine, "-", fit.settings.engine_reason)

    fig = bm.plot_ppc(fit, random_seed=1, figsize=(5.6, 3.6),
                      title="inhaler, cumulative logit: category counts")
    fig.savefig(IMAGES / "ordinal_ppc.png", dpi=110)
    plt.close(fig)

    new = pd.DataFrame({"treat": [-0.5, 0.5], "period": [0.0, 0.0], "carry": [0, 0]},
                       index=["inhaler B (treat = -0.5)", "inhaler A (treat = +0.5)"])
    probs = fit.predict(new, kind="mean", include_groups=False).draws
    mean = probs.mean(("chain", "draw"))
    low, high = probs.quantile([0.025, 0.975], dim=("chain", "draw"))
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    categories = probs["category"].values
    x = np.arange(len(categories))
    for j, row in enumerate(new.index):
        m = mean.sel(row=row).values
        err = [m - low.sel(row=row).values, high.sel(row=row).values - m]
        ax.errorbar(x + (j - 0.5) * 0.2, m, yerr=err, fmt="o", capsize=4, label=row)
    ax.set_xticks(x, [str(c) for c in categories])
    ax.set_xlabel("rating")
    ax.set_ylabel("probability (population level)")
    ax.set_title("P(rating) by inhaler: mean and 95% interval", fontsize="medium")
    ax.legend(fontsize="small")
    fig.set_layout_engine("constrained")
    fig.savefig(IMAGES / "ordinal_probabilities.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
