"""Design + priors -> ``pm.Model`` with non-centred, LKJ-correlated group effects.

Every variable, dimension and coordinate is named by the design's
:class:`~bayesmixed.layout.Layout` (``design.layout``; the table of names is in
:mod:`bayesmixed.layout`). Blocks on the same factor (``(1|g) + (0 + x|g)``) share
``r_<g>`` with independent columns; each correlated block of two or more columns gets its
own LKJ factor (``L_<g>``, or ``L_<g>_1``, ``L_<g>_2``... when a factor has several).
A family parameter with its own formula (``sigma ~ Days + (1 | Subject)``) gets its own
linear predictor, built the same way, through the parameter's inverse link (``exp``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesmixed import _bambi
from bayesmixed.design import Design
from bayesmixed.priors import Prior, PriorSet

__all__ = ["build_pymc_model", "hyper_var_names", "model_coords"]


def hyper_var_names(design: Design) -> list[str]:
    """Names of the variables kept in the posterior (everything but offsets)."""
    return design.layout.var_names()


def model_coords(design: Design) -> dict[str, Any]:
    """Coordinates of the model's dimensions (levels, terms, columns, observations)."""
    return design.layout.coords()


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

    if design.categories is not None:
        return _build_category_model(design, priors)
    common = design.common
    layout = design.layout
    with pm.Model(coords=layout.coords()) as model:
        eta = pt.zeros(design.n)
        if common.X.shape[1]:
            parts = []
            for names in layout.common:
                prior = priors.common[names.term]
                parts.append(pt.atleast_1d(_random_variable(names.var, prior, names.dim)))
            beta = pt.concatenate(parts) if len(parts) > 1 else parts[0]
            eta = pt.dot(_data(common.X), beta)
        if design.has_offset:  # offset(...) terms enter with coefficient 1
            eta = eta + _data(design.offset)

        for fac in design.factors:
            eta = eta + _group_contribution(fac, layout.factor(fac.label), priors)

        kwargs: dict[str, Any] = {"observed": common.response}
        for name, prior in priors.family.items():
            kwargs[name] = _random_variable(layout.family[name], prior)
        for par in design.parameters:
            kwargs[par.name] = _parameter_predictor(par, layout.parameter(par.name), priors)
        kwargs[common.parent] = _bambi.inverse_link(common.link_name)(eta)
        family = common.family
        if hasattr(family, "transform_backend_kwargs"):
            kwargs = family.transform_backend_kwargs(kwargs)
        observed = np.asarray(kwargs["observed"])
        kwargs["observed"] = observed
        dist = _bambi.likelihood_distribution(family)
        dims = (layout.obs_dim,) if observed.ndim == 1 else None
        dist(layout.response, dims=dims, **kwargs)
    return model


def _data(values: Any) -> Any:
    """A data array of the model as its own variable (a shared variable of static shape).

    As constants, two arrays of equal values (a fixed and a group design that coincide)
    would be merged by PyMC's graph rewrites, and such a data set would get another graph
    (another compiled program) than its neighbours of the same shape.
    """
    import pytensor

    values = np.asarray(values)
    return pytensor.shared(values, shape=values.shape)


def _parameter_predictor(par, names, priors: PriorSet):
    """``inverse_link(X b + offset + group terms)`` of one family parameter, per row."""
    import pytensor.tensor as pt

    n = par.X.shape[0]
    eta = pt.zeros(n)
    if par.X.shape[1]:
        parts = [pt.atleast_1d(_random_variable(c.var, priors.common[c.term], c.dim))
                 for c in names.common]
        beta = pt.concatenate(parts) if len(parts) > 1 else parts[0]
        eta = pt.dot(_data(par.X), beta)
    if np.any(par.offset != 0):
        eta = eta + _data(par.offset)
    for fac, fac_names, key in zip(par.factors, names.factors, names.eta_keys, strict=True):
        eta = eta + _group_contribution(fac, fac_names, priors, eta_key=key)
    return _bambi.inverse_link(par.link_name)(eta)


