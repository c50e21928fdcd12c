"""Fitting: the fit object, summary labels and shapes, seeds (short runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.errors import SamplingError
from bayesmixed.summary import STAT_COLUMNS


def test_summary_rows_and_columns(sleep_fit):
    table = sleep_fit.summary()
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == [
        "Intercept",
        "Days",
        "sd(Intercept|Subject)",
        "sd(Days|Subject)",
        "cor(Intercept,Days|Subject)",
        "sigma",
    ]
    assert tuple(table.columns) == STAT_COLUMNS
    assert (table["q2.5"] < table["mean"]).all() and (table["mean"] < table["q97.5"]).all()
    assert table.loc["cor(Intercept,Days|Subject)", "mean"] == pytest.approx(0, abs=0.6)
    assert 200 < table.loc["Intercept", "mean"] < 300


def test_summary_prints_brms_sections(sleep_fit):
    text = repr(sleep_fit)
    for part in ("Group-Level Effects: ~Subject (Number of levels: 18)",
                 "Population-Level Effects:", "Family Specific Parameters:", "sigma"):
        assert part in text


def test_datatree_contents(sleep_fit):
    post = sleep_fit.idata["posterior"]
    assert dict(post["r_Subject"].sizes) == {"chain": 2, "draw": 200, "Subject": 18,
                                             "Subject__term": 2}
    assert list(post["r_Subject"].coords["Subject__term"].values) == ["Intercept", "Days"]
    assert "308" in post["r_Subject"].coords["Subject"].values
    assert post["cor_Subject"].shape == (2, 200, 2, 2)
    np.testing.assert_allclose(post["cor_Subject"].values[..., 0, 0], 1.0)
    assert "z_Subject" not in post  # offsets are not stored


def test_fixef_ranef_coef_varcorr(sleep_fit):
    fixef = sleep_fit.fixef()
    assert list(fixef.index) == ["Intercept", "Days"]
    assert list(fixef.columns) == ["mean", "sd", "q2.5", "q97.5"]
    ranef = sleep_fit.ranef()["Subject"]
    assert ranef.shape == (18, 8)
    assert abs(ranef[("Intercept", "mean")].mean()) < 10  # deviations centre on zero
    coef = sleep_fit.coef()["Subject"]
    np.testing.assert_allclose(
        coef[("Days", "mean")], ranef[("Days", "mean")] + fixef.loc["Days", "mean"], rtol=1e-8
    )
    vc = sleep_fit.VarCorr()
    assert list(vc["Subject"]["sd"].index) == ["Intercept", "Days"]
    assert vc["Subject"]["cor"].shape == (2, 2)
    assert vc["residual__"]["sd"].loc["sigma", "mean"] == pytest.approx(
        sleep_fit.summary().loc["sigma", "mean"]
    )


def test_same_seed_same_draws(sleepstudy):
    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    a = model.fit(draws=30, tune=30, chains=1, random_seed=5)
    b = model.fit(draws=30, tune=30, chains=1, random_seed=5)
    c = model.fit(draws=30, tune=30, chains=1, random_seed=6)
    np.testing.assert_array_equal(a.posterior["r_Subject"].values, b.posterior["r_Subject"].values)
    assert not np.array_equal(a.posterior["Days"].values, c.posterior["Days"].values)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"draws": 0}, "draws=0 must be a positive integer"),
        ({"draws": 10.5}, "draws=10.5"),
        ({"chains": -1}, "chains=-1"),
        ({"tune": "many"}, "tune='many'"),
        ({"sampler": "stan"}, "Unknown sampler 'stan'"),
        ({"target_accept": 1.5}, "target_accept"),
        ({"random_seed": "x"}, "random_seed"),
    ],
)
def test_sampler_option_errors(sleepstudy, kw, words):
    with pytest.raises(SamplingError, match=words):
        bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(**kw)


def test_pymc_fallback_sampler(sleepstudy):
    fit = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(
        draws=50, tune=50, chains=1, sampler="pymc", random_seed=2
    )
    assert fit.summary().shape[0] == 4


def test_blackjax_sampler(sleepstudy):
    fit = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy).fit(
        draws=100, tune=200, chains=2, sampler="blackjax", random_seed=2
    )
    table = fit.summary()
    assert "cor(Intercept,Days|Subject)" in table.index
    assert 200 < table.loc["Intercept", "mean"] < 300
