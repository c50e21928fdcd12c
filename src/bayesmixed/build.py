"""Design + priors -> ``pm.Model`` with non-centred, LKJ-correlated group effects.

Variable names (documented in ``docs/model.md``):

========================  ======================================  ===========================
name                      what                                    dims
========================  ======================================  ===========================
``Intercept``, ``Days``   common (fixed) effects, one per term    ``(<term>_dim,)`` if several
                                                                  columns (``period_dim``)
``sd_<g>``                group SDs of factor ``g``               ``(<g>__term,)``
``L_<g>``                 Cholesky factor of the LKJ correlation  (block size, block size)
``cor_<g>``               correlation matrix of factor ``g``      ``(<g>__term, <g>__term2)``
``z_<g>``                 standard-normal offsets                 ``(<g>, <g>__term)``
``r_<g>``                 group effects (deviations)              ``(<g>, <g>__term)``
``sigma``, ``alpha``...   family parameters (Bambi's names)       scalar
response name             the likelihood                          ``(__obs__,)``
========================  ======================================  ===========================

``<g>`` is the factor label as written (``Subject``, ``batch:cask``); the coordinate ``<g>``
holds its levels. Blocks on the same factor (``(1|g) + (0 + x|g)``) share ``r_<g>`` with
independent columns; each correlated block of two or more columns gets its own LKJ factor
(``L_<g>``, or ``L_<g>_1``, ``L_<g>_2``... when a factor has several).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesmixed import _bambi
from bayesmixed.design import Design
from bayesmixed.priors import Prior, PriorSet

__all__ = ["build_pymc_model", "group_term_dim", "hyper_var_names", "level_dim", "model_coords"]


def group_term_dim(label: str) -> str:
    """Name of the coordinate holding the terms of factor ``label``."""
    return f"{label}__term"


# dimension names ArviZ reserves for draws; a factor called so gets ``<g>__level`` instead
_RESERVED_DIMS = {"chain", "draw", "sample"}


def level_dim(label: str) -> str:
    """Name of the coordinate holding the levels of factor ``label`` (``label`` itself,
    unless ArviZ reserves that name, as for a factor called ``sample``)."""
    return f"{label}__level" if label in _RESERVED_DIMS else label


def hyper_var_names(design: Design) -> list[str]:
    """Names of the variables kept in the posterior (everything but offsets)."""
    names = list(design.common.term_slices)
    for fac in design.factors:
        names.append(f"sd_{fac.label}")
        if fac.correlated_blocks:
            names.append(f"cor_{fac.label}")
        names.append(f"r_{fac.label}")
    names.extend(design.common.family_priors)
    return names


def model_coords(design: Design) -> dict[str, Any]:
    """Coordinates of the model's dimensions (levels, terms, columns, observations)."""
    coords: dict[str, Any] = {"__obs__": np.arange(design.n)}
    for term, sl in design.common.term_slices.items():
        if sl.stop - sl.start > 1:
            coords[f"{term}_dim"] = design.common.columns[sl]
    for fac in design.factors:
        coords[level_dim(fac.label)] = fac.levels
        coords[group_term_dim(fac.label)] = fac.terms
        coords[f"{fac.label}__term2"] = fac.terms
    return coords


def _random_variable(name: str, prior: Prior, dims: Any = None, size: int | None = None):
    import pymc as pm

    dist = getattr(pm, prior.name, None)
    if dist is None:
        from bayesmixed.errors import PriorError

        raise PriorError(
            f"Unknown distribution {prior.name!r} in the prior of {name!r}; use a PyMC "
            "distribution name such as 'Normal', 'StudentT' or 'HalfNormal'."
        )
    params = {k: np.asarray(v, dtype=float) for k, v in prior.params.items()}
    if dims is not None:
        return dist(name, dims=dims, **params)
    if size is not None:
        return dist(name, shape=(size,), **params)
    return dist(name, **params)


def build_pymc_model(design: Design, priors: PriorSet):
    """Build the PyMC model.

    Parameters
    ----------
    design : Design
        From :func:`bayesmixed.design.build_design`.
    priors : PriorSet
        Defaults with overrides applied.

    Returns
    -------
    pymc.Model
        Open for extension: ``with model: ...`` adds variables, as the article does.
    """
    import pymc as pm
    import pytensor.tensor as pt

    common = design.common
    with pm.Model(coords=model_coords(design)) as model:
        eta = pt.zeros(design.n)
        if common.X.shape[1]:
            parts = []
            for term, sl in common.term_slices.items():
                width = sl.stop - sl.start
                dims = f"{term}_dim" if width > 1 else None
                parts.append(pt.atleast_1d(_random_variable(term, priors.common[term], dims)))
            beta = pt.concatenate(parts) if len(parts) > 1 else parts[0]
            eta = pt.dot(pt.as_tensor(common.X), beta)
        if design.has_offset:  # offset(...) terms enter with coefficient 1
            eta = eta + pt.as_tensor(design.offset)

        for fac in design.factors:
            eta = eta + _group_contribution(fac, priors)

        kwargs: dict[str, Any] = {"observed": common.response}
        for name, prior in priors.family.items():
            kwargs[name] = _random_variable(name, prior)
        kwargs[common.parent] = _bambi.inverse_link(common.link_name)(eta)
        family = common.family
        if hasattr(family, "transform_backend_kwargs"):
            kwargs = family.transform_backend_kwargs(kwargs)
        observed = np.asarray(kwargs["observed"])
        kwargs["observed"] = observed
        dist = _bambi.likelihood_distribution(family)
        dims = ("__obs__",) if observed.ndim == 1 else None
        dist(design.response_name, dims=dims, **kwargs)
    return model


def _group_contribution(fac, priors: PriorSet):
    import pymc as pm
    import pytensor.tensor as pt

    label = fac.label
    tdim = group_term_dim(label)
    sd_priors = [priors.sd[f"sd({term}|{label})"] for term in fac.terms]
    first = sd_priors[0]
    if all(p.name == first.name and p.params.keys() == first.params.keys() for p in sd_priors):
        stacked = Prior(
            first.name,
            **{
                k: np.array([float(np.squeeze(p.params[k])) for p in sd_priors])
                for k in first.params
            },
        )
        sd = _random_variable(f"sd_{label}", stacked, dims=tdim)
    else:
        pieces = [
            _random_variable(f"sd({term}|{label})", p)
            for term, p in zip(fac.terms, sd_priors, strict=True)
        ]
        sd = pm.Deterministic(f"sd_{label}", pt.stack(pieces), dims=tdim)

    z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=(level_dim(label), tdim))
    blocks = fac.correlated_blocks
    if blocks:
        K = len(fac.terms)
        L = pt.eye(K)
        for i, cols in enumerate(blocks):
            suffix = f"_{i + 1}" if len(blocks) > 1 else ""
            Lb = pm.LKJCorr(f"L_{label}{suffix}", n=len(cols), eta=priors.eta[label])
            idx = np.asarray(cols)
            L = pt.set_subtensor(L[idx[:, None], idx[None, :]], Lb)
        pm.Deterministic(f"cor_{label}", L @ L.T, dims=(tdim, f"{label}__term2"))
        r = pt.dot(z, L.T) * sd
    else:
        r = z * sd
    r = pm.Deterministic(f"r_{label}", r, dims=(level_dim(label), tdim))
    gathered = r[fac.index]
    if fac.X.shape[1] == 1 and np.all(fac.X == 1):
        return gathered[:, 0]
    return pt.sum(pt.as_tensor(fac.X) * gathered, axis=1)
