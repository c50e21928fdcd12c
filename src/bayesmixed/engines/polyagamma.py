"""Exact Polya-Gamma draws in JAX, vectorised over rows (for the logit Gibbs sampler).

A Polya-Gamma variable ``omega ~ PG(b, z)`` (Polson, Scott & Windle 2013, JASA 108(504))
makes a logit likelihood Gaussian: given ``omega_i ~ PG(n_i, eta_i)``, the binomial
likelihood of ``y_i`` successes in ``n_i`` trials is, as a function of the linear predictor
``eta_i``, proportional to ``exp(kappa_i eta_i - omega_i eta_i^2 / 2)`` with
``kappa_i = y_i - n_i / 2``.

:func:`draw` samples ``PG(1, z)`` by Devroye's alternating-series method as laid out by
Polson, Scott & Windle (their Algorithm 1, the ``draw_like_devroye`` routine of BayesLogit):
``PG(1, z) = J*(1, |z| / 2) / 4``; ``J*`` is proposed from a mixture of an exponential
tail (beyond the truncation point ``t = 0.64``) and a truncated inverse Gaussian head, and
accepted by the alternating series of its density, whose partial sums bound it from above
and below. The acceptance probability is at least 0.9992 for every ``z``. ``PG(b, z)`` for
an integer ``b`` is the sum of ``b`` independent ``PG(1, z)`` draws (exact; its cost grows
with the largest ``b``). No maintained JAX sampler exists (the ``polyagamma`` package is
NumPy-only), hence this module.

One trial runs on all rows at once; the few rows that rejected are gathered and retried
(a :func:`jax.lax.while_loop` that stops when the last row has accepted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TRUNC", "draw", "draw_pg1", "mean", "variance"]

#: Devroye's truncation point between the inverse-Gaussian head and the exponential tail
TRUNC = 0.64


def mean(b: Any, z: Any) -> np.ndarray:
    """``E[PG(b, z)] = b / (2 |z|) tanh(|z| / 2)`` (``b / 4`` at ``z = 0``)."""
    b, c = np.asarray(b, float), np.abs(np.asarray(z, float))
    safe = np.where(c < 1e-6, 1.0, c)
    return np.where(c < 1e-6, b / 4.0 * (1.0 - c**2 / 12.0), b / (2.0 * safe) * np.tanh(safe / 2))


def variance(b: Any, z: Any) -> np.ndarray:
    """``Var[PG(b, z)] = b (sinh|z| - |z|) / (4 |z|^3 cosh^2(|z| / 2))`` (``b / 24`` at 0)."""
    b, c = np.asarray(b, float), np.abs(np.asarray(z, float))
    safe = np.where(c < 1e-3, 1.0, c)
    exact = b * (np.sinh(safe) - safe) / (4.0 * safe**3 * np.cosh(safe / 2) ** 2)
    return np.where(c < 1e-3, b / 24.0 * (1.0 - c**2 / 10.0), exact)


def _a(n, x):
    """The ``n``-th term of the alternating series of ``J*(1, 0)``'s density at ``x``."""
    import jax.numpy as jnp

    k = (n + 0.5) * jnp.pi
    xs = jnp.maximum(x, 1e-300)
    tail = k * jnp.exp(-0.5 * k * k * xs)
    head = jnp.exp(-1.5 * (jnp.log(0.5 * jnp.pi) + jnp.log(xs)) + jnp.log(k)
                   - 2.0 * (n + 0.5) ** 2 / xs)
    return jnp.where(x > TRUNC, tail, jnp.where(x > 0, head, 0.0))


def _tail_mass(c):
    """Probability of the exponential piece of the proposal, ``p / (p + q)``."""
    import jax.numpy as jnp
    from jax.scipy.special import erfc

    t = TRUNC
    fz = 0.125 * jnp.pi**2 + 0.5 * c * c
    x0 = jnp.log(fz) + fz * t

    def log_cdf(x):  # log Phi(x) by erfc (log_ndtr's branches cost ten times more)
        return jnp.log(0.5 * erfc(-x / jnp.sqrt(2.0)))

    b = jnp.sqrt(1.0 / t) * (t * c - 1.0)
    a = -jnp.sqrt(1.0 / t) * (t * c + 1.0)
    q_over_p = 4.0 / jnp.pi * (jnp.exp(x0 - c + log_cdf(b)) + jnp.exp(x0 + c + log_cdf(a)))
    return 1.0 / (1.0 + q_over_p)


