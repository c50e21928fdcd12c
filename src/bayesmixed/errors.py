"""Exception and warning classes, one per pipeline stage.

Each stage of the pipeline (formula -> design -> priors -> build -> sampling -> results ->
predictions) raises its own error type, so a message says which stage refused the input.
All of them derive from :class:`BayesMixedError`, which derives from :class:`ValueError`
so that generic ``except ValueError`` handlers keep working.

Examples
--------
>>> import bayesmixed as bm
>>> try:                                                              # doctest: +SKIP
...     bm.Model("Reaction ~ Days + (Days | Subjet)", bm.datasets.sleepstudy())
... except bm.errors.FormulaError as err:
...     print(err)
"""

from __future__ import annotations

__all__ = [
    "BayesMixedError",
    "ConvergenceWarning",
    "DataError",
    "FamilyError",
    "FitError",
    "FormulaError",
    "IdentifiabilityWarning",
    "PredictionError",
    "PriorError",
    "SamplingError",
    "SingularFitWarning",
]


class BayesMixedError(ValueError):
    """Base class of every error raised by bayesmixed."""


class FormulaError(BayesMixedError):
    """The model formula cannot be parsed or uses unsupported syntax."""


class DataError(BayesMixedError):
    """The data do not fit the formula (missing columns, bad values, wrong types)."""


class FamilyError(BayesMixedError):
    """Unknown family or link, or a response outside the family's support."""


class PriorError(BayesMixedError):
    """A prior refers to an unknown term or has invalid parameters."""


class SamplingError(BayesMixedError):
    """Invalid sampler options (draws, chains, sampler name, ...)."""


class FitError(BayesMixedError):
    """A fit cannot be saved, loaded or queried as asked."""


class PredictionError(BayesMixedError):
    """Prediction data do not match the fitted model (unseen levels, missing columns)."""


class ConvergenceWarning(UserWarning):
    """The sampler reported divergences, high R-hat or low effective sample size."""


class IdentifiabilityWarning(UserWarning):
    """The data can hardly tell a group-level term apart from another one.

    For example a slope that is constant within every group (``(x | g)`` where ``x`` only
    varies between groups), more group-effect columns than levels, or as many levels as
    observations in a model with a residual scale.
    """


class SingularFitWarning(UserWarning):
    """A group SD piles up at zero: the Bayesian analogue of lme4's "boundary (singular) fit"."""
