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
    """Poisson has no Polya-Gamma form here: a clear error naming what Gibbs runs."""
    cbpp = bm.datasets.cbpp()
    model = bm.Model("incidence ~ period + (1 | herd)", cbpp, family="poisson")
    with pytest.raises(SamplingError, match=r"family='gaussian'.*'binomial' with the logit"):
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


# ---------------------------------------------------------------------------------------
# Logit models by Polya-Gamma augmentation
# ---------------------------------------------------------------------------------------


def _bernoulli_slopes(seed: int = 1, groups: int = 40, per_group: int = 25) -> pd.DataFrame:
    """A bernoulli GLMM with a correlated intercept-slope block (SDs 1 and 0.5, cor 0.3)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    u = rng.multivariate_normal([0, 0], [[1.0, 0.15], [0.15, 0.25]], groups)
    eta = -0.3 + 0.7 * x + u[g, 0] + u[g, 1] * x
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def _agree(gibbs: pd.DataFrame, nuts: pd.DataFrame, *, sd_tol: float) -> None:
    """Posterior means within 4 combined Monte Carlo SEs, SDs within ``sd_tol``."""
    print("\n" + pd.concat({"gibbs": gibbs, "nuts": nuts}, axis=1).round(3).to_string())
    mcse = np.sqrt(gibbs["sd"] ** 2 / gibbs["ess_bulk"] + nuts["sd"] ** 2 / nuts["ess_bulk"])
    assert ((gibbs["mean"] - nuts["mean"]).abs() < 4 * mcse).all()
    assert ((gibbs["sd"] / nuts["sd"] - 1).abs() < sd_tol).all()


def test_polya_gamma_gibbs_agrees_with_the_full_model():
    """Bernoulli, ``(1 + x | g)`` with 40 levels (a large factor: the collapsed update):
    Gibbs with Polya-Gamma weights and NUTS on the full model (glmm engine) agree."""
    model = bm.Model("y ~ x + (1 + x | g)", _bernoulli_slopes(), family="bernoulli")
    fit = model.fit(sampler="gibbs", draws=1000, tune=300, chains=4, random_seed=2,
                    progressbar=False)
    assert fit.settings.engine == "gibbs"
    post = fit.idata["posterior"]
    assert post.attrs["augmentation"] == "polya-gamma"
    assert "sigma" not in post
    assert dict(post["r_g"].sizes) == {"chain": 4, "draw": 1000, "g": 40, "g__term": 2}
    nuts = model.fit(draws=1000, tune=1000, chains=4, random_seed=2, progressbar=False)
    assert nuts.settings.engine == "glmm"
    gibbs_table = fit.summary()
    assert list(gibbs_table.index) == list(nuts.summary().index)
    assert gibbs_table["r_hat"].max() < 1.01
    _agree(gibbs_table, nuts.summary(), sd_tol=0.2)
    assert fit.ranef()["g"].shape == nuts.ranef()["g"].shape
    pred = fit.predict(kind="mean").draws.values
    assert pred.shape[-1] == len(model.data) and np.all((pred > 0) & (pred < 1))


def test_polya_gamma_gibbs_binomial_trials():
    """cbpp, ``cbind(incidence, size - incidence)``: PG(size, eta) weights; the herd factor
    (15 levels) joins the common effects' block."""
    cbpp = bm.datasets.cbpp()
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    fit = model.fit(sampler="gibbs", draws=1000, tune=300, chains=4, random_seed=3,
                    progressbar=False)
    nuts = model.fit(draws=1000, tune=1000, chains=4, random_seed=3, progressbar=False)
    np.testing.assert_array_equal(fit.idata["observed_data"][model.design.layout.response],
                                  cbpp["incidence"].to_numpy())
    _agree(fit.summary(), nuts.summary(), sd_tol=0.2)


def test_gibbs_refuses_other_links():
    data = _bernoulli_slopes(groups=10, per_group=5)
    probit = bm.Model("y ~ x + (1 | g)", data, family="bernoulli", link="probit")
    with pytest.raises(SamplingError, match="'bernoulli' with the 'probit' link"):
        probit.fit(sampler="gibbs", draws=10, tune=10)


def test_auto_sampler_picks_polya_gamma_gibbs_for_large_logit_models(monkeypatch):
    from bayesmixed import engines
    from bayesmixed.engines.common import SamplerSettings

    model = bm.Model("y ~ x + (1 + x | g)", _bernoulli_slopes(), family="bernoulli")
    settings = SamplerSettings()
    assert engines.choose_engine(model.design, model.priors, settings).engine == "glmm"
    monkeypatch.setattr(engines, "AUTO_PG_ROWS", len(model.data))
    chosen = engines.choose_engine(model.design, model.priors, settings)
    assert chosen.engine == "gibbs" and "Polya-Gamma" in chosen.engine_reason
    forced = engines.choose_engine(model.design, model.priors, settings, marginalize="laplace")
    assert forced.engine == "laplace"


def test_gibbs_burn_in_defaults_to_gibbs_tune_and_an_explicit_tune_wins(sleepstudy):
    """``fit(tune=None)`` runs :data:`GIBBS_TUNE` burn-in sweeps on the Gibbs engine (it
    adapts nothing); a ``tune`` given is used as given; both are recorded."""
    from bayesmixed.engines import GIBBS_TUNE, NUTS_TUNE

    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    default = model.fit(sampler="gibbs", draws=20, chains=1, random_seed=1, progressbar=False)
    assert (GIBBS_TUNE, NUTS_TUNE) == (250, 1000)
    assert default.settings.tune == GIBBS_TUNE
    assert default.idata["posterior"].attrs["tuning_steps"] == GIBBS_TUNE
    given = model.fit(sampler="gibbs", draws=20, tune=7, chains=1, random_seed=1,
                      progressbar=False)
    assert given.settings.tune == 7
    assert given.idata["posterior"].attrs["tuning_steps"] == 7
    # a refit keeps an explicit tune; a default one is the default of the refit's engine
    assert given.update(draws=20, random_seed=2).settings.tune == 7
    assert default.update(draws=20, random_seed=2).settings.tune == GIBBS_TUNE
    other = default.update(sampler="numpyro", draws=20, chains=1, random_seed=2)
    assert other.settings.engine != "gibbs" and other.settings.tune == NUTS_TUNE
