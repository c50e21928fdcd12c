"""The Cholesky-factor interweaving step of the Gibbs sampler leaves the posterior invariant.

A successive-conditional (Geweke 2004) check: alternate fresh data ``y_j ~ N(u_j, I)`` given
the effects with the step given the data. The step leaves ``p(Sigma, u | y)`` invariant, so
the chain's stationary law is the joint prior, and ``Sigma``'s marginal stays its prior
(SDs half-normal(1), LKJ(1): the correlation uniform on (-1, 1)). A wrong Jacobian or
acceptance ratio drifts away from it within a few steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesmixed.engines.common import configure_jax
from bayesmixed.engines.gibbs import _interweave_cholesky

configure_jax()

REPLICATES, LEVELS, STEPS = 4000, 30, 15


def _log_prior(sd, R):
    """Half-normal(1) SDs, LKJ(1) (flat) correlation: the density of Sigma."""
    import jax.numpy as jnp

    return jnp.sum(-0.5 * sd**2) - 2 * jnp.sum(jnp.log(sd))


def _geweke(step_prior=_log_prior):
    import jax
    import jax.numpy as jnp

    def one(key):
        k0, k1, k2, key = jax.random.split(key, 4)
        sd = jnp.abs(jax.random.normal(k0, (2,)))
        r = jax.random.uniform(k1, minval=-1.0, maxval=1.0)
        Sigma = jnp.outer(sd, sd) * jnp.array([[1.0, r], [r, 1.0]])
        u = jax.random.normal(k2, (LEVELS, 2)) @ jnp.linalg.cholesky(Sigma).T
        ZtZ = jnp.broadcast_to(jnp.eye(2), (LEVELS, 2, 2))

        def body(carry, k):
            Sigma, u = carry
            ky, ks = jax.random.split(k)
            y = u + jax.random.normal(ky, u.shape)
            L, u = _interweave_cholesky(ks, Sigma, u, ZtZ, y, 1.0, step_prior)
            return (L @ L.T, u), None

        (Sigma, _), _ = jax.lax.scan(body, (Sigma, u), jax.random.split(key, STEPS))
        sd = jnp.sqrt(jnp.diag(Sigma))
        return jnp.concatenate([sd, Sigma[0, 1:2] / (sd[0] * sd[1])])

    keys = jax.random.split(jax.random.PRNGKey(7), REPLICATES)
    return np.asarray(jax.jit(jax.vmap(one))(keys))


def test_interweaving_step_keeps_the_prior_of_a_geweke_chain():
    out = _geweke()
    se = 1.0 / np.sqrt(REPLICATES)
    sd_mean, sd_sd = np.sqrt(2 / np.pi), np.sqrt(1 - 2 / np.pi)  # half-normal(1)
    np.testing.assert_array_less(np.abs(out[:, :2].mean(0) - sd_mean), 4 * sd_sd * se)
    np.testing.assert_array_less(np.abs((out[:, :2] ** 2).mean(0) - 1.0), 4 * np.sqrt(2) * se)
    cor = out[:, 2]
    assert abs(cor.mean()) < 4 * np.sqrt(1 / 3) * se
    assert abs((cor**2).mean() - 1 / 3) < 4 * np.sqrt(4 / 45) * se  # Var(r^2) = 1/5 - 1/9


def test_the_geweke_check_detects_a_wrong_prior_ratio():
    """The same check with the prior ratio off by ``prod sd^2`` (the size of a Jacobian
    mistake) fails: the check has power."""
    import jax.numpy as jnp

    wrong = lambda sd, R: _log_prior(sd, R) + 2 * jnp.sum(jnp.log(sd))  # noqa: E731
    out = _geweke(wrong)
    with pytest.raises(AssertionError):
        np.testing.assert_array_less(np.abs(out[:, :2].mean(0) - np.sqrt(2 / np.pi)),
                                     4 * np.sqrt(1 - 2 / np.pi) / np.sqrt(REPLICATES))
