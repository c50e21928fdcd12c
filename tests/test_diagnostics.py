"""Sampling problems are reported: divergences, R-hat, ESS, singular fits."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmixed as bm
from bayesmixed.diagnostics import Diagnostics, check_fit, prior_scale
from bayesmixed.engines.common import SamplerSettings
from bayesmixed.errors import ConvergenceWarning, SingularFitWarning
from bayesmixed.results import Fit


@pytest.fixture(scope="module")
def grouped():
    """y ~ x + (x | g) data with clear group intercepts and no slope variation."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=g.size)
    y = 1.0 + rng.normal(scale=1.5, size=12)[g] + 0.5 * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


@pytest.fixture(scope="module")
def model(grouped):
    return bm.Model("y ~ x + (x | g)", grouped)


def fake_fit(model, *, chains=4, draws=500, seed=0, edit=None, divergences=0):
    """A Fit with synthetic, well-mixed draws (``edit`` changes them) and no sampling."""
    rng = np.random.default_rng(seed)
    fac = model.design.factors[0]
    n_levels, n_terms = len(fac.levels), len(fac.terms)

    def normal(*shape, loc=0.0, scale=1.0):
        return rng.normal(loc, scale, size=(chains, draws, *shape))

    post = {
        "Intercept": normal(loc=1.0, scale=0.3),
        "x": normal(loc=0.5, scale=0.1),
        "sd_g": np.abs(normal(n_terms, loc=1.0, scale=0.2)),
        "r_g": normal(n_levels, n_terms),
        "sigma": np.abs(normal(loc=1.0, scale=0.05)),
    }
    cor = np.broadcast_to(np.eye(n_terms), (chains, draws, n_terms, n_terms)).copy()
    cor[..., 0, 1] = cor[..., 1, 0] = np.tanh(normal(scale=0.3))
    post["cor_g"] = cor
    if edit:
        edit(post)
    dims = {
        "sd_g": ("g__term",),
        "r_g": ("g", "g__term"),
        "cor_g": ("g__term", "g__term2"),
    }
    posterior = xr.Dataset(
        {k: (("chain", "draw", *dims.get(k, ())), v) for k, v in post.items()},
        coords={"g": fac.levels, "g__term": fac.terms, "g__term2": fac.terms},
    )
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging.flat[:divergences] = True
    stats = xr.Dataset({"diverging": (("chain", "draw"), diverging)})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    settings = SamplerSettings(draws=draws, tune=draws, chains=chains, random_seed=seed)
    return Fit(model, tree, settings=settings)


# -- synthetic draws (fast, exact) -----------------------------------------------------------


