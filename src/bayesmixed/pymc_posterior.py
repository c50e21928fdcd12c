"""The posterior of a fit with every free variable of the PyMC model, for extending it.

``fit.idata["posterior"]`` keeps what a user reads (``sd_<g>``, ``cor_<g>``, ``r_<g>``), not
the sampler's internal coordinates: the LKJ Cholesky factors ``L_<g>`` and the standard-normal
offsets ``z_<g>`` of the non-centred parameterisation. They are functions of what is kept:

* ``L_<g>`` (or ``L_<g>_1``, ``L_<g>_2``... when a factor has several correlated blocks) is the
  Cholesky factor of the block of ``cor_<g>``;
* ``z_<g>`` solves ``r_<g>[level] = sd_<g> * (L z_<g>[level])`` for every level, where ``L``
  is the block-diagonal Cholesky factor of ``cor_<g>`` (the identity outside the blocks).

With them, :func:`pymc.sample_posterior_predictive` on the model of
:meth:`bayesmixed.Model.build` conditions every variable of the model on the posterior and
draws only the variables a user adds (the article's new participant).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

    from bayesmixed.results import Fit

__all__ = ["pymc_posterior"]


def pymc_posterior(fit: Fit) -> xr.Dataset:
    """The fit's posterior with ``L_<g>`` and ``z_<g>`` reconstructed.

    Parameters
    ----------
    fit : Fit
        A fit from any sampler (NUTS, the exact marginal engine or the Gibbs sampler).

    Returns
    -------
    xarray.Dataset
        ``fit.posterior`` plus ``z_<g>`` (dims ``(chain, draw, <g>, <g>__term)``), the LKJ
        Cholesky factors ``L_<g>`` (dims ``(chain, draw, L_<g>_dim_0, L_<g>_dim_1)``) and,
        where the SDs of a factor have different prior families, the single SDs
        ``sd(<term>|<g>)``: every free variable of ``fit.model.build()``.
    """
    post = fit.posterior
    out = post.copy()
    priors = fit.model.priors
    design = fit.design
    layout = design.layout
    pairs = [(fac, layout.factor(fac.label)) for fac in design.factors]
    for par, par_names in zip(design.parameters, layout.parameters, strict=True):
        pairs += list(zip(par.factors, par_names.factors, strict=True))  # sigma ~ (1 | g)
    for fac, names in pairs:
        ldim, tdim = names.level_dim, names.term_dim
        r = post[names.r].transpose("chain", "draw", ldim, tdim)
        sd = post[names.sd].transpose("chain", "draw", tdim)
        scaled = r.values / sd.values[:, :, None, :]  # L z per level
        K = len(fac.terms)
        blocks = fac.correlated_blocks
        if blocks:
            cor = post[names.cor].transpose("chain", "draw", tdim, names.term2_dim).values
            L_full = np.broadcast_to(np.eye(K), cor.shape).copy()
            for chol, cols in zip(names.chol, blocks, strict=True):
                idx = np.asarray(cols)
                Lb = np.linalg.cholesky(cor[..., idx[:, None], idx[None, :]])
                L_full[..., idx[:, None], idx[None, :]] = Lb
                out[chol] = (("chain", "draw", f"{chol}_dim_0", f"{chol}_dim_1"), Lb)
            # z L^T = scaled  <=>  L z^T = scaled^T, per draw
            z = np.swapaxes(np.linalg.solve(L_full, np.swapaxes(scaled, -1, -2)), -1, -2)
        else:
            z = scaled
        out[names.z] = (("chain", "draw", ldim, tdim), z)
        sd_priors = [priors.sd[key] for key in names.sd_labels]
        first = sd_priors[0]
        same = all(
            p.name == first.name and p.params.keys() == first.params.keys() for p in sd_priors
        )
        if not same:  # build.py then samples one variable per SD (see _group_contribution)
            for piece, term in zip(names.sd_pieces, fac.terms, strict=True):
                out[piece] = sd.sel({tdim: term}, drop=True)
    return out