def _uniforms(key, shape):
    """Four independent uniforms on (0, 1) per element, from two 64-bit random words."""
    import jax
    import jax.numpy as jnp

    bits = jax.random.bits(key, (2, *shape), dtype=jnp.uint64)
    halves = (bits & jnp.uint64(0xFFFFFFFF), bits >> jnp.uint64(32))
    return [(h[i].astype(jnp.float64) + 0.5) * 2.0**-32 for i in range(2) for h in halves]


def _head(c, w, s):
    """One proposal of the truncated inverse Gaussian head per element: ``(x, accepted)``.

    ``w`` and ``s`` are uniforms. For ``c < 1/t`` (mean beyond ``t``): ``X = 1 / N^2``
    with ``N`` a standard normal beyond ``1 / sqrt(t)`` in absolute value (the ``c = 0``
    head, drawn exactly by the inverse CDF), kept with probability ``exp(-c^2 X / 2)``;
    else an inverse Gaussian(``1/c``, 1) draw (Michael, Schucany & Haas; its root chosen
    by ``s``) kept when below ``t``. One ``ndtri`` serves both: an element is in one case.
    """
    import jax.numpy as jnp
    from jax.scipy.special import erfc, ndtri

    t = TRUNC
    small = c < 1.0 / t
    beyond = 0.5 * erfc(1.0 / jnp.sqrt(2.0 * t))  # Phi(-1 / sqrt(t))
    normal = ndtri(jnp.where(small, w * beyond, w))
    x_small = 1.0 / normal**2
    ok_small = s <= jnp.exp(-0.5 * c * c * x_small)
    mu = 1.0 / jnp.maximum(c, 1e-12)
    muy = mu * normal**2
    x_large = mu + 0.5 * mu * muy - 0.5 * mu * jnp.sqrt(4.0 * muy + muy * muy)
    x_large = jnp.where(s > mu / (mu + x_large), mu * mu / x_large, x_large)
    return jnp.where(small, x_small, x_large), jnp.where(small, ok_small, x_large <= t)


#: head proposals made at once for each element that is retried
HEAD_CANDIDATES = 4


