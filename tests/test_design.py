"""Formula + data -> design: block columns, correlated sub-blocks, levels, priors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.errors import DataError, FamilyError, FormulaError, PriorError


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    n = 120
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "C": np.tile(["a", "b", "c"], n // 3),
            "g": np.repeat([f"g{i}" for i in range(12)], n // 12),
            "h": np.tile([f"h{i}" for i in range(5)], n // 5),
            "a": np.repeat(["A1", "A2", "A3"], n // 3),
            "b": np.tile(["B1", "B2", "B3", "B4"], n // 4),
            "k": rng.poisson(3, size=n),
        }
    )


def factors(formula, data, **kw):
    design = bm.Model(formula, data, **kw).design
    return {f.label: (f.terms, f.subblocks, len(f.levels)) for f in design.factors}


def test_correlated_slope(toy):
    assert factors("y ~ x + (x | g)", toy) == {"g": (["Intercept", "x"], [([0, 1], True)], 12)}


def test_uncorrelated_slope(toy):
    assert factors("y ~ x + (x || g)", toy) == {
        "g": (["Intercept", "x"], [([0], False), ([1], False)], 12)
    }


def test_intercept_only_and_no_intercept(toy):
    assert factors("y ~ (1 | g)", toy) == {"g": (["Intercept"], [([0], True)], 12)}
    assert factors("y ~ x + (0 + x | g)", toy) == {"g": (["x"], [([0], True)], 12)}
    assert factors("y ~ x + (-1 + x | g)", toy) == {"g": (["x"], [([0], True)], 12)}


def test_nested_equals_explicit_interaction(toy):
    nested = factors("y ~ (1 | a/b)", toy)
    explicit = factors("y ~ (1 | a) + (1 | a:b)", toy)
    assert nested == explicit == {
        "a": (["Intercept"], [([0], True)], 3),
        "a:b": (["Intercept"], [([0], True)], 12),
    }
    design = bm.Model("y ~ (1 | a/b)", toy).design
    assert "A1:B1" in design.factor("a:b").levels


def test_crossed(toy):
    assert set(factors("y ~ (1 | g) + (1 | h)", toy)) == {"g", "h"}


def test_two_blocks_on_one_factor_are_independent(toy):
    assert factors("y ~ x + (1 | g) + (0 + x | g)", toy) == {
        "g": (["Intercept", "x"], [([0], True), ([1], True)], 12)
    }
    model = bm.Model("y ~ x + (1 | g) + (0 + x | g)", toy)
    assert model.design.factors[0].correlated_blocks == []
    assert "g" not in model.priors.eta


def test_categorical_slopes_give_k_by_k(toy):
    (terms, sub, _), = factors("y ~ C + (C | g)", toy).values()
    assert len(terms) == 3 and terms[0] == "Intercept"
    assert sub == [([0, 1, 2], True)]
    (terms, sub, _), = factors("y ~ (0 + C | g)", toy).values()
    assert len(terms) == 3 and "Intercept" not in terms


def test_interaction_inside_bar(toy):
    (terms, sub, _), = factors("y ~ x*z + (x*z | g)", toy).values()
    assert terms == ["Intercept", "x", "z", "x:z"]
    assert sub == [([0, 1, 2, 3], True)]


def test_block_columns_and_index(toy):
    design = bm.Model("y ~ x + (x | g)", toy).design
    fac = design.factors[0]
    assert fac.X.shape == (len(toy), 2)
    np.testing.assert_allclose(fac.X[:, 1], toy["x"])
    assert [fac.levels[i] for i in fac.index[:3]] == list(toy["g"][:3])


def test_cbind_binomial():
    cbpp = bm.datasets.cbpp()
    design = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp).design
    assert design.family_name == "binomial"
    np.testing.assert_array_equal(design.common.response[:, 0], cbpp["incidence"])
    np.testing.assert_array_equal(design.common.response[:, 1], cbpp["size"])
    assert design.common.columns[0] == "Intercept" and len(design.common.columns) == 4
    with pytest.raises(FamilyError, match="binomial"):
        bm.Model("cbind(incidence, size) ~ 1 + (1|herd)", cbpp, family="poisson").design


def test_common_side_features_keep_working(toy):
    design = bm.Model("y ~ C + np.exp(x) + x:z + (1 | g)", toy).design
    assert design.common.columns[:3] == ["Intercept", "C[b]", "C[c]"]
    assert "np.exp(x)" in design.common.columns and "x:z" in design.common.columns


def test_user_dataframe_is_not_modified(toy):
    before = toy.copy(deep=True)
    model = bm.Model("y ~ x + (x | g)", toy)
    model.build()
    pd.testing.assert_frame_equal(toy, before)


def test_default_priors_and_overrides(toy):
    model = bm.Model("y ~ x + (x | g)", toy)
    pri = model.priors
    assert set(pri.common) == {"Intercept", "x"}
    assert set(pri.sd) == {"sd(Intercept|g)", "sd(x|g)"}
    assert pri.eta == {"g": 1.0}
    assert pri.family["sigma"].name == "HalfStudentT"
    assert pri.sd["sd(x|g)"].name == "HalfNormal"
    # the slope SD scale follows Bambi's slope scale, 2.5 sd(y)/sd(x)
    expected = 2.5 * np.std(toy["y"]) / np.std(toy["x"])
    assert pri.sd["sd(x|g)"].params["sigma"] == pytest.approx(expected)
    custom = bm.Model(
        "y ~ x + (x | g)",
        toy,
        priors={
            "x": bm.Prior("Normal", mu=0, sigma=1),
            "sd(g)": bm.Prior("HalfNormal", sigma=2),
            "sd(x|g)": bm.Prior("Exponential", lam=1),
            "cor(g)": 2,
            "sigma": bm.Prior("HalfNormal", sigma=3),
        },
    ).priors
    assert custom.common["x"] == bm.Prior("Normal", mu=0, sigma=1)
    assert custom.sd["sd(Intercept|g)"] == bm.Prior("HalfNormal", sigma=2)
    assert custom.sd["sd(x|g)"] == bm.Prior("Exponential", lam=1)
    assert custom.eta == {"g": 2.0}
    assert custom.family["sigma"] == bm.Prior("HalfNormal", sigma=3)
    text = repr(bm.Model("y ~ x + (x | g)", toy, priors={"cor(g)": 2}))
    assert "cor(g) ~ LKJ(eta=2)" in text and "sd(x|g) ~ HalfNormal" in text


@pytest.mark.parametrize(
    ("priors", "words"),
    [
        ({"w": bm.Prior("Normal", mu=0, sigma=1)}, "no term or parameter 'w'"),
        ({"sd(w|g)": bm.Prior("HalfNormal", sigma=1)}, "no group SD"),
        ({"cor(h)": 2}, "No correlated group block on 'h'"),
        ({"cor(g)": 0}, "positive"),
        ({"x": 3}, "must be a bayesmixed.Prior"),
    ],
)
def test_prior_errors(toy, priors, words):
    with pytest.raises(PriorError, match=words):
        bm.Model("y ~ x + (x | g)", toy, priors=priors).priors


def test_prior_parameter_validation():
    with pytest.raises(PriorError, match="sigma=-1 must be positive"):
        bm.Prior("HalfNormal", sigma=-1)


def test_pymc_model_is_open(toy):
    model = bm.Model("y ~ x + (x | g) + (1 | h)", toy).build()
    names = set(model.named_vars)
    assert {"Intercept", "x", "sd_g", "cor_g", "L_g", "z_g", "r_g", "sd_h", "r_h", "sigma",
            "y"} <= names
    assert list(model.coords["g"]) == [f"g{i}" for i in range(12)] or len(model.coords["g"]) == 12
    assert list(model.coords["g__term"]) == ["Intercept", "x"]
    assert model.named_vars_to_dims["r_g"] == ("g", "g__term")


@pytest.mark.parametrize(
    ("formula", "kw", "err", "words"),
    [
        ("y ~ w + (1 | g)", {}, DataError, "'w'"),
        ("y ~ x + (1 | gg)", {}, DataError, "did you mean 'g'"),
        ("y ~ x + (1 | g)", {"family": "gausian"}, FamilyError, "Unknown family"),
        ("y ~ x + (x | g) + (0 + x | g)", {}, FormulaError, "more than one group block"),
    ],
)
def test_design_errors(toy, formula, kw, err, words):
    with pytest.raises(err, match=words):
        bm.Model(formula, toy, **kw).design


def test_one_level_factor_is_refused(toy):
    with pytest.raises(DataError, match="only 1 level"):
        bm.Model("y ~ x + (1 | g)", toy.assign(g="same")).design


def test_missing_values_dropped_with_warning(toy):
    data = toy.copy()
    data.loc[[3, 7], "x"] = np.nan
    with pytest.warns(UserWarning, match="Dropped 2 of 120 rows"):
        design = bm.Model("y ~ x + (1 | g)", data).design
    assert design.n == 118
    with pytest.raises(DataError, match="Missing values in column"):
        bm.Model("y ~ x + (1 | g)", data, dropna=False).design


def test_data_type_errors():
    with pytest.raises(DataError, match="pandas DataFrame"):
        bm.Model("y ~ x", {"y": [1, 2]})
    with pytest.raises(DataError, match="empty"):
        bm.Model("y ~ x", pd.DataFrame({"y": [], "x": []}))
