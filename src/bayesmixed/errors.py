"""Exception and warning classes, one per pipeline stage.

Each stage of the pipeline (formula -> design -> priors -> build -> sampling -> results ->
predictions) raises its own error type, so a message says which stage refused the input.
All of them derive from :class:`BayesMixedError`, which derives from :class:`ValueError`
so that generic ``except ValueError`` handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "BayesMixedError",
    "ConvergenceWarning",
    "DataError",
    "FamilyError",
    "FitError",
    "FormulaError",
    "PredictionError",
    "PriorError",
    "SamplingError",
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
