"""Shared fixtures: small fits reused across tests (sampling is the slow part)."""

from __future__ import annotations

import os
import warnings

import pytest

import bayesmixed as bm

os.environ.setdefault("CI", "1")  # no progress bars in test logs
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


@pytest.fixture(scope="session")
def sleepstudy():
    return bm.datasets.sleepstudy()


@pytest.fixture(scope="session")
def sleep_fit(sleepstudy):
    """A short fit of the article's model, for tests of shapes and labels."""
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    return model.fit(draws=200, tune=300, chains=2, random_seed=11)
