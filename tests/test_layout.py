"""One layout names everything: clashes with family parameters, ArviZ dimensions and factor
labels give distinct names and the same answers as the unclashed model (issue 10 bugs 1, 9)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmixed as bm
from bayesmixed.layout import RESERVED_DIMS, Layout, draws_name

K = dict(draws=100, tune=100, chains=2, random_seed=1)


def fit_quietly(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: convergence warnings expected
        return model.fit(**{**K, **kwargs})


def all_names(layout: Layout) -> list[str]:
    dims = {d for ds in layout.dims().values() for d in ds}
    extra = [n for f in layout.factors for n in (f.z, *f.chol, *f.sd_pieces)]
    return [*layout.var_names(), layout.response, *extra, *dims]


# -- names without sampling ------------------------------------------------------------------


def test_plain_names_unchanged(sleepstudy):
    layout = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy).design.layout
    assert layout.var_names() == ["Intercept", "Days", "sd_Subject", "cor_Subject",
                                  "r_Subject", "sigma"]
    names = layout.factor("Subject")
    assert (names.level_dim, names.term_dim, names.term2_dim) == (
        "Subject", "Subject__term", "Subject__term2")
    assert names.chol == ("L_Subject",) and names.z == "z_Subject"
    assert layout.response == "Reaction" and layout.obs_dim == "__obs__"
    assert layout.column_labels == {"Intercept": "Intercept", "Days": "Days"}
    assert Layout.from_design(bm.Model("Reaction ~ Days + (Days | Subject)",
                                       sleepstudy).design) == layout


@pytest.mark.parametrize(
    ("formula", "renames", "family", "expected"),
    [
        # a predictor named as a family parameter gets brms's b_ prefix (bug 1)
        ("Reaction ~ sigma + (1 | Subject)", {"Days": "sigma"}, None, {"sigma": "b_sigma"}),
        ("Reaction ~ nu + (1 | Subject)", {"Days": "nu"}, "t", {"nu": "b_nu"}),
        ("y ~ alpha + (1 | Subject)", {"Days": "alpha"}, "negativebinomial",
         {"alpha": "b_alpha"}),
        # predictors named as ArviZ dimensions (bug 9)
        ("Reaction ~ draw + (1 | Subject)", {"Days": "draw"}, None, {"draw": "b_draw"}),
        ("Reaction ~ chain + (1 | Subject)", {"Days": "chain"}, None, {"chain": "b_chain"}),
        ("Reaction ~ sample + (1 | Subject)", {"Days": "sample"}, None, {"sample": "b_sample"}),
        # predictors named as group variables
        ("Reaction ~ r_Subject + (1 | Subject)", {"Days": "r_Subject"}, None,
         {"r_Subject": "b_r_Subject"}),
        ("Reaction ~ sd_Subject + (1 | Subject)", {"Days": "sd_Subject"}, None,
         {"sd_Subject": "b_sd_Subject"}),
    ],
)
def test_clashing_predictors_get_their_own_variable(sleepstudy, formula, renames, family,
                                                    expected):
    data = sleepstudy.rename(columns=renames).assign(y=sleepstudy["Reaction"].round())
    layout = bm.Model(formula, data, family=family).design.layout
    for term, var in expected.items():
        assert layout.term(term).var == var
        assert layout.term(term).labels == (var,)
    names = all_names(layout)
    assert len(names) == len(set(names)), names
    family_vars = set(layout.family.values())
    assert not family_vars & {n.var for n in layout.common}


@pytest.mark.parametrize(
    ("formula", "renames", "factor", "level_dim"),
    [
        ("Reaction ~ Days + (1 | Days)", {}, "Days", "Days__level"),
        ("Reaction ~ Days + (1 | sample)", {"Subject": "sample"}, "sample", "sample__level"),
        ("Reaction ~ Days + (1 | chain)", {"Subject": "chain"}, "chain", "chain__level"),
        ("Reaction ~ Days + (1 | draw)", {"Subject": "draw"}, "draw", "draw__level"),
        ("Reaction ~ Days + (1 | sigma)", {"Subject": "sigma"}, "sigma", "sigma__level"),
        ("Reaction ~ Days + (1 | Subject)", {}, "Subject", "Subject"),
    ],
)
def test_factor_levels_never_reuse_a_name(sleepstudy, formula, renames, factor, level_dim):
    layout = bm.Model(formula, sleepstudy.rename(columns=renames)).design.layout
    assert layout.factor(factor).level_dim == level_dim
    assert layout.factor(factor).r == f"r_{factor}"
    names = all_names(layout)
    assert len(names) == len(set(names))
    assert set(layout.coords()) >= {level_dim, f"{factor}__term"}


def test_response_named_like_a_family_parameter(sleepstudy):
    data = sleepstudy.rename(columns={"Reaction": "sigma"})
    layout = bm.Model("sigma ~ Days + (1 | Subject)", data).design.layout
    assert layout.response == "y_sigma" and layout.family["sigma"] == "sigma"


def test_names_hdf5_can_store_and_draws_name():
    assert draws_name("draw") == "b_draw" and draws_name("Days") == "Days"
    assert draws_name("a/b") == "a\u2215b"
    assert set(RESERVED_DIMS) == {"chain", "draw", "sample", "__obs__"}


def test_prior_keys_follow_the_summary_labels(sleepstudy):
    data = sleepstudy.rename(columns={"Days": "sigma"})
    model = bm.Model("Reaction ~ sigma + (1 | Subject)", data, priors={
        "b_sigma": bm.Prior("Normal", mu=0, sigma=5),
        "sigma": bm.Prior("HalfNormal", sigma=7),
    })
    assert model.priors.common["sigma"] == bm.Prior("Normal", mu=0, sigma=5)
    assert model.priors.family["sigma"] == bm.Prior("HalfNormal", sigma=7)


# -- fits: same answers as with plain names -----------------------------------------------------


def same_fit(a, b, relabel):
    """``b`` (clashing names) gives the numbers of ``a`` (plain names)."""
    sa, sb = a.summary(), b.summary()
    assert list(sb.index) == [relabel.get(i, i) for i in sa.index]
    np.testing.assert_allclose(sb.to_numpy(), sa.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.fixef().to_numpy(), a.fixef().to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"sampler": "gibbs"}, {"marginalize": False}],
                         ids=["marginal", "gibbs", "nuts"])
def test_bug1_predictor_named_sigma(sleepstudy, kwargs):
    data = sleepstudy.rename(columns={"Days": "sigma"})
    plain = fit_quietly(bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy), **kwargs)
    fit = fit_quietly(bm.Model("Reaction ~ sigma + (1 | Subject)", data), **kwargs)
    same_fit(plain, fit, {"Days": "b_sigma"})
    summary = fit.summary()
    assert summary.loc["b_sigma", "mean"] == pytest.approx(10.47, abs=1.0)  # lme4: 10.467
    assert summary.loc["sigma", "mean"] == pytest.approx(31, abs=3)  # residual SD
    assert list(fit.fixef().index) == ["Intercept", "sigma"]
    # predict uses the slope (the bug used the residual SD: 575 ms at day 9 for 308)
    new = pd.DataFrame({"sigma": [9], "Subject": ["308"]})
    pred = fit.predict(new, random_seed=1).draws.mean().item()
    ref = plain.predict(new.rename(columns={"sigma": "Days"}), random_seed=1).draws.mean()
    assert pred == pytest.approx(float(ref), rel=1e-6)
    assert 330 < pred < 420


def test_family_parameter_names_t_and_negativebinomial(sleepstudy):
    data = sleepstudy.assign(nu=sleepstudy["Days"])
    plain = fit_quietly(bm.Model("Reaction ~ Days + (1 | Subject)", data, family="t"))
    fit = fit_quietly(bm.Model("Reaction ~ nu + (1 | Subject)", data, family="t"))
    same_fit(plain, fit, {"Days": "b_nu"})
    assert {"b_nu", "nu", "sigma"} <= set(fit.summary().index)
    counts = sleepstudy.assign(y=sleepstudy["Reaction"].round().astype(int),
                               alpha=sleepstudy["Days"])
    nb = fit_quietly(bm.Model("y ~ alpha + (1 | Subject)", counts, family="negativebinomial"))
    rows = nb.summary()
    assert {"b_alpha", "alpha"} <= set(rows.index)
    assert rows.loc["b_alpha", "mean"] == pytest.approx(np.log(1 + 10.47 / 298), abs=0.02)
    assert rows.loc["alpha", "mean"] > 20  # dispersion, not the slope


@pytest.mark.parametrize(
    ("formula", "renames", "relabel"),
    [
        ("Reaction ~ draw + (1 | Subject)", {"Days": "draw"}, {"Days": "b_draw"}),
        ("Reaction ~ chain + (chain | Subject)", {"Days": "chain"},
         {"Days": "b_chain", "sd(Days|Subject)": "sd(chain|Subject)",
          "cor(Intercept,Days|Subject)": "cor(Intercept,chain|Subject)"}),
        ("Reaction ~ Days + (1 | sample)", {"Subject": "sample"},
         {"sd(Intercept|Subject)": "sd(Intercept|sample)"}),
        ("Reaction ~ r_Subject + (1 | Subject)", {"Days": "r_Subject"},
         {"Days": "b_r_Subject"}),
    ],
)
def test_bug9_reserved_names_fit_summarise_predict_plot(sleepstudy, formula, renames, relabel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain_formula = "Reaction ~ Days + (Days | Subject)" if "chain |" in formula else (
        "Reaction ~ Days + (1 | Subject)")
    data = sleepstudy.rename(columns=renames)
    plain = fit_quietly(bm.Model(plain_formula, sleepstudy))
    fit = fit_quietly(bm.Model(formula, data))
    same_fit(plain, fit, relabel)
    factor = fit.design.factors[0].label
    pd.testing.assert_frame_equal(
        fit.ranef()[factor].rename(columns={"chain": "Days"}),
        plain.ranef()["Subject"].rename_axis(factor), rtol=1e-6,
    )
    a = fit.predict(data.head(5), random_seed=2).draws
    b = plain.predict(sleepstudy.head(5), random_seed=2).draws
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    assert isinstance(fit.log_likelihood(), xr.DataTree)
    term = fit.design.factors[0].terms[-1]
    for fig in (bm.plot_trace(fit), bm.plot_forest(fit, term, group=factor),
                bm.plot_new_group_pairs(fit, group=factor, random_seed=1), bm.plot_ppc(fit)):
        assert fig.axes
        plt.close(fig)


def test_factor_named_like_a_slope_column(sleepstudy):
    fit = fit_quietly(bm.Model("Reaction ~ Days + (1 | Days)", sleepstudy))
    assert fit.posterior["r_Days"].dims == ("chain", "draw", "Days__level", "Days__term")
    assert fit.posterior["Days"].dims == ("chain", "draw")
    assert list(fit.ranef()["Days"].index) == [str(d) for d in range(10)]
    pred = fit.predict(pd.DataFrame({"Days": [0, 9]}), random_seed=1).summary()
    assert pred["mean"].iloc[1] > pred["mean"].iloc[0]
