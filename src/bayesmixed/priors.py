"""Prior objects, default priors and the user's overrides.

Defaults (see ``docs/priors.md``):

* common (fixed) effects: Bambi's auto-scaled Normal priors (weakly informative, scaled by
  the standard deviations of the response and of each predictor);
* group SDs: ``HalfNormal`` with Bambi's scale for the matching common term (the
  intercept's scale for a group intercept, ``2.5 * sd(y) / sd(x)`` for a slope on ``x``);
* correlations: ``LKJ(eta=1)``, uniform over correlation matrices, one per correlated block;
* family parameters (``sigma``, ``alpha``, ``nu``, ...): Bambi's defaults;
* terms of a family parameter's own formula (``sigma ~ Days``), on its link scale (log):
  ``StudentT(nu=3, mu=0, sigma=2.5)`` for the intercept (brms's default), ``Normal(0, 2.5 /
  sd(x))`` for a slope on ``x``, ``HalfNormal(2.5)`` for a group intercept's SD and
  ``HalfNormal(2.5 / sd(x))`` for a group slope's (the scales used on the logit scale).

Users override any of them through ``Model(..., priors={...})`` with keys named as in the
summary: ``"Days"``, ``"sd(Days|Subject)"``, ``"sd(Subject)"`` (every SD of a factor),
``"cor(Subject)"`` (``Prior("LKJ", eta=2)`` or just the number ``2``), ``"sigma"``; for a
parameter formula ``"sigma_Intercept"``, ``"sigma_Days"``, ``"sd(sigma_Intercept|Subject)"``,
``"sd(sigma|Subject)"`` (every SD of sigma's terms on Subject) and ``"cor(sigma|Subject)"``.
``"sd(Subject)"`` sets the SDs of the main formula's terms only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayesmixed.errors import PriorError

__all__ = ["Prior", "PriorSet"]

# parameters that must be strictly positive, by name
_POSITIVE = {"sigma", "tau", "lam", "beta", "alpha", "nu", "eta", "b", "kappa", "scale"}


@dataclass(frozen=True)
class Prior:
    """A prior distribution: a PyMC distribution name and its parameters.

    Parameters
    ----------
    name : str
        Name of a PyMC distribution (``"Normal"``, ``"HalfNormal"``, ``"StudentT"``,
        ``"HalfStudentT"``, ``"Exponential"``, ...) or ``"LKJ"`` for correlations.
    **params
        Parameters of the distribution, numbers or arrays (one value per column).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> bm.Prior("Normal", mu=0, sigma=10)
    Normal(mu=0, sigma=10)
    >>> bm.Prior("LKJ", eta=2)
    LKJ(eta=2)
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, **params: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PriorError(
                f"A prior's distribution must be named by a string such as 'Normal', got {name!r}."
            )
        for key, value in params.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise PriorError(f"Prior {name}: parameter names must be words, got {key!r}.")
            try:
                arr = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise PriorError(
                    f"Prior {name}: parameter {key}={value!r} must be a number or a list of "
                    "numbers (one per column)."
                ) from None
            if isinstance(value, bool) or arr.dtype == bool:
                raise PriorError(f"Prior {name}: parameter {key}={value!r} must be a number.")
            if not np.all(np.isfinite(arr)):
                raise PriorError(f"Prior {name}: parameter {key}={value!r} must be finite.")
            if key in _POSITIVE and np.any(arr <= 0):
                raise PriorError(
                    f"Prior {name}: parameter {key}={value!r} must be positive (> 0)."
                )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", dict(params))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prior):
            return NotImplemented
        return self.name == other.name and self.params.keys() == other.params.keys() and all(
            np.array_equal(np.asarray(v), np.asarray(other.params[k]))
            for k, v in self.params.items()
        )

    __hash__ = None  # type: ignore[assignment]

    def subset(self, index: int) -> Prior:
        """The prior of one column when parameters are given per column."""
        out = {}
        for key, value in self.params.items():
            arr = np.asarray(value)
            out[key] = arr.reshape(-1)[index].item() if arr.ndim else value
        return Prior(self.name, **out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for saving a fit)."""
        return {
            "name": self.name,
            "params": {k: np.asarray(v).tolist() for k, v in self.params.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`."""
        return cls(data["name"], **data["params"])


def _fmt(value: Any) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        val = arr.item()
        if isinstance(val, float) and not math.isclose(val, round(val)):
            return f"{val:.4g}"
        return str(int(val)) if float(val).is_integer() else f"{val:.4g}"
    return "[" + ", ".join(_fmt(v) for v in arr.reshape(-1)) + "]"


