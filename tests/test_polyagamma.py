"""Polya-Gamma draws (bayesmixed.engines.polyagamma) against their known moments."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmixed.engines import polyagamma as pg
from bayesmixed.engines.common import configure_jax

configure_jax()  # float64, as the Gibbs sampler runs

Z = np.array([0.0, -0.4, 1.3, -2.5, 4.0, 9.0, -35.0])


@pytest.mark.parametrize("b", [1, 3])
def test_draws_match_the_known_mean_and_variance(b):
    """E = b/(2c) tanh(c/2), Var = b (sinh c - c) / (4 c^3 cosh^2(c/2)), c = |z|; both
    checked on 40,000 draws per z: the mean within 4 standard errors, the variance within
    6 % (its standard error is about 1.5 %)."""
    import jax
    import jax.numpy as jnp

    n = 40_000
    z = jnp.asarray(np.repeat(Z, n))
    w = np.asarray(jax.jit(pg.draw, static_argnames="b_max")(
        jax.random.PRNGKey(b), jnp.full(z.shape, float(b)), z, b_max=b))
    w = w.reshape(-1, n)
    mean, var = pg.mean(b, Z), pg.variance(b, Z)
    assert np.all(w > 0)
    np.testing.assert_array_less(np.abs(w.mean(axis=1) - mean), 4 * np.sqrt(var / n))
    np.testing.assert_allclose(w.var(axis=1), var, rtol=0.06)


def test_known_moments_at_zero_and_large_z():
    assert pg.mean(1, 0.0) == pytest.approx(0.25)
    assert pg.variance(2, 0.0) == pytest.approx(2 / 24)
    assert pg.mean(1, 1e-7) == pytest.approx(0.25, rel=1e-12)
    assert pg.variance(1, 1e-4) == pytest.approx(1 / 24, rel=1e-8)
    assert pg.mean(2, 50.0) == pytest.approx(2 / 100 * np.tanh(25), rel=1e-12)


def test_rows_get_their_own_number_of_terms():
    """PG(b_i, z_i) with b_i in 0..b_max: zero trials give exactly zero, sums add up."""
    import jax
    import jax.numpy as jnp

    b = jnp.asarray(np.tile([0.0, 1.0, 2.0, 5.0], 20_000))
    w = np.asarray(jax.jit(pg.draw, static_argnames="b_max")(
        jax.random.PRNGKey(7), b, jnp.full(b.shape, 1.5), b_max=5))
    w = w.reshape(-1, 4)
    assert np.all(w[:, 0] == 0.0)
    sd = np.sqrt(pg.variance([1, 2, 5], 1.5) / 20_000)
    np.testing.assert_array_less(np.abs(w.mean(axis=0)[1:] - pg.mean([1, 2, 5], 1.5)), 4 * sd)


def test_same_key_same_draws():
    import jax
    import jax.numpy as jnp

    z = jnp.linspace(-3, 3, 101)
    draw = jax.jit(pg.draw_pg1)
    one, two = draw(jax.random.PRNGKey(3), z), draw(jax.random.PRNGKey(3), z)
    np.testing.assert_array_equal(np.asarray(one), np.asarray(two))