def _head_trial(key, c):
    """:data:`HEAD_CANDIDATES` head proposals per element; the first accepted one."""
    import jax.numpy as jnp

    u = _uniforms(key, (HEAD_CANDIDATES // 2, *c.shape))
    w, s = jnp.concatenate([u[0], u[2]]), jnp.concatenate([u[1], u[3]])
    x, ok = _head(c[None], w, s)
    first = jnp.argmax(ok, axis=0)
    return jnp.take_along_axis(x, first[None], axis=0)[0], jnp.any(ok, axis=0)


def _retry(key, attempt, args, out, pending, share):
    """Retry ``attempt(key, *args) -> (value, accepted)`` on the pending elements until
    none is left, gathering at most ``1/share`` of them (at least 64) per round."""
    import jax
    import jax.numpy as jnp

    n = out.shape[0]
    width = min(n, max(64, n // share))

    def body(carry):
        key, out, pending = carry
        key, k = jax.random.split(key)
        idx = jnp.nonzero(pending, size=width, fill_value=n)[0]
        at = jnp.minimum(idx, n - 1)
        value, accepted = attempt(k, *(a[at] for a in args))
        accepted = accepted & (idx < n)
        out = out.at[idx].set(jnp.where(accepted, value, out[at]), mode="drop")
        pending = pending.at[idx].set(pending[at] & ~accepted, mode="drop")
        return key, out, pending

    return jax.lax.while_loop(lambda s: jnp.any(s[2]), body, (key, out, pending))[1]


def _trial(key, c, fz, p_tail):
    """One trial of Devroye's sampler per element: ``(J*(1, c) / 4, accepted)``.

    The piece is the exponential tail with probability ``p_tail``, else the truncated
    inverse Gaussian head, drawn exactly there (its own proposals retried until each
    element has one); the draw is accepted by the alternating series. Four uniforms per
    element serve the first round: the piece choice (its uniform, rescaled within the
    chosen piece, is the series' uniform), the tail's exponential, and the head's two.
    """
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(key)
    u, v, w, s = _uniforms(k1, c.shape)
    tail = u < p_tail
    u_series = jnp.where(tail, u / p_tail, (u - p_tail) / (1.0 - p_tail))
    e1 = -jnp.log(v)
    x_head, ok = _head(c, w, s)
    x_head = _retry(k2, _head_trial, (c,), x_head, ~(ok | tail), 8)
    x = jnp.where(tail, TRUNC + e1 / fz, x_head)
    return 0.25 * x, _series_accepts(x, u_series * _a(0, x))


def _series_accepts(x, y):
    """Whether ``y`` (uniform on ``(0, a_0(x))``) falls under the density at ``x``."""
    import jax
    import jax.numpy as jnp

    def body(carry):
        n, s, undecided, accept = carry
        odd = n % 2 == 1
        s = jnp.where(odd, s - _a(n, x), s + _a(n, x))
        yes = undecided & odd & (y <= s)
        no = undecided & ~odd & (y > s)
        return n + 1, s, undecided & ~yes & ~no, accept | yes

    init = (1, _a(0, x), jnp.ones(x.shape, bool), jnp.zeros(x.shape, bool))
    cond = lambda s: jnp.any(s[2]) & (s[0] < 1000)  # noqa: E731  (decided within a few)
    return jax.lax.while_loop(cond, body, init)[3]


def draw_pg1(key: Any, z: Any) -> Any:
    """One ``PG(1, z)`` draw for every element of ``z`` (a JAX array).

    One trial runs on every element; the elements still pending are then gathered
    (a small share of them at a time) and retried until all have accepted, so the
    rejections (of the head's proposals, and rarer, of the series) cost a fraction of a
    full pass.

    Parameters
    ----------
    key : jax.Array
        A JAX PRNG key.
    z : jax.Array
        The tilting parameters (any shape, float64).

    Returns
    -------
    jax.Array
        Draws of the shape of ``z``.
    """
    import jax
    import jax.numpy as jnp

    shape = jnp.shape(z)
    c = 0.5 * jnp.abs(jnp.ravel(z))
    fz = 0.125 * jnp.pi**2 + 0.5 * c * c
    p_tail = _tail_mass(c)
    first, key = jax.random.split(key)
    out, ok = _trial(first, c, fz, p_tail)
    return _retry(key, _trial, (c, fz, p_tail), out, ~ok, 64).reshape(shape)


def draw(key: Any, b: Any, z: Any, *, b_max: int) -> Any:
    """``PG(b_i, z_i)`` draws for integer ``b_i`` in ``0..b_max``: sums of ``PG(1, z_i)``.

    Parameters
    ----------
    key : jax.Array
        A JAX PRNG key.
    b : jax.Array
        Integer shape parameters (the trials of a binomial row; 1 for bernoulli), as floats
        or integers; ``PG(0, z) = 0``.
    z : jax.Array
        Tilting parameters (the linear predictor), same shape as ``b``.
    b_max : int
        The largest ``b`` (static: the number of ``PG(1, z)`` draws summed).

    Returns
    -------
    jax.Array
        Draws of the shape of ``z``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from bayesmixed.engines.polyagamma import draw
    >>> jax.config.update("jax_enable_x64", True)
    >>> w = draw(jax.random.PRNGKey(0), jnp.ones(4), jnp.zeros(4), b_max=1)
    >>> w.shape
    (4,)
    """
    import jax
    import jax.numpy as jnp

    if b_max == 1:
        return jnp.where(b > 0, draw_pg1(key, z), 0.0)

    def add(k, total):
        part = draw_pg1(jax.random.fold_in(key, k), z)
        return total + jnp.where(k < b, part, 0.0)

    return jax.lax.fori_loop(0, b_max, add, jnp.zeros(jnp.shape(z)))