@dataclass
class PriorSet:
    """Every prior of a model, keyed by the labels used in the summary.

    Attributes
    ----------
    common : dict of str to Prior
        One prior per common term (``"Intercept"``, ``"Days"``, ``"period"``).
    sd : dict of str to Prior
        One prior per group SD, keyed ``"sd(Days|Subject)"``.
    eta : dict of str to float
        LKJ shape per grouping factor, keyed by the factor label.
    family : dict of str to Prior
        Family (auxiliary) parameters, keyed by Bambi's name (``"sigma"``).
    parameter_sd : dict of str to str
        SD keys of parameter formulas' group terms -> their parameter (``"sigma"``), so
        that ``"sd(Subject)"`` leaves them alone and ``"sd(sigma|Subject)"`` finds them.
    """

    common: dict[str, Prior]
    sd: dict[str, Prior]
    eta: dict[str, float]
    family: dict[str, Prior]
    parameter_sd: dict[str, str] = field(default_factory=dict)

    def apply(self, overrides: Mapping[str, Any] | None) -> PriorSet:
        """Return a copy with the user's overrides applied (validated)."""
        out = PriorSet(dict(self.common), dict(self.sd), dict(self.eta), dict(self.family),
                       dict(self.parameter_sd))
        for key, value in (overrides or {}).items():
            if not isinstance(key, str):
                raise PriorError(f"Prior keys must be strings such as 'Days', got {key!r}.")
            label = "".join(key.split())
            if label.startswith("cor(") and label.endswith(")"):
                factor = label[4:-1]
                if factor not in out.eta:
                    raise PriorError(
                        f"No correlated group block on {factor!r} for the prior {key!r}; "
                        f"correlated factors: {sorted(out.eta) or 'none'}."
                    )
                out.eta[factor] = _eta_of(value, key)
                continue
            prior = _as_prior(value, key)
            if label.startswith("sd(") and label.endswith(")"):
                inner = label[3:-1]
                if "|" not in inner:
                    targets = [k for k in out.sd
                               if k.endswith(f"|{inner})") and k not in out.parameter_sd]
                elif label in out.sd:
                    targets = [label]
                else:  # sd(sigma|Subject): every SD of sigma's terms on Subject
                    par, _, factor = inner.partition("|")
                    targets = [k for k, p in out.parameter_sd.items()
                               if p == par and k.endswith(f"|{factor})")] or [label]
                if not targets or any(t not in out.sd for t in targets):
                    raise PriorError(
                        f"There is no group SD {key!r} in this model; group SDs: "
                        f"{', '.join(out.sd) or 'none'}."
                    )
                for target in targets:
                    out.sd[target] = prior
            elif label in out.family:  # the summary row "sigma" is the family's sigma
                out.family[label] = prior
            elif label == "Intercept" and "threshold" in out.family:  # brms's name
                out.family["threshold"] = prior
            elif label in out.common:
                out.common[label] = prior
            elif label.startswith("b_") and label[2:] in out.common:  # as in the summary
                out.common[label[2:]] = prior
            else:
                valid = [*out.common, *out.sd, *(f"cor({f})" for f in out.eta), *out.family]
                raise PriorError(
                    f"There is no term or parameter {key!r} in this model to put a prior on; "
                    f"valid names: {', '.join(valid)}."
                )
        return out

    def describe(self) -> str:
        """Human-readable list of every prior, one per line."""
        lines = ["Common effects"]
        lines += [f"    {k} ~ {v!r}" for k, v in self.common.items()]
        if self.sd:
            lines.append("Group-level standard deviations")
            lines += [f"    {k} ~ {v!r}" for k, v in self.sd.items()]
        if self.eta:
            lines.append("Group-level correlations")
            lines += [f"    cor({k}) ~ LKJ(eta={_fmt(v)})" for k, v in self.eta.items()]
        if self.family:
            lines.append("Family parameters")
            lines += [f"    {k} ~ {v!r}" for k, v in self.family.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for saving a fit)."""
        return {
            "common": {k: v.to_dict() for k, v in self.common.items()},
            "sd": {k: v.to_dict() for k, v in self.sd.items()},
            "eta": dict(self.eta),
            "family": {k: v.to_dict() for k, v in self.family.items()},
            "parameter_sd": dict(self.parameter_sd),
        }


def _as_prior(value: Any, key: str) -> Prior:
    if isinstance(value, Prior):
        return value
    name = getattr(value, "name", None)
    args = getattr(value, "args", None)
    if isinstance(name, str) and isinstance(args, dict):  # a bambi.Prior
        return Prior(name, **args)
    raise PriorError(
        f"The prior for {key!r} must be a bayesmixed.Prior such as "
        f"Prior('Normal', mu=0, sigma=10), got {type(value).__name__}."
    )


def _eta_of(value: Any, key: str) -> float:
    if isinstance(value, Prior):
        if value.name != "LKJ" or set(value.params) != {"eta"}:
            raise PriorError(f"The prior for {key!r} must be Prior('LKJ', eta=...) or a number.")
        value = value.params["eta"]
    try:
        eta = float(value)
    except (TypeError, ValueError):
        raise PriorError(
            f"The LKJ eta for {key!r} must be a positive number, got {value!r}."
        ) from None
    if not np.isfinite(eta) or eta <= 0:
        raise PriorError(f"The LKJ eta for {key!r} must be positive (> 0), got {value!r}.")
    return eta


def default_priors(design: Any) -> PriorSet:
    """Default priors for a :class:`~bayesmixed.design.Design` (see the module docstring)."""
    common = design.common
    sd: dict[str, Prior] = {}
    eta: dict[str, float] = {}
    for fac in design.factors:
        for k, term in enumerate(fac.terms):
            col = fac.X[:, k]
            if term == "Intercept" or np.all(col == 1):
                scale = common.intercept_sd_scale
            else:
                scale = slope_sd_scale(common, col)
            sd[f"sd({term}|{fac.label})"] = Prior("HalfNormal", sigma=float(scale))
        if fac.correlated_blocks:
            eta[fac.label] = 1.0
    term_priors = dict(common.term_priors)
    if common.logit_like:
        term_priors = _logit_common_priors(common)
    parameter_sd: dict[str, str] = {}
    for par in getattr(design, "parameters", []):
        term_priors.update(_parameter_common_priors(par))
        for fac in par.factors:
            for k, term in enumerate(fac.terms):
                sd_x = float(np.std(fac.X[:, k]))
                scale = 2.5 if np.all(fac.X[:, k] == 1) or sd_x == 0 else 2.5 / sd_x
                key = f"sd({term}|{fac.label})"
                sd[key] = Prior("HalfNormal", sigma=float(scale))
                parameter_sd[key] = par.name
            if fac.correlated_blocks:
                eta[f"{par.name}|{fac.label}"] = 1.0
    return PriorSet(common=term_priors, sd=sd, eta=eta, family=dict(common.family_priors),
                    parameter_sd=parameter_sd)


def _parameter_common_priors(par: Any) -> dict[str, Prior]:
    """Priors of a parameter formula's common terms, on the parameter's link scale.

    The intercept gets brms's ``StudentT(3, 0, 2.5)``; a slope on ``x`` ``Normal(0, 2.5 /
    sd(x))``, weakly informative whatever the scale of ``x`` (Bambi's ``Normal(0, 1)`` is
    not scaled, and centred at 0 it pulls a log-sigma of 3 towards 0).
    """
    out: dict[str, Prior] = {}
    for term, sl in par.term_slices.items():
        cols = par.X[:, sl]
        if np.all(cols == 1):
            out[term] = Prior("StudentT", nu=3.0, mu=0.0, sigma=2.5)
            continue
        sds = np.std(cols, axis=0)
        sigma = np.where(sds > 0, 2.5 / np.where(sds > 0, sds, 1.0), 2.5)
        out[term] = Prior("Normal", mu=0.0 if sigma.size == 1 else np.zeros(sigma.size),
                          sigma=float(sigma[0]) if sigma.size == 1 else sigma)
    return out


def _logit_common_priors(common: Any) -> dict[str, Prior]:
    """rstanarm-style priors on the logit/probit scale: ``Normal(0, 2.5 / sd(x))``.

    Bambi's defaults for these families (``Normal(0, 1)`` for dummies) shrink sizeable
    log-odds ratios (cbpp's period effects of -1 to -1.6) towards zero; these are wider.
    """
    out: dict[str, Prior] = {}
    for term, sl in common.term_slices.items():
        cols = common.X[:, sl]
        if term == "Intercept":
            out[term] = Prior("Normal", mu=0.0, sigma=2.5)
            continue
        sds = np.std(cols, axis=0)
        sigma = np.where(sds > 0, 2.5 / np.where(sds > 0, sds, 1.0), 2.5)
        out[term] = Prior("Normal", mu=0.0 if sigma.size == 1 else np.zeros(sigma.size),
                          sigma=float(sigma[0]) if sigma.size == 1 else sigma)
    return out


def slope_sd_scale(common: Any, x: np.ndarray) -> float:
    """Scale of the coefficient of column ``x``, used for that column's group SD.

    Bambi's ``2.5 sd(y) / sd(x)``, with ``sd(y) = 1`` on the logit/probit scale.
    """
    sd = float(np.std(x))
    if sd == 0:
        return common.intercept_sd_scale
    if common.logit_like:
        return 2.5 / sd
    return 2.5 * common.response_std / sd
