"""Distributional regression: a formula for a family parameter (``sigma ~ Days``).

Quick tests check the formula, names, priors, engine choice and predictions against values
computed by hand from the draws; the slow test compares with brms's
``bf(Reaction ~ Days + (Days | Subject), sigma ~ Days)``
(``../shared/reference/WORKFLOW_REFERENCE.md``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmixed as bm
from bayesmixed.engines import choose_engine
from bayesmixed.engines.common import SamplerSettings
from bayesmixed.errors import FormulaError, PredictionError, PriorError, SamplingError
from bayesmixed.formula import parse_formula

MAIN = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def model(sleepstudy):
    return bm.Model(bm.Formula(MAIN, "sigma ~ Days"), sleepstudy)


@pytest.fixture(scope="module")
def group_model(sleepstudy):
    return bm.Model(bm.Formula("Reaction ~ Days + (1 | Subject)",
                               "sigma ~ Days + (1 | Subject)"), sleepstudy)


@pytest.fixture(scope="module")
def prior_fit(group_model):
    """Draws from the priors: a fit-like object whose draws we can check predictions on."""
    return group_model.sample_prior(draws=60, chains=2, random_seed=3)


@pytest.fixture(scope="module")
def short_fit(group_model):
    return group_model.fit(draws=100, tune=200, chains=2, random_seed=5)


# -- formula ---------------------------------------------------------------------------------


def test_formula_parses_parameter_formulas():
    spec = parse_formula(bm.Formula(MAIN, "sigma ~ Days + (1 | Subject)"))
    assert spec.formula == MAIN and spec.common == "Days"
    (par,) = spec.parameters
    assert (par.name, par.common, par.formula) == ("sigma", "Days",
                                                   "sigma ~ Days + (1 | Subject)")
    assert [(b.expr, b.factor) for b in par.blocks] == [("1", ("Subject",))]
    assert spec.variables == ("Subject",)
    assert str(bm.Formula(MAIN, "sigma ~ Days")) == f"{MAIN}; sigma ~ Days"
    assert repr(bm.Formula(MAIN, "sigma ~ Days")) == f"Formula({MAIN!r}, 'sigma ~ Days')"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("sigma ~ Days", "sigma ~ 1"), "more than one formula"),
        (("log(sigma) ~ Days",), "must name a family parameter"),
        ((3,),  "formula strings"),
    ],
)
def test_formula_refuses_bad_parameter_formulas(parts, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(bm.Formula(MAIN, *parts))


def test_unknown_or_mean_parameter_is_refused_before_bambi(sleepstudy):
    with pytest.raises(FormulaError, match=r"'sigm'.*did you mean 'sigma'"):
        bm.Model(bm.Formula(MAIN, "sigm ~ Days"), sleepstudy).design
    with pytest.raises(FormulaError, match="'mu', which the main formula"):
        bm.Model(bm.Formula(MAIN, "mu ~ Days"), sleepstudy).design
    with pytest.raises(FormulaError, match="not a parameter of family 'poisson'"):
        counts = sleepstudy.assign(y=sleepstudy["Reaction"].round().astype(int))
        bm.Model(bm.Formula("y ~ Days", "sigma ~ Days"), counts, family="poisson").design


def test_missing_column_of_parameter_formula_is_named(sleepstudy):
    with pytest.raises(bm.errors.DataError, match=r"'Dayz'.*did you mean 'Days'"):
        bm.Model(bm.Formula(MAIN, "sigma ~ Dayz"), sleepstudy).design


def test_main_term_named_like_a_parameter_term_is_refused(sleepstudy):
    data = sleepstudy.assign(sigma_Days=sleepstudy["Days"] ** 2)
    with pytest.raises(FormulaError, match=r"'sigma_Days'.*rename"):
        bm.Model(bm.Formula("Reaction ~ sigma_Days + (1 | Subject)", "sigma ~ Days"),
                 data).design


# -- design, names, priors -------------------------------------------------------------------


def test_design_and_layout_names(group_model, sleepstudy):
    design = group_model.design
    (par,) = design.parameters
    assert par.link_name == "log" and par.columns == ["sigma_Intercept", "sigma_Days"]
    np.testing.assert_array_equal(par.X[:, 1], sleepstudy["Days"].to_numpy())
    assert par.factors[0].terms == ["sigma_Intercept"]
    layout = design.layout
    assert layout.family == {}  # sigma is no longer one scalar
    names = layout.var_names()
    assert {"sigma_Intercept", "sigma_Days", "sd_Subject__sigma", "r_Subject__sigma"} <= set(
        names)
    dims = layout.dims()
    assert dims["r_Subject__sigma"] == ["Subject", "Subject__sigma__term"]  # levels shared
    assert layout.coords()["Subject__sigma__term"] == ["sigma_Intercept"]
    free = {v.name for v in group_model.build().free_RVs}
    assert {"sigma_Intercept", "sigma_Days", "sd_Subject__sigma", "z_Subject__sigma"} <= free


def test_predictor_called_sigma_keeps_its_name(sleepstudy):
    data = sleepstudy.rename(columns={"Days": "sigma"})
    layout = bm.Model(bm.Formula("Reaction ~ sigma + (1 | Subject)", "sigma ~ sigma"),
                      data).design.layout
    assert layout.term("sigma").var == "sigma"
    assert [n.var for n in layout.parameter("sigma").common] == ["sigma_Intercept",
                                                                  "sigma_sigma"]


def test_default_priors_and_overrides(sleepstudy):
    formula = bm.Formula("Reaction ~ Days + (Days | Subject)",
                         "sigma ~ Days + (Days | Subject)")
    priors = bm.Model(formula, sleepstudy).priors
    assert priors.common["sigma_Intercept"] == bm.Prior("StudentT", nu=3, mu=0, sigma=2.5)
    sd_days = float(np.std(sleepstudy["Days"]))
    assert priors.common["sigma_Days"].params["sigma"] == pytest.approx(2.5 / sd_days)
    assert priors.sd["sd(sigma_Intercept|Subject)"] == bm.Prior("HalfNormal", sigma=2.5)
    assert set(priors.eta) == {"Subject", "sigma|Subject"}
    wide = bm.Prior("HalfNormal", sigma=100)
    narrow = bm.Prior("HalfNormal", sigma=0.5)
    changed = bm.Model(formula, sleepstudy, priors={
        "sd(Subject)": wide, "sd(sigma|Subject)": narrow, "cor(sigma|Subject)": 3,
        "sigma_Days": bm.Prior("Normal", mu=0, sigma=0.1),
    }).priors
    assert changed.sd["sd(Intercept|Subject)"] == wide  # main SDs only
    assert changed.sd["sd(sigma_Intercept|Subject)"] == narrow
    assert changed.sd["sd(sigma_Days|Subject)"] == narrow
    assert changed.eta == {"Subject": 1.0, "sigma|Subject": 3.0}
    assert changed.common["sigma_Days"] == bm.Prior("Normal", mu=0, sigma=0.1)
    with pytest.raises(PriorError, match="sd\\(sigma_Intercept\\|Subject\\)"):
        bm.Model(formula, sleepstudy,
                 priors={"sd(sigma_Intercept|Subject)": bm.Prior("Normal", sigma=1)}).priors


# -- engines ---------------------------------------------------------------------------------


def test_engine_chooser_sends_distributional_models_to_full_nuts(model):
    settings = SamplerSettings(draws=10, tune=10, chains=1, sampler="numpyro")
    chosen = choose_engine(model.design, model.priors, settings)
    assert chosen.engine == "nuts"
    assert "no exact marginal form" in chosen.engine_reason
    assert "'sigma ~ Days'" in chosen.engine_reason
    with pytest.raises(SamplingError, match=r"marginalize=True is not possible.*sigma ~ Days"):
        choose_engine(model.design, model.priors, settings, marginalize=True)
    with pytest.raises(SamplingError, match=r"gibbs.*sigma ~ Days"):
        choose_engine(model.design, model.priors, settings, sampler="gibbs")


def test_glmm_engine_refuses_a_formula_for_alpha(sleepstudy):
    counts = sleepstudy.assign(y=sleepstudy["Reaction"].round().astype(int))
    nb = bm.Model(bm.Formula("y ~ Days + (1 | Subject)", "alpha ~ Days"), counts,
                  family="negativebinomial")
    settings = SamplerSettings(draws=10, tune=10, chains=1, sampler="numpyro")
    chosen = choose_engine(nb.design, nb.priors, settings)
    assert chosen.engine == "nuts" and "alpha ~ Days" in chosen.engine_reason


# -- predictions on known draws --------------------------------------------------------------


def _draws(fit, name):
    return fit.posterior[name].values


def test_predict_sigma_equals_exp_of_its_linear_predictor(prior_fit, sleepstudy):
    new = pd.DataFrame({"Days": [0.0, 4.0, 9.0], "Subject": ["308", "372", "308"]},
                       index=["a", "b", "c"])
    a, b = _draws(prior_fit, "sigma_Intercept"), _draws(prior_fit, "sigma_Days")
    r = prior_fit.posterior["r_Subject__sigma"].sel(Subject__sigma__term="sigma_Intercept")
    subj = r.sel(Subject=["308", "372", "308"]).values
    expected = a[..., None] + b[..., None] * new["Days"].to_numpy() + subj
    linear = prior_fit.predict(new, kind="linear", dpar="sigma")
    np.testing.assert_allclose(linear.draws.values, expected, rtol=1e-10)
    sigma = prior_fit.predict(new, dpar="sigma")
    np.testing.assert_allclose(sigma.draws.values, np.exp(expected), rtol=1e-10)
    assert sigma.draws.name == "sigma" and list(sigma.summary().index) == ["a", "b", "c"]
    population = prior_fit.predict(new, dpar="sigma", include_groups=False)
    np.testing.assert_allclose(population.draws.values,
                               np.exp(a[..., None] + b[..., None] * new["Days"].to_numpy()))
    # "mu" (the mean parameter) is the default
    np.testing.assert_allclose(prior_fit.predict(new, dpar="mu").draws.values,
                               prior_fit.predict(new).draws.values)


def test_log_likelihood_uses_each_rows_sigma(prior_fit, group_model):
    design = group_model.design
    y = design.common.response
    mu = prior_fit.predict(kind="mean").draws.values
    sigma = prior_fit.predict(dpar="sigma").draws.values
    loglik = prior_fit.log_likelihood()["log_likelihood"]["Reaction"].values
    np.testing.assert_allclose(loglik, stats.norm.logpdf(y, mu, sigma), rtol=1e-8)


def test_response_draws_spread_with_sigma(prior_fit):
    new = pd.DataFrame({"Days": [0.0, 9.0], "Subject": "308"})
    resp = prior_fit.predict(new, kind="response", random_seed=1).draws.values
    mu = prior_fit.predict(new).draws.values
    sigma = prior_fit.predict(new, dpar="sigma").draws.values
    z = (resp - mu) / sigma
    assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.2


def test_new_groups_of_the_sigma_formula(prior_fit):
    new = pd.DataFrame({"Days": [1.0], "Subject": ["someone new"]})
    with pytest.raises(PredictionError, match=r"'someone new'.*new_groups"):
        prior_fit.predict(new, dpar="sigma")
    sigma = prior_fit.predict(new, dpar="sigma", new_groups="gaussian", random_seed=2)
    assert sigma.draws.shape == (2, 60, 1) and np.all(sigma.draws.values > 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dpar": "nu"}, "dpar='nu' is not a parameter.*'mu', 'sigma'"),
        ({"dpar": "sigma", "kind": "response"}, "not new responses"),
    ],
)
def test_predict_dpar_errors(prior_fit, kwargs, message):
    with pytest.raises(PredictionError, match=message):
        prior_fit.predict(**kwargs)


def test_dpar_of_a_scalar_parameter(sleep_fit):
    sigma = sleep_fit.predict(dpar="sigma").draws.values
    assert sigma.shape == (2, 200, 180)
    np.testing.assert_allclose(sigma[..., 7], sleep_fit.posterior["sigma"].values)
    with pytest.raises(PredictionError, match="no formula in this model"):
        sleep_fit.predict(dpar="sigma", kind="linear")


# -- a short fit: summary, ranef, save / load ------------------------------------------------


def test_short_fit_names_engine_and_summary(short_fit):
    assert short_fit.settings.engine == "nuts"
    assert "sigma ~ Days + (1 | Subject)" in short_fit.settings.engine_reason
    table = short_fit.summary()
    assert list(table.index) == [
        "Intercept", "Days", "sigma_Intercept", "sigma_Days", "sd(Intercept|Subject)",
        "sd(sigma_Intercept|Subject)",
    ]
    assert 2.0 < table.loc["sigma_Intercept", "mean"] < 3.8  # log of a residual SD of ~25
    text = repr(short_fit)
    assert "Links: mu = identity; sigma = log" in text
    assert "sd(sigma_Intercept|Subject)" in text.split("Population-Level")[0]
    ranef = short_fit.ranef()["Subject"]
    assert list(ranef.columns.get_level_values("term").unique()) == ["Intercept",
                                                                      "sigma_Intercept"]
    coef = short_fit.coef()["Subject"][("sigma_Intercept", "mean")]
    np.testing.assert_allclose(
        coef.to_numpy(),
        ranef[("sigma_Intercept", "mean")].to_numpy() + table.loc["sigma_Intercept", "mean"],
    )


def test_save_and_load_round_trip(short_fit, tmp_path):
    path = short_fit.save(tmp_path / "sigma.bmfit")
    same = bm.load(path)
    assert isinstance(same.model.formula, bm.Formula)
    assert same.model.formula.parameters == ("sigma ~ Days + (1 | Subject)",)
    pd.testing.assert_frame_equal(same.summary(), short_fit.summary())
    assert same.model.priors.parameter_sd == {"sd(sigma_Intercept|Subject)": "sigma"}
    new = pd.DataFrame({"Days": [2.0, 8.0], "Subject": ["309", "new"]})
    a = short_fit.predict(new, dpar="sigma", new_groups="gaussian", random_seed=4)
    b = same.predict(new, dpar="sigma", new_groups="gaussian", random_seed=4)
    np.testing.assert_array_equal(a.draws.values, b.draws.values)


# -- brms ------------------------------------------------------------------------------------

# brms 2.18, 4 x (1000 + 1000), seed 1 (../shared/reference/WORKFLOW_REFERENCE.md)
BRMS = {
    "Intercept": (252.73, 7.28),
    "Days": (10.07, 1.78),
    "sigma_Intercept": (2.8157, 0.1328),
    "sigma_Days": (0.0854, 0.0251),
    "sd(Intercept|Subject)": (28.94, 6.44),
    "sd(Days|Subject)": (6.91, 1.60),
    "cor(Intercept,Days|Subject)": (-0.028, 0.266),
}


@pytest.mark.slow
def test_distributional_sleepstudy_matches_brms(model):
    fit = model.fit(draws=1000, tune=1000, chains=4, random_seed=1)
    table = fit.summary()
    for label, (mean, sd) in BRMS.items():
        assert table.loc[label, "mean"] == pytest.approx(mean, abs=0.3 * sd), label
        assert table.loc[label, "sd"] == pytest.approx(sd, rel=0.15), label
