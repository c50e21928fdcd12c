"""Every required family samples with a correlated block and recovers its fixed effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

import bayesmixed as bm

pytestmark = pytest.mark.slow


def simulate(family, seed=1, n_groups=20, per_group=20):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    L = np.linalg.cholesky(np.array([[1.0, 0.3], [0.3, 1.0]]))
    effects = (rng.normal(size=(n_groups, 2)) @ L.T) * np.array([0.4, 0.2])
    eta = 0.5 + effects[g, 0] + (0.7 + effects[g, 1]) * x
    data = {"x": x, "g": [f"g{i}" for i in g]}
    if family == "gaussian":
        data["y"] = eta + rng.normal(scale=0.5, size=g.size)
    elif family == "t":
        data["y"] = eta + 0.5 * rng.standard_t(5, size=g.size)
    elif family == "bernoulli":
        data["y"] = rng.binomial(1, special.expit(eta))
    elif family == "binomial":
        data["n"] = rng.integers(5, 15, size=g.size)
        data["k"] = rng.binomial(data["n"], special.expit(eta))
    elif family == "poisson":
        data["y"] = rng.poisson(np.exp(eta))
    elif family == "negativebinomial":
        mu = np.exp(eta)
        data["y"] = rng.negative_binomial(5, 5 / (5 + mu))
    elif family == "gamma":
        mu = np.exp(eta)
        data["y"] = rng.gamma(shape=4, scale=mu / 4)
    return pd.DataFrame(data)


@pytest.mark.parametrize(
    "family", ["gaussian", "bernoulli", "binomial", "poisson", "negativebinomial", "t", "gamma"]
)
def test_family_samples_with_correlated_block(family):
    data = simulate(family)
    if family == "binomial":
        formula = "cbind(k, n - k) ~ x + (x | g)"
    else:
        formula = "y ~ x + (x | g)"
    link = "log" if family == "gamma" else None
    fit = bm.Model(formula, data, family=family, link=link).fit(
        draws=300, tune=400, chains=2, random_seed=1
    )
    table = fit.summary()
    assert "cor(Intercept,x|g)" in table.index
    assert table["r_hat"].max() < 1.05
    assert abs(table.loc["x", "mean"] - 0.7) < 3 * table.loc["x", "sd"] + 0.05
    assert abs(table.loc["Intercept", "mean"] - 0.5) < 3 * table.loc["Intercept", "sd"] + 0.05
