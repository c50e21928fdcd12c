"""Shared fixtures: small fits reused across tests (sampling is the slow part)."""

from __future__ import annotations

import os
import warnings

import pytest

import bayesmixed as bm

os.environ.setdefault("CI", "1")  # no progress bars in test logs
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Each test module starts without the previous modules' compiled programs.

    One process compiles hundreds of distinct programs over the suite; each holds memory
    mappings, and XLA aborts a process that reaches the kernel's limit (65,530). Fits also
    release them by themselves near the limit (``bayesmixed.engines.run``); releasing per
    module keeps the suite's memory low and its results independent of the module order.
    """
    bm.clear_compiled()
    yield


@pytest.fixture(scope="session")
def sleepstudy():
    return bm.datasets.sleepstudy()


@pytest.fixture(scope="session")
def sleep_fit(sleepstudy):
    """A short fit of the article's model, for tests of shapes and labels."""
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    return model.fit(draws=200, tune=300, chains=2, random_seed=11)
