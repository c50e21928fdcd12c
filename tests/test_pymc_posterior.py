"""``Fit.pymc_posterior``: the article's new participant drawn from a fit, as docs/model.md does."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmixed as bm


@pytest.fixture(scope="module")
def fit(sleepstudy):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    return model.fit(draws=500, tune=500, chains=2, random_seed=3)


def test_every_free_variable_and_r_reconstructed(fit):
    post = fit.pymc_posterior()
    free = {rv.name for rv in fit.model.build().free_RVs}
    assert free <= set(post.data_vars), free - set(post.data_vars)
    assert "z_Subject" not in fit.idata["posterior"]  # the fit itself is not changed
    L = post["L_Subject"].values
    assert L.shape == (2, 500, 2, 2)
    np.testing.assert_allclose(L[..., 0, 1], 0.0)
    np.testing.assert_allclose(L @ np.swapaxes(L, -1, -2), post["cor_Subject"].values, atol=1e-10)
    z = post["z_Subject"].transpose("chain", "draw", "Subject", "Subject__term").values
    sd = post["sd_Subject"].values
    rebuilt = np.einsum("cdij,cdlj->cdli", L, z) * sd[:, :, None, :]
    r = post["r_Subject"].transpose("chain", "draw", "Subject", "Subject__term").values
    np.testing.assert_allclose(rebuilt, r, rtol=1e-8, atol=1e-8)
    # the offsets of the observed subjects are standard normal under the posterior
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2


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
    ``fit.new_group_effects`` (within Monte Carlo error), not the prior's."""
    import pymc as pm

    pm_model = fit.model.build()
    with pm_model:
        z_new = pm.Normal("z_new", 0, 1, shape=2)
        pm.Deterministic("r_new", (pm_model["L_Subject"] @ z_new) * pm_model["sd_Subject"])
    pp = pm.sample_posterior_predictive(
        fit.pymc_posterior(), model=pm_model, var_names=["r_new"], random_seed=5,
        progressbar=False,
    )
    ours = pp.posterior_predictive["r_new"].values.reshape(-1, 2)
    ref = fit.new_group_effects("Subject", include_fixed=False, random_seed=7)
    ref = ref.sel(level="new_1").transpose("chain", "draw", "term").values.reshape(-1, 2)
    n = len(ours)
    for j in range(2):
        sd_ref = ref[:, j].std()
        # means within 4 Monte Carlo SEs (draws are nearly independent across the two sets)
        assert abs(ours[:, j].mean() - ref[:, j].mean()) < 4 * sd_ref * np.sqrt(2 / n)
        assert 0.85 < ours[:, j].std() / sd_ref < 1.15
        q = np.quantile(ref[:, j], [0.1, 0.9])
        assert abs(np.mean(ours[:, j] < q[0]) - 0.1) < 0.04
        assert abs(np.mean(ours[:, j] > q[1]) - 0.1) < 0.04
    # the prior of sd(Intercept|Subject) is far wider than the posterior: drawing L and sd
    # from the prior instead would blow the spread up
    assert ours[:, 0].std() < 60
    c_ours = np.corrcoef(ours.T)[0, 1]
    c_ref = np.corrcoef(ref.T)[0, 1]
    assert abs(c_ours - c_ref) < 0.12
