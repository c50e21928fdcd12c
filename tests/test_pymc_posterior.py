"""``Fit.pymc_posterior``: the article's new participant drawn from a fit, as docs/model.md does."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmixed as bm


@pytest.fixture(scope="module")
def fit(sleep_fit):
    return sleep_fit  # 2 chains x 200 draws of the article's model (conftest)


def test_every_free_variable_and_r_reconstructed(fit):
    post = fit.pymc_posterior()
    free = {rv.name for rv in fit.model.build().free_RVs}
    assert free <= set(post.data_vars), free - set(post.data_vars)
    assert "z_Subject" not in fit.idata["posterior"]  # the fit itself is not changed
    L = post["L_Subject"].values
    assert L.shape == (2, 200, 2, 2)
    np.testing.assert_allclose(L[..., 0, 1], 0.0)
    np.testing.assert_allclose(L @ np.swapaxes(L, -1, -2), post["cor_Subject"].values, atol=1e-10)
    z = post["z_Subject"].transpose("chain", "draw", "Subject", "Subject__term").values
    sd = post["sd_Subject"].values
    rebuilt = np.einsum("cdij,cdlj->cdli", L, z) * sd[:, :, None, :]
    r = post["r_Subject"].transpose("chain", "draw", "Subject", "Subject__term").values
    np.testing.assert_allclose(rebuilt, r, rtol=1e-8, atol=1e-8)
    # the offsets of the observed subjects are standard normal under the posterior
    assert abs(z.mean()) < 0.25 and 0.75 < z.std() < 1.25


@pytest.mark.filterwarnings("ignore::bayesmixed.errors.ConvergenceWarning")
def test_uncorrelated_factor_has_plain_offsets(sleepstudy):
    model = bm.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleepstudy)
    fit = model.fit(draws=100, tune=200, chains=1, random_seed=2)
    post = fit.pymc_posterior()
    assert not any(name.startswith("L_") for name in post.data_vars)
    np.testing.assert_allclose(
        post["z_Subject"].values * post["sd_Subject"].values[:, :, None, :],
        post["r_Subject"].transpose("chain", "draw", "Subject", "Subject__term").values,
    )


def test_new_participant_recipe_matches_new_group_effects(fit):
    """docs/model.md's recipe: the new participant's draws have the distribution of
    ``fit.new_group_effects`` (within Monte Carlo error), not the prior's.

    20 new participants per posterior draw on both sides, so that the comparison is tight
    given the same posterior draws."""
    import pymc as pm

    k = 20
    pm_model = fit.model.build()
    with pm_model:
        z_new = pm.Normal("z_new", 0, 1, shape=(k, 2))
        pm.Deterministic("r_new", (z_new @ pm_model["L_Subject"].T) * pm_model["sd_Subject"])
    pp = pm.sample_posterior_predictive(
        fit.pymc_posterior(), model=pm_model, var_names=["r_new"], random_seed=5,
        progressbar=False,
    )
    ours = pp.posterior_predictive["r_new"].values.reshape(-1, 2)
    ref = fit.new_group_effects("Subject", n=k, include_fixed=False, random_seed=7)
    ref = ref.transpose("chain", "draw", "level", "term").values.reshape(-1, 2)
    n = len(ours)
    for j in range(2):
        sd_ref = ref[:, j].std()
        # means within 4 Monte Carlo SEs (the same posterior draws, independent offsets)
        assert abs(ours[:, j].mean() - ref[:, j].mean()) < 4 * sd_ref * np.sqrt(2 / n)
        assert 0.93 < ours[:, j].std() / sd_ref < 1.07
        q = np.quantile(ref[:, j], [0.1, 0.9])
        assert abs(np.mean(ours[:, j] < q[0]) - 0.1) < 0.02
        assert abs(np.mean(ours[:, j] > q[1]) - 0.1) < 0.02
    # the prior of sd(Intercept|Subject) is far wider than the posterior: drawing L and sd
    # from the prior instead would blow the spread up
    assert ours[:, 0].std() < 60
    c_ours = np.corrcoef(ours.T)[0, 1]
    c_ref = np.corrcoef(ref.T)[0, 1]
    assert abs(c_ours - c_ref) < 0.06


@pytest.mark.filterwarnings("ignore::bayesmixed.errors.ConvergenceWarning")
def test_names_come_from_the_layout():
    """A factor called ``sample`` has its levels on ``sample__level`` (bayesmixed.layout)."""
    model = bm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bm.datasets.penicillin())
    fit = model.fit(draws=100, tune=200, chains=1, random_seed=4)
    post = fit.pymc_posterior()
    free = {rv.name for rv in model.build().free_RVs}
    assert free <= set(post.data_vars), free - set(post.data_vars)
    names = fit.design.layout.factor("sample")
    assert names.level_dim == "sample__level"
    assert post[names.z].dims == ("chain", "draw", "sample__level", names.term_dim)
    np.testing.assert_allclose(
        post[names.z] * post[names.sd], post[names.r].transpose(*post[names.z].dims)
    )
