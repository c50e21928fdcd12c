"""The blocked Gibbs sampler for Gaussian models: same posterior as NUTS, scales to InstEval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.errors import SamplingError


def test_gibbs_fit_has_the_nuts_layout(sleepstudy, sleep_fit):
    fit = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy).fit(
        sampler="gibbs", draws=200, tune=200, chains=2, random_seed=3
    )
    assert list(fit.summary().index) == list(sleep_fit.summary().index)
    post = fit.idata["posterior"]
    assert dict(post["r_Subject"].sizes) == {"chain": 2, "draw": 200, "Subject": 18,
                                             "Subject__term": 2}
    np.testing.assert_allclose(post["cor_Subject"].values[..., 1, 1], 1.0)
    assert fit.ranef()["Subject"].shape == (18, 8)
    again = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy).fit(
        sampler="gibbs", draws=200, tune=200, chains=2, random_seed=3
    )
    np.testing.assert_array_equal(post["sigma"].values, again.idata["posterior"]["sigma"].values)


def test_gibbs_refuses_non_gaussian_models():
    cbpp = bm.datasets.cbpp()
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    with pytest.raises(SamplingError, match="family='gaussian'"):
        model.fit(sampler="gibbs", draws=10, tune=10)


def test_gibbs_refuses_too_few_levels():
    pen = bm.datasets.penicillin()
    data = pen[pen["sample"].isin(["A", "B", "C"])]
    with pytest.raises(SamplingError, match="more than 3 levels of 'sample'"):
        bm.Model("diameter ~ 1 + (1 | sample)", data).fit(sampler="gibbs", draws=10, tune=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("formula", "dataset"),
    [
        ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin"),
    ],
)
def test_gibbs_agrees_with_nuts(formula, dataset):
    """Both samplers target the same posterior: means agree within Monte Carlo error."""
    data = getattr(bm.datasets, dataset)()
    model = bm.Model(formula, data)
    gibbs = model.fit(sampler="gibbs", draws=1000, tune=1000, chains=4, random_seed=1).summary()
    nuts = model.fit(draws=1000, tune=1000, chains=4, random_seed=1).summary()
    print("\n" + pd.concat({"gibbs": gibbs, "nuts": nuts}, axis=1).round(3).to_string())
    assert gibbs["r_hat"].max() < 1.01 and gibbs["ess_bulk"].min() > 400
    # difference of two means, each with Monte Carlo SE sd / sqrt(ESS): allow 4 combined SEs
    mcse = np.sqrt(gibbs["sd"] ** 2 / gibbs["ess_bulk"] + nuts["sd"] ** 2 / nuts["ess_bulk"])
    assert ((gibbs["mean"] - nuts["mean"]).abs() < 4 * mcse).all()
    assert ((gibbs["sd"] / nuts["sd"] - 1).abs() < 0.15).all()


@pytest.mark.slow
def test_insteval_matches_lme4():
    """73,421 rows, crossed students x lecturers: lme4's REML SDs (s 0.325, d 0.512,
    dept:service 0.110, residual 1.177), every R-hat <= 1.01 and bulk ESS >= 400."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "insteval.csv.gz"
    data = pd.read_csv(path)
    fit = bm.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", data).fit(
        sampler="gibbs", draws=1000, tune=1000, chains=4, random_seed=1
    )
    table = fit.summary()
    print("\n" + table.round(4).to_string())
    assert table["r_hat"].max() <= 1.01
    assert table["ess_bulk"].min() >= 400
    assert table.loc["sd(Intercept|s)", "mean"] == pytest.approx(0.32469, rel=0.05)
    assert table.loc["sd(Intercept|d)", "mean"] == pytest.approx(0.51241, rel=0.05)
    assert table.loc["sigma", "mean"] == pytest.approx(1.17684, rel=0.05)
    # 28 levels: the posterior of this SD is right-skewed, its mean lies above the REML
    # estimate; the REML value sits inside the 95 % interval and within 10 % of the mean
    row = table.loc["sd(Intercept|dept:service)"]
    assert row["q2.5"] < 0.10965 < row["q97.5"]
    assert row["mean"] == pytest.approx(0.10965, rel=0.10)


def test_auto_sampler_picks_gibbs_for_large_crossed_gaussian_models(sleepstudy):
    rng = np.random.default_rng(0)
    n = 10_000
    data = pd.DataFrame(
        {"a": rng.integers(0, 50, n), "b": rng.integers(0, 40, n), "x": rng.normal(size=n)}
    )
    data["y"] = data["x"] + rng.normal(size=50)[data["a"]] + rng.normal(size=n)
    fit = bm.Model("y ~ x + (1 | a) + (1 | b)", data).fit(draws=50, tune=50, random_seed=1)
    assert fit.settings.sampler == "gibbs"
    small = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(
        draws=50, tune=50, chains=1, random_seed=1
    )
    assert small.settings.sampler == "numpyro"
