"""Refits on new data (update) and K-fold cross-validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.errors import DataError, FitError, SamplingError
from bayesmixed.refit import kfold_split


@pytest.fixture(scope="module")
def boot(sleepstudy):
    return sleepstudy.sample(len(sleepstudy), replace=True, random_state=7)


def test_update_equals_a_fresh_fit_with_the_same_seed(sleep_fit, boot):
    before = boot.copy()
    refit = sleep_fit.update(data=boot, random_seed=5)
    fresh = bm.Model("Reaction ~ Days + (Days | Subject)", boot).fit(
        draws=200, tune=300, chains=2, random_seed=5
    )
    assert refit is not sleep_fit and refit.design.n == len(boot)
    for name in ("Intercept", "Days", "sd_Subject", "cor_Subject", "sigma", "r_Subject"):
        np.testing.assert_array_equal(refit.posterior[name].values, fresh.posterior[name].values)
    assert refit.settings == fresh.settings
    assert refit.settings.engine == sleep_fit.settings.engine == "marginal"
    assert boot.equals(before)  # the new data are not modified
    # the original fit is untouched and differs
    assert sleep_fit.design.n == 180
    assert not np.allclose(sleep_fit.posterior["Days"].values, refit.posterior["Days"].values)


def test_update_keeps_priors_and_changes_options(sleepstudy):
    model = bm.Model(
        "Reaction ~ Days", sleepstudy, priors={"Days": bm.Prior("Normal", mu=0, sigma=1)}
    )
    fit = model.fit(draws=100, tune=100, chains=1, random_seed=1)
    refit = fit.update(sleepstudy.iloc[:90], random_seed=2, draws=50)
    assert refit.model.priors.common["Days"].params["sigma"] == 1
    assert refit.posterior.sizes["draw"] == 50 and refit.posterior.sizes["chain"] == 1
    assert (refit.settings.engine, refit.settings.engine_reason) == (
        fit.settings.engine, fit.settings.engine_reason)
    same = fit.update(random_seed=1)  # the fit's own data and seed: the same draws
    np.testing.assert_array_equal(same.posterior["Days"], fit.posterior["Days"])
    with pytest.raises(SamplingError, match="'formula'"):
        fit.update(formula="Reaction ~ 1")


def test_update_keeps_a_full_model_fit_full(sleepstudy):
    """A fit asked for with marginalize=False is refitted by full NUTS, not marginalised."""
    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    fit = model.fit(draws=30, tune=30, chains=1, random_seed=1, marginalize=False)
    refit = fit.update(sleepstudy.iloc[:120], random_seed=2)
    assert fit.settings.engine == refit.settings.engine == "glmm"
    assert refit.settings.engine_reason.startswith("marginalize=False")
    assert refit.settings.draws == 30 and refit.posterior.sizes["Subject"] == 12


def test_update_refuses_prior_draws(sleepstudy):
    prior = bm.Model("Reaction ~ Days", sleepstudy).sample_prior(draws=10, random_seed=1)
    with pytest.raises(FitError, match="prior draws"):
        prior.update(sleepstudy)


def test_kfold_split_balanced_and_grouped():
    folds = kfold_split(180, 10, random_seed=1)
    assert np.bincount(folds)[1:].tolist() == [18] * 10
    np.testing.assert_array_equal(folds, kfold_split(180, 10, random_seed=1))
    assert not np.array_equal(folds, kfold_split(180, 10, random_seed=2))
    groups = np.repeat(np.arange(18), 10).astype(str)
    folds = kfold_split(180, 6, groups=groups, random_seed=1)
    for g in np.unique(groups):  # a group never straddles folds
        assert len(np.unique(folds[groups == g])) == 1
    assert np.bincount(folds)[1:].tolist() == [30] * 6  # 3 groups per fold
    with pytest.raises(DataError, match="at least 20 groups"):
        kfold_split(180, 20, groups=groups)


def test_kfold_close_to_loo(sleep_fit):
    cv = sleep_fit.kfold(k=5, random_seed=3)
    assert cv.k == 5 and len(cv.fits) == 5
    assert cv.pointwise.shape == (180,) and np.isfinite(cv.pointwise).all()
    assert cv.elpd == pytest.approx(cv.pointwise.sum())
    assert [f.design.n for f in cv.fits] == [144] * 5
    loo = sleep_fit.loo()
    assert abs(cv.elpd - loo.elpd) < 2 * loo.se
    assert 10 < cv.p < 80  # about the 2 x 18 group effects + 4 hyper-parameters
    table = cv.summary()
    assert list(table.index) == ["elpd_kfold", "p_kfold", "kfoldic"]
    assert table.loc["kfoldic", "Estimate"] == pytest.approx(-2 * cv.elpd)
    assert cv.se == pytest.approx(np.sqrt(180 * np.var(cv.pointwise, ddof=1)))


def test_kfold_grouped_predicts_new_subjects_worse(sleep_fit):
    cv = sleep_fit.kfold(k=3, group="Subject", random_seed=3, save_fits=False)
    assert cv.fits == []
    subjects = sleep_fit.design.data["Subject"].to_numpy()
    for s in np.unique(subjects):
        assert len(np.unique(cv.folds[subjects == s])) == 1
    rows = sleep_fit.kfold(k=3, random_seed=3, save_fits=False)
    assert cv.elpd < rows.elpd - 2 * rows.se  # new subjects are much harder to predict


def test_kfold_bad_arguments(sleep_fit):
    with pytest.raises(DataError, match="k=1"):
        sleep_fit.kfold(k=1)
    with pytest.raises(DataError, match="'Subjet'"):
        sleep_fit.kfold(k=3, group="Subjet")
    with pytest.raises(DataError, match="folds must"):
        sleep_fit.kfold(k=3, folds=np.ones(10, dtype=int))
    with pytest.raises(DataError, match="new_groups"):
        sleep_fit.kfold(k=3, new_groups="error")


def test_padded_levels_leave_the_marginal_density_unchanged(sleepstudy):
    """Empty levels (the compile buckets) add exactly zero to the log density."""
    import dataclasses

    from bayesmixed.engines.marginal import level_bucket, marginal_loglik, pad_levels, prepare

    assert [level_bucket(n) for n in (1, 12, 18, 33, 257, 2972)] == [8, 16, 32, 64, 288, 3072]
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    problem = prepare(model.design, model.priors)
    padded = dataclasses.replace(problem, data=pad_levels(problem.data))
    assert padded.data["A"].shape[0] == 32 and problem.data["A"].shape[0] == 18
    chol = np.linalg.cholesky(np.array([[1.0, 0.3], [0.3, 1.0]]))
    for beta, sd, sigma in (([250.0, 10.0], [25.0, 6.0], 26.0), ([240.0, 12.0], [5.0, 1.0], 40.0)):
        args = (np.array(beta), np.array(sd), chol, sigma)
        assert marginal_loglik(padded, *args) == pytest.approx(
            marginal_loglik(problem, *args), rel=1e-13
        )


def test_refit_with_other_level_count_in_the_bucket_does_not_recompile(sleep_fit, sleepstudy):
    """18 and 20 subjects share the 32-level bucket: the refit reuses the compiled sampler."""
    extra = sleepstudy[sleepstudy["Subject"].isin(["308", "309"])].assign(
        Subject=lambda d: "x" + d["Subject"].astype(str)
    )
    data = pd.concat([sleepstudy, extra], ignore_index=True)
    refit = sleep_fit.update(data=data, random_seed=1)
    assert refit.posterior.sizes["Subject"] == 20
    assert refit.idata["posterior"].attrs["compile_time"] < 1.0  # no tracing or XLA compile


def test_kfold_grouped_by_a_column_the_model_does_not_use(sleepstudy):
    # the same structure and settings as sleep_fit: the compiled samplers are reused
    data = sleepstudy.assign(person=sleepstudy["Subject"])
    fit = bm.Model("Reaction ~ Days + (Days | person)", data).fit(
        draws=200, tune=300, chains=2, random_seed=1
    )
    assert "Subject" not in fit.design.data.columns
    cv = fit.kfold(k=3, group="Subject", random_seed=1, save_fits=False)
    subjects = sleepstudy["Subject"].to_numpy()
    for s in np.unique(subjects):
        assert len(np.unique(cv.folds[subjects == s])) == 1
    with pytest.raises(DataError, match="not a column"):
        fit.kfold(k=3, group="subject")