def _build_category_model(design: Design, priors: PriorSet):
    """The PyMC model of an ordinal or categorical response (:mod:`bayesmixed.categories`):
    the linear predictor(s) as for other families, thresholds ``threshold`` (increasing
    for ``cumulative``), and a ``Categorical`` likelihood of the category codes."""
    import pymc as pm
    import pytensor.tensor as pt

    from bayesmixed import categories as cat

    common, layout, cats = design.common, design.layout, design.categories
    P = design.n_predictors
    with pm.Model(coords=layout.coords()) as model:
        eta = pt.zeros((design.n, P))
        if common.X.shape[1]:
            parts = [pt.atleast_1d(_random_variable(n.var, priors.common[n.term], n.dim))
                     for n in layout.common]
            beta = pt.concatenate(parts) if len(parts) > 1 else parts[0]
            mix = design.predictor_map(common.X.shape[1])
            eta = pt.dot(_data(common.X), beta[:, None] * mix)
        if design.has_offset:
            eta = eta + _data(design.offset)[:, None]
        for fac in design.factors:
            eta = eta + _group_contribution(
                fac, layout.factor(fac.label), priors, mix=design.predictor_map(len(fac.terms))
            )
        thresholds = None
        if cats.ordinal:
            prior = priors.family[cat.THRESHOLD]
            dim = layout.family_vectors[cat.THRESHOLD][0]
            K1 = cats.n_categories - 1
            extra: dict[str, Any] = {"initval": np.linspace(-1.0, 1.0, K1)}
            if cats.family == "cumulative":
                extra["transform"] = pm.distributions.transforms.ordered
            dist = getattr(pm, prior.name)
            params = {k: np.asarray(v, dtype=float) for k, v in prior.params.items()}
            thresholds = dist(layout.family[cat.THRESHOLD], dims=dim, **params, **extra)
            if cats.family == "cumulative":
                # sorted already when sampled (ordered transform); forward (prior) draws
                # ignore transforms, and sorted i.i.d. draws have exactly this prior
                thresholds = pt.sort(thresholds)
            eta = eta[:, 0]
        probs = cat.probabilities(pt, cats.family, cats.link, eta, thresholds)
        logits = pt.log(pt.clip(probs, 1e-300, 1.0))  # Categorical normalises them again
        pm.Categorical(layout.response, logit_p=logits, observed=cats.codes,
                       dims=(layout.obs_dim,))
    return model


def _group_contribution(fac, names, priors: PriorSet, eta_key: str | None = None,
                        mix: np.ndarray | None = None):
    import pymc as pm
    import pytensor.tensor as pt

    label = fac.label if eta_key is None else eta_key
    tdim = names.term_dim
    sd_priors = [priors.sd[key] for key in names.sd_labels]
    first = sd_priors[0]
    if all(p.name == first.name and p.params.keys() == first.params.keys() for p in sd_priors):
        stacked = Prior(
            first.name,
            **{
                k: np.array([float(np.squeeze(p.params[k])) for p in sd_priors])
                for k in first.params
            },
        )
        sd = _random_variable(names.sd, stacked, dims=tdim)
    else:
        pieces = [
            _random_variable(piece, p)
            for piece, p in zip(names.sd_pieces, sd_priors, strict=True)
        ]
        sd = pm.Deterministic(names.sd, pt.stack(pieces), dims=tdim)

    z = pm.Normal(names.z, 0.0, 1.0, dims=(names.level_dim, tdim))
    blocks = fac.correlated_blocks
    if blocks:
        K = len(fac.terms)
        L = pt.eye(K)
        for chol, cols in zip(names.chol, blocks, strict=True):
            Lb = pm.LKJCorr(chol, n=len(cols), eta=priors.eta[label])
            idx = np.asarray(cols)
            L = pt.set_subtensor(L[idx[:, None], idx[None, :]], Lb)
        pm.Deterministic(names.cor, L @ L.T, dims=(tdim, names.term2_dim))
        r = pt.dot(z, L.T) * sd
    else:
        r = z * sd
    r = pm.Deterministic(names.r, r, dims=(names.level_dim, tdim))
    gathered = r[_data(fac.index)]
    if mix is not None:  # one column per linear predictor (categorical)
        return pt.dot(_data(fac.X) * gathered, mix)
    if fac.X.shape[1] == 1 and np.all(fac.X == 1):
        return gathered[:, 0]
    return pt.sum(_data(fac.X) * gathered, axis=1)
