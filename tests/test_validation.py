"""Bad input gets a clear error of its stage before PyMC or JAX see it (no sampling here).

Each case checks the error class and the words of the message that name the column, term
or argument and say what to do. Cases that already live next to their module:
tests/test_formula.py (16 formula errors), tests/test_design.py (missing and misspelt
columns, unknown family, clashing blocks, one-level factor, missing values, data type,
empty data, five prior errors, prior parameters) and tests/test_fit.py (seven sampler
options).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.errors import (
    DataError,
    FamilyError,
    FormulaError,
    IdentifiabilityWarning,
    PriorError,
    SamplingError,
)


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    n = 60
    g = np.repeat([f"g{i}" for i in range(6)], n // 6)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": x,
            "g": g,
            "k": rng.poisson(3, size=n),
            "n": 8,
            "b01": rng.integers(0, 2, size=n),
            "pos": rng.gamma(2.0, size=n),
            "u": rng.uniform(0.05, 0.95, size=n),
            "word": np.tile(["no", "yes"], n // 2),
            "colour": np.tile(["red", "green", "blue"], n // 3),
            "C": np.tile(["a", "b", "c"], n // 3),
            "xg": pd.Series(x).groupby(g).transform("mean").to_numpy(),
            "const": 3.0,
            "obs": [f"o{i}" for i in range(n)],
            "big": np.arange(n) % 30,
        }
    )


def design(formula, data, **kw):
    return bm.Model(formula, data, **kw).design


def priors(formula, data, **kw):
    return bm.Model(formula, data, **kw).priors


# -- formula ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        ("y ~ x + (1 + | g)", "Empty term"),
        ("y ~ x + (x | g:)", "not a column name"),
        ("cbind(k, n - k, 1) ~ x + (1 | g)", "exactly two arguments"),
        (["y ~ x"], "must be a string"),
    ],
)
def test_formula_errors(toy, formula, words):
    with pytest.raises(FormulaError, match=words):
        bm.Model(formula, toy)


# -- data ------------------------------------------------------------------------------------


def with_values(data, **columns):
    out = data.copy()
    for name, values in columns.items():
        out[name] = values
    return out


@pytest.mark.parametrize(
    ("case", "formula", "kw", "words"),
    [
        ("text response, gaussian", "word ~ x + (1 | g)", {}, "'word' holds text.*needs numbers"),
        ("text response, poisson", "word ~ x + (1 | g)", {"family": "poisson"},
         "holds text.*family 'poisson'"),
        ("two-level text, bernoulli", "word ~ x + (1 | g)", {"family": "bernoulli"},
         r"say which one is a success: write 'word\[yes\] ~"),
        ("three-level text, bernoulli", "colour ~ x + (1 | g)", {"family": "bernoulli"},
         "has 3 levels"),
        ("constant response", "const ~ x + (1 | g)", {}, "'const' is constant"),
        ("constant predictor", "y ~ const + (1 | g)", {}, "Column 'const' is constant.*drop it"),
        ("cbind with a misspelt column", "cbind(k, m - k) ~ x + (1 | g)", {},
         "'m'.*not in the data"),
        ("cbind with non-numeric counts", "cbind(word, k) ~ x + (1 | g)", {}, "numeric counts"),
        ("cbind with fractions", "cbind(pos, k) ~ x + (1 | g)", {}, "whole-number counts"),
        ("cbind with more successes than trials", "cbind(k, 2 - k) ~ x + (1 | g)", {},
         "negative successes or failures.*more successes than trials"),
    ],
)
def test_data_errors(toy, case, formula, kw, words):
    with pytest.raises(DataError, match=words):
        design(formula, toy, **kw)


def test_infinite_values_are_refused(toy):
    data = with_values(toy, x=toy["x"].where(toy.index != 4, np.inf))
    with pytest.raises(DataError, match=r"Column 'x' has 1 infinite value\(s\) \(rows 4\)"):
        design("y ~ x + (1 | g)", data)


def test_transformed_response_with_undefined_values(toy):
    with pytest.raises(DataError, match="infinite or undefined"):
        design("np.log(y) ~ x + (1 | g)", toy)


def test_all_rows_missing(toy):
    data = with_values(toy, x=np.nan)
    with pytest.warns(UserWarning, match="Dropped 60 of 60 rows"):
        with pytest.raises(DataError, match="No rows left"):
            design("y ~ x + (1 | g)", data)


def test_duplicate_columns(toy):
    data = pd.concat([toy[["y", "x"]], toy[["x", "g"]]], axis=1)
    with pytest.raises(DataError, match="duplicate column names: x"):
        bm.Model("y ~ x + (1 | g)", data)


@pytest.mark.parametrize("data", [np.zeros((3, 2)), pd.Series([1.0, 2.0]), None])
def test_data_must_be_a_dataframe(data):
    with pytest.raises(DataError, match="data must be a pandas DataFrame"):
        bm.Model("y ~ x", data)


def test_bernoulli_text_response_with_explicit_success(toy):
    response = design("word[yes] ~ x + (1 | g)", toy, family="bernoulli").common.response
    np.testing.assert_array_equal(response, (toy["word"] == "yes").astype(int))


# -- family, link and the response's support -------------------------------------------------


@pytest.mark.parametrize(
    ("case", "formula", "kw", "words"),
    [
        ("negative counts, poisson", "y ~ x + (1 | g)", {"family": "poisson"},
         "negative values.*family 'poisson' models counts"),
        ("fractions, poisson", "pos ~ x + (1 | g)", {"family": "poisson"},
         "non-integer values.*whole counts"),
        ("negative counts, negativebinomial", "y ~ x + (1 | g)",
         {"family": "negativebinomial"}, "negative values.*'negativebinomial'"),
        ("counts, bernoulli", "k ~ x + (1 | g)", {"family": "bernoulli"},
         "values other than 0 and 1"),
        ("successes above trials", "p(k, b01) ~ x + (1 | g)", {"family": "binomial"},
         "more successes than trials"),
        ("binomial without trials", "b01 ~ x + (1 | g)", {"family": "binomial"},
         "needs successes and trials.*family='bernoulli'"),
        ("non-positive, gamma", "y ~ x + (1 | g)", {"family": "gamma"},
         "values <= 0.*needs positive values"),
        ("outside (0, 1), beta", "pos ~ x + (1 | g)", {"family": "beta"},
         r"outside \(0, 1\)"),
        ("sqrt link, bernoulli", "b01 ~ x + (1 | g)", {"family": "bernoulli", "link": "sqrt"},
         "link='sqrt' is not available.*'logit', 'probit'"),
        ("unknown link", "y ~ x + (1 | g)", {"link": "logarithm"},
         "link='logarithm' is not available.*'identity', 'log'"),
        ("link of the wrong type", "y ~ x + (1 | g)", {"link": 3}, "link must be a link name"),
        ("link dict with a bad value", "y ~ x + (1 | g)", {"link": {"mu": 2}},
         "link must map parameter names"),
        ("multinomial family", "colour ~ x + (1 | g)", {"family": "multinomial"},
         "'multinomial' is not supported"),
        ("misspelt family", "y ~ x + (1 | g)", {"family": "poison"},
         "Unknown family 'poison' \\(did you mean 'poisson'"),
        ("family of the wrong type", "y ~ x + (1 | g)", {"family": 1}, "family must be"),
        ("cbind with poisson", "cbind(k, n - k) ~ x + (1 | g)", {"family": "poisson"},
         "needs family='binomial'"),
    ],
)
def test_family_errors(toy, case, formula, kw, words):
    with pytest.raises(FamilyError, match=words):
        design(formula, toy, **kw)


def test_valid_family_inputs_pass(toy):
    assert design("k ~ x + (1 | g)", toy, family="poisson").family_name == "poisson"
    assert design("b01 ~ x + (1 | g)", toy, family="bernoulli", link="probit").common.link_name \
        == "probit"
    assert design("p(k, n) ~ x + (1 | g)", toy, family="binomial").family_name == "binomial"
    assert design("u ~ x + (1 | g)", toy, family="beta").family_name == "beta"
    assert design("pos ~ x + (1 | g)", toy, family="gamma", link={"mu": "log"}).family_name \
        == "gamma"


# -- priors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prior", "words"),
    [
        ({"x": bm.Prior("Normall", mu=0, sigma=1)}, "Unknown distribution 'Normall'.*'Normal'"),
        ({"x": bm.Prior("Normal", mean=0, sd=1)}, "Normal has no parameter 'mean', 'sd'"),
        ({"x": bm.Prior("StudentT", mu=0, sigma=1)}, "needs the parameter.*nu"),
        ({"sd(x|g)": bm.Prior("Normal", mu=0, sigma=1)},
         "sd\\(x\\|g\\) is a standard deviation.*positive values"),
        ({"sigma": bm.Prior("Normal", mu=0, sigma=1)}, "'sigma' is positive"),
        ({"C": bm.Prior("Normal", mu=0, sigma=[1, 2, 3])},
         "gives sigma 3 values, but the term has 2 column"),
        ({"cor(g)": bm.Prior("Normal", mu=0, sigma=1)}, "must be Prior\\('LKJ'"),
        ({"cor(g)": -1}, "must be positive"),
        ({"sd(h)": bm.Prior("HalfNormal", sigma=1)}, "no group SD 'sd\\(h\\)'"),
    ],
)
def test_prior_errors(toy, prior, words):
    with pytest.raises(PriorError, match=words):
        priors("y ~ x + C + (x | g)", toy, priors=prior)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: bm.Prior(3), "named by a string"),
        (lambda: bm.Prior("Normal", mu=np.nan), "must be finite"),
        (lambda: bm.Prior("Exponential", lam=0), "lam=0 must be positive"),
        (lambda: bm.Prior("LKJ", eta=-2), "eta=-2 must be positive"),
    ],
)
def test_prior_construction_errors(make, words):
    with pytest.raises(PriorError, match=words):
        make()


def test_priors_must_be_a_mapping(toy):
    with pytest.raises(PriorError, match="priors must be a dict"):
        bm.Model("y ~ x + (1 | g)", toy, priors=[bm.Prior("Normal")])


# -- sampler options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"chain_method": "threads"}, "chain_method='threads'"),
        ({"random_seed": -3}, "random_seed=-3 must be a non-negative integer"),
        ({"draws": True}, "draws=True must be a positive integer"),
        ({"tune": -1}, "tune=-1 must be a non-negative integer"),
        ({"target_accept": 0}, "between 0 and 1"),
    ],
)
def test_sampler_errors(toy, kw, words):
    with pytest.raises(SamplingError, match=words):
        bm.Model("y ~ x + (1 | g)", toy).fit(**kw)


# -- group terms the data cannot identify (warnings) -----------------------------------------


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        ("y ~ xg + (xg | g)", r"sd\(xg\|g\): 'xg' does not vary within any level of 'g'"),
        ("y ~ C + (C | colour)", "'colour' has 3 levels but 3 group columns"),
        ("y ~ x + (1 | obs)", "a level for every observation"),
        ("y ~ x + (x | big)", r"30 levels x 2 columns = 60\).*observations \(60\)"),
    ],
)
def test_identifiability_warnings(toy, formula, words):
    with pytest.warns(IdentifiabilityWarning, match=words) as record:
        design(formula, toy)
    # the warning points at this file (the user's call), not inside bayesmixed
    assert any(w.filename == __file__ for w in record)


def test_identifiable_models_do_not_warn(toy):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        design("y ~ x + (x | g)", toy)
        design("k ~ x + (1 | obs)", toy, family="poisson")  # observation-level effects


# -- the user's data are never modified ------------------------------------------------------


def test_validation_never_mutates_the_data(toy):
    data = with_values(toy, x=toy["x"].where(toy.index != 2))
    data["g"] = data["g"].astype("category")
    before = data.copy(deep=True)
    with pytest.warns(UserWarning, match="Dropped 1 of 60 rows"):
        model = bm.Model("y ~ x + C + (x | g)", data)
        model.priors
    with pytest.raises(FamilyError):
        design("y ~ x + (1 | g)", data, family="poisson")
    pd.testing.assert_frame_equal(data, before)
