"""Bayesian R²: brms's ``bayes_R2`` numbers, and the definition checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmixed as bm
from bayesmixed.errors import FitError
from bayesmixed.r2 import r2_draws

# brms 2.18, 4 x 1000 draws (../shared/reference/WORKFLOW_REFERENCE.md)
BRMS = {
    "conditional": {"mean": 0.792, "sd": 0.017, "q2.5": 0.754, "q97.5": 0.820},
    "marginal": {"mean": 0.283, "sd": 0.063, "q2.5": 0.153, "q97.5": 0.401},
}


@pytest.fixture(scope="module")
def full_fit(sleepstudy):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    return model.fit(draws=1000, tune=1000, chains=4, random_seed=1)


def test_r2_table_layout(sleep_fit):
    table = sleep_fit.r2()
    assert list(table.index) == ["conditional", "marginal"]
    assert list(table.columns) == ["mean", "sd", "q2.5", "q97.5"]
    assert ((table.values >= 0) & (table.values <= 1)).all()
    assert (table["q2.5"] < table["mean"]).all() and (table["mean"] < table["q97.5"]).all()
    assert table.loc["conditional", "mean"] > table.loc["marginal", "mean"] + 0.3
    wide = sleep_fit.r2(quantiles=(0.05, 0.5, 0.95))
    assert list(wide.columns) == ["mean", "sd", "q5", "q50", "q95"]


def test_r2_matches_brms_bayes_r2(full_fit):
    table = full_fit.r2()
    for row, ref in BRMS.items():
        for col, value in ref.items():
            assert table.loc[row, col] == pytest.approx(value, abs=0.02), (row, col)


def test_r2_definition_by_hand(sleep_fit, sleepstudy):
    """Per draw: var(epred) / (var(epred) + var(y - epred)), epred from the posterior."""
    post = sleep_fit.posterior
    b0 = post["Intercept"].values.reshape(-1)
    b1 = post["Days"].values.reshape(-1)
    days = sleepstudy["Days"].to_numpy(float)
    y = sleepstudy["Reaction"].to_numpy(float)
    epred = b0[:, None] + b1[:, None] * days[None, :]
    expected = epred.var(axis=1) / (epred.var(axis=1) + (y - epred).var(axis=1))
    np.testing.assert_allclose(r2_draws(sleep_fit, include_groups=False), expected, rtol=1e-10)

    r = post["r_Subject"]
    levels = [str(s) for s in sleepstudy["Subject"]]
    r0 = r.sel(Subject__term="Intercept").sel(Subject=levels).values
    r1 = r.sel(Subject__term="Days").sel(Subject=levels).values
    full = epred + (r0 + r1 * days).reshape(-1, len(days))
    expected = full.var(axis=1) / (full.var(axis=1) + (y - full).var(axis=1))
    np.testing.assert_allclose(r2_draws(sleep_fit), expected, rtol=1e-10)


def test_r2_binomial_uses_counts():
    """brms's epred of a binomial model is p x trials; R² compares it with the counts."""
    cbpp = bm.datasets.cbpp()
    fit = bm.Model("cbind(incidence, size - incidence) ~ period", cbpp).fit(
        draws=100, tune=200, chains=2, random_seed=2
    )
    p = fit.predict(kind="mean").draws.values.reshape(200, -1)
    epred = p * cbpp["size"].to_numpy(float)
    y = cbpp["incidence"].to_numpy(float)
    expected = epred.var(axis=1) / (epred.var(axis=1) + (y - epred).var(axis=1))
    np.testing.assert_allclose(r2_draws(fit), expected, rtol=1e-10)
    table = fit.r2()
    # no group terms: marginal and conditional are the same thing
    np.testing.assert_allclose(table.loc["marginal"], table.loc["conditional"])


def test_r2_bad_quantiles(sleep_fit):
    with pytest.raises(FitError, match="quantiles"):
        sleep_fit.r2(quantiles=(0.5, 2))