def test_well_mixed_draws_raise_nothing(model):
    fit = fake_fit(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag = check_fit(fit)
    assert isinstance(diag, Diagnostics)
    assert diag.converged and diag.divergences == 0 and diag.singular == ()
    assert list(diag.table.columns) == ["r_hat", "ess_bulk", "ess_tail", "problem"]
    assert list(diag.table.index) == list(fit.summary().index)
    assert (diag.table["problem"] == "").all()
    assert diag.draws == 2000
    assert "No sampling problems" in repr(diag)


def test_one_chain_has_no_r_hat_but_is_not_flagged(model):
    diag = fake_fit(model, chains=1, draws=1000).diagnostics()
    assert diag.table["r_hat"].isna().all()
    assert diag.high_rhat == [] and diag.converged
    assert "R-hat needs two or more chains" in repr(diag)


def test_stuck_chains_are_flagged(model):
    def stuck(post):
        post["sigma"][:] = 1.0  # every draw the same: R-hat undefined

    assert "sigma" in fake_fit(model, edit=stuck).diagnostics().high_rhat


def test_chains_that_disagree_are_named(model):
    def shift(post):
        post["x"][0] += 0.5  # chain 0 elsewhere

    with pytest.warns(ConvergenceWarning, match=r"R-hat > 1.01 for x \(") as record:
        diag = check_fit(fake_fit(model, edit=shift))
    assert len(record) == 1
    assert diag.high_rhat == ["x"]
    assert diag.table.loc["x", "problem"].startswith("R-hat > 1.01")


def test_divergences_advise_target_accept(model):
    with pytest.warns(ConvergenceWarning, match="7 divergent transitions") as record:
        diag = check_fit(fake_fit(model, divergences=7))
    message = str(record[0].message)
    assert "target_accept" in message and "0.95" in message
    assert diag.divergences == 7 and not diag.converged


def test_glmm_divergences_name_the_parametrisation_and_the_funnel(model):
    """Divergences of a glmm fit: the warning says how the group effects were sampled,
    why small data sets diverge (the funnel in the group SDs) and the three remedies; a
    Gaussian model (whose divergences came from centring) is pointed to the exact
    marginal engine."""
    from dataclasses import replace

    fit = fake_fit(model, divergences=4)
    fit.settings = replace(fit.settings, engine="glmm", target_accept=0.95)
    fit.idata["posterior"].attrs["centred"] = "none"
    with pytest.warns(ConvergenceWarning, match="4 divergent transitions"):
        gaussian = check_fit(fit)
    assert gaussian.family == "gaussian"
    advice = gaussian.convergence_message()
    assert "centred form a funnel" in advice and "marginalize='auto'" in advice
    assert "HalfNormal" not in advice
    diag = replace(gaussian, family="poisson")
    message = diag.convergence_message()
    assert diag.centred == "none" and diag.rows_per_level == pytest.approx(10.0)
    assert "non-centred (r = T z) for every factor" in message
    assert "10 rows per level" in message and "funnel" in message
    assert "target_accept=0.99" in message and "HalfNormal" in message
    fit.idata["posterior"].attrs["centred"] = "g"
    assert "centred (r sampled directly) for g" in check_fit(fit, warn=False).convergence_message()
    plain = check_fit(fake_fit(model, divergences=4), warn=False).convergence_message()
    assert "glmm engine" not in plain  # other engines keep the general advice only


def test_low_ess_is_named_with_the_summary_label(model):
    def random_walk(post):
        walk = np.cumsum(np.random.default_rng(1).normal(size=post["sd_g"].shape[:2]), axis=1)
        post["sd_g"][..., 1] = 1 + 0.01 * np.abs(walk)

    with pytest.warns(ConvergenceWarning, match=r"sd\(x\|g\) \(\d+\)") as record:
        diag = check_fit(fake_fit(model, edit=random_walk))
    assert "sd(x|g)" in diag.low_ess
    assert "effective sample size < 400" in str(record[0].message)


def test_slow_gibbs_mixing_on_small_data_points_to_nuts(model):
    """Issue 14: Gibbs mixes poorly on small data sets; the warning says to use NUTS."""
    import dataclasses

    def random_walk(post):
        walk = np.cumsum(np.random.default_rng(1).normal(size=post["sd_g"].shape[:2]), axis=1)
        post["sd_g"][..., 1] = 1 + 0.01 * np.abs(walk)

    fit = fake_fit(model, edit=random_walk)
    gibbs = Fit(model, fit.idata, settings=dataclasses.replace(fit.settings, engine="gibbs"))
    message = gibbs.diagnostics().convergence_message()
    assert "Gibbs sampler mixes slowly" in message and "sampler='numpyro'" in message
    assert f"{model.design.n} rows" in message
    assert "Gibbs" not in fake_fit(model, edit=random_walk).diagnostics().convergence_message()


def test_one_warning_for_several_problems(model):
    def shift(post):
        post["Intercept"][1] -= 1.0

    with pytest.warns(ConvergenceWarning) as record:
        check_fit(fake_fit(model, edit=shift, divergences=3))
    assert len([w for w in record if w.category is ConvergenceWarning]) == 1
    text = str(record[0].message)
    assert "divergent" in text and "R-hat" in text and "Intercept" in text


def test_warn_false_and_thresholds(model):
    def shift(post):
        post["x"][0] += 0.05

    fit = fake_fit(model, edit=shift)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = check_fit(fit, warn=False)
    assert quiet.high_rhat == ["x"]
    assert fit.diagnostics(rhat_max=1.5, ess_min=10).converged


def test_singular_sd_is_pointed_out(model):
    def pile_at_zero(post):
        post["sd_g"][..., 1] = np.abs(np.random.default_rng(2).normal(0, 0.02, size=(4, 500)))

    with pytest.warns(SingularFitWarning, match=r"boundary \(singular\) fit: sd\(x\|g\)"):
        diag = check_fit(fake_fit(model, edit=pile_at_zero))
    assert diag.singular == ("sd(x|g)",)
    assert diag.table.loc["sd(x|g)", "problem"] == "singular"
    assert diag.converged  # singular is not a sampling problem


def test_small_but_clear_sd_is_not_singular(model):
    def small(post):
        post["sd_g"][..., 1] = np.abs(np.random.default_rng(2).normal(0.05, 0.01, (4, 500)))

    assert fake_fit(model, edit=small).diagnostics().singular == ()


@pytest.mark.parametrize(
    ("prior", "scale"),
    [
        (bm.Prior("HalfNormal", sigma=2.0), 2.0),
        (bm.Prior("HalfStudentT", nu=3, sigma=5.0), 5.0),
        (bm.Prior("HalfCauchy", beta=1.5), 1.5),
        (bm.Prior("Exponential", lam=4.0), 0.25),
        (bm.Prior("Gamma", alpha=2.0, beta=4.0), 0.5),
        (bm.Prior("Uniform", lower=0, upper=3), None),
    ],
)
def test_prior_scale(prior, scale):
    assert prior_scale(prior) == scale


# -- real fits -------------------------------------------------------------------------------


def test_bad_fit_warns_once_naming_parameters(sleepstudy):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with pytest.warns(ConvergenceWarning) as record:
        fit = model.fit(draws=20, tune=5, chains=2, random_seed=1)
    convergence = [w for w in record if w.category is ConvergenceWarning]
    assert len(convergence) == 1
    message = str(convergence[0].message)
    assert "sd(Days|Subject)" in message and "fit.diagnostics()" in message
    assert convergence[0].filename == __file__  # points at the user's call
    diag = fit.diagnostics()
    assert not diag.converged
    assert set(diag.low_ess) <= set(fit.summary().index)


def test_good_fit_raises_no_warning():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(20), 5)
    x = rng.normal(size=g.size)
    y = 1.0 + rng.normal(scale=0.6, size=20)[g] + 0.5 * x + rng.normal(size=g.size)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    model = bm.Model("y ~ x + (1 | g)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("error", SingularFitWarning)
        fit = model.fit(draws=500, tune=500, chains=4, random_seed=2)
    assert fit.diagnostics().converged


def test_real_singular_fit(grouped):
    # the slope does not vary by group: its SD piles up at zero, as lme4's isSingular()
    model = bm.Model("y ~ x + (x | g)", grouped)
    with pytest.warns(SingularFitWarning, match=r"sd\(x\|g\)"):
        fit = model.fit(draws=300, tune=300, chains=2, random_seed=4, target_accept=0.95)
    assert "sd(x|g)" in fit.diagnostics().singular
    assert "sd(Intercept|g)" not in fit.diagnostics().singular


def test_summary_r_hat_and_ess_are_arviz_s():
    """The stacked computation of the summary gives ``az.rhat`` and ``az.ess`` exactly."""
    import arviz as az

    from bayesmixed.summary import _convergence

    rng = np.random.default_rng(1)
    draws = {"mixing": rng.normal(size=(4, 300)),
             "stuck": np.cumsum(rng.normal(size=(4, 300)), axis=1),
             "skewed": rng.gamma(2.0, size=(4, 300))}
    for chains in (4, 1):
        part = {k: v[:chains] for k, v in draws.items()}
        ds = xr.Dataset({k: (("chain", "draw"), v) for k, v in part.items()})
        expected = np.array([[float(az.rhat(ds)[k]), float(az.ess(ds, method="bulk")[k]),
                              float(az.ess(ds, method="tail")[k])] for k in part])
        got = np.column_stack(_convergence(part))
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    assert expected[1, 1] < 20  # the random walk is flagged
