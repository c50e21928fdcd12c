"""Many fits in one process (issue 14): programs compiled once, memory and mappings flat.

A loop of fits of ``y ~ x + (x | g)`` on fresh 40-row data sets, as simulation studies and
cross-validation run them. Each data set is shifted by its own intercept, so a compiled
program that kept an earlier data set's values would give the wrong answer. Before the
engines took their data as arguments, the Gibbs engine left about 37 MB and 570 memory
mappings behind per fit, and the full NUTS path about 8.5 MB and 130 mappings.
"""

from __future__ import annotations

import gc
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayesmixed as bm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from many_fits import OPTIONS, n_maps, rss_mb, simulate

FITS, WARMUP = 24, 6


def _loop(engine: str, fits: int = FITS) -> tuple[list[float], list[int]]:
    rss, maps, seen = [], [], set()
    for i in range(fits):
        data = simulate(500 + i)
        data["y"] = data["y"] + 2 * i  # intercept 1 + 2 i
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bm.Model("y ~ x + (x | g)", data).fit(
                draws=100, tune=100, chains=1, random_seed=i, progressbar=False,
                **OPTIONS[engine])
        assert fit.settings.engine == engine
        intercept = float(fit.idata["posterior"]["Intercept"].mean())
        assert abs(intercept - (1 + 2 * i)) < 1.5, (i, intercept)  # this data set's, not the last
        # after the first fit, nothing is compiled again, whichever parametrisation the glmm
        # engine chose for the factor (centred or not: data of one compiled program)
        if i:
            assert fit.idata["posterior"].attrs.get("compile_time", 0.0) < 0.5, i
        seen.add(fit.idata["posterior"].attrs.get("centred"))
        del fit
        gc.collect()
        rss.append(rss_mb())
        maps.append(n_maps())
    if engine == "glmm":
        assert seen == {"g", "none"}  # both parametrisations met, one program
    return rss, maps


def _check_flat(rss: list[float], maps: list[int]) -> None:
    span = len(rss) - 1 - WARMUP
    growth = (rss[-1] - rss[WARMUP]) / span
    assert growth < 1.5, f"RSS grows {growth:.2f} MB per fit: {[round(r) for r in rss]}"
    assert maps[-1] - maps[WARMUP] < 30, f"memory maps grow: {maps}"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("engine", ["marginal", "gibbs"])
def test_many_fits_keep_memory_flat(engine):
    _check_flat(*_loop(engine))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_many_full_nuts_fits_keep_memory_flat():
    _check_flat(*_loop("glmm"))  # the full model (marginalize=False)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_clear_compiled_releases_mappings_and_fits_the_same_again():
    from bayesmixed.engines.common import memory_maps

    data = simulate(7)
    options = dict(draws=100, tune=100, chains=1, random_seed=3, progressbar=False)
    first = bm.Model("y ~ x + (x | g)", data).fit(**options, **OPTIONS["glmm"])
    held = memory_maps()[0]
    bm.clear_compiled()
    assert memory_maps()[0] < held - 100  # the samplers' executables are gone
    again = bm.Model("y ~ x + (x | g)", data).fit(**options, **OPTIONS["glmm"])
    for name in ("Intercept", "x", "sigma"):
        np.testing.assert_array_equal(again.idata["posterior"][name].values,
                                      first.idata["posterior"][name].values)


def test_fits_release_compiled_programs_near_the_mapping_limit(monkeypatch):
    from bayesmixed import engines

    released = []
    monkeypatch.setattr(engines, "clear_compiled", lambda: released.append(True))
    monkeypatch.setattr(engines, "_MAPS_SEEN", [])  # no recent count from earlier fits
    monkeypatch.setattr(engines, "memory_maps", lambda: (40_000, 65_530))
    fit = bm.Model("y ~ x + (x | g)", simulate(8)).fit(
        draws=50, tune=50, chains=1, random_seed=1, progressbar=False)
    assert released == [True]
    monkeypatch.setattr(engines, "memory_maps", lambda: (20_000, 65_530))
    fit.update(random_seed=2)
    assert released == [True]  # below half the limit: programs kept


def test_mappings_are_counted_at_most_once_a_second_far_below_the_limit(monkeypatch):
    from bayesmixed import engines

    counts = []
    clock = [100.0]
    monkeypatch.setattr(engines, "clear_compiled", lambda: counts.append("released"))
    monkeypatch.setattr(engines.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(engines, "_MAPS_SEEN", [])

    def maps(held):
        def count():
            counts.append(held)
            return held, 65_530
        return count

    monkeypatch.setattr(engines, "memory_maps", maps(2_000))
    engines._release_before_the_limit()
    clock[0] += 0.5
    engines._release_before_the_limit()  # 2,000 is far below: not counted again yet
    assert counts == [2_000]
    clock[0] += 0.6
    engines._release_before_the_limit()  # a second later: counted
    assert counts == [2_000, 2_000]
    monkeypatch.setattr(engines, "memory_maps", maps(20_000))
    clock[0] += 1.1
    engines._release_before_the_limit()
    clock[0] += 0.1
    engines._release_before_the_limit()  # 20,000 is more than half the threshold: counted
    assert counts == [2_000, 2_000, 20_000, 20_000]
    monkeypatch.setattr(engines, "memory_maps", maps(40_000))
    clock[0] += 0.1
    engines._release_before_the_limit()
    assert counts[-2:] == [40_000, "released"]


def _compilations(fit_once) -> list[str]:
    """The XLA programs compiled (or loaded from the persistent cache) while fitting."""
    import logging

    import jax

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("Compiling "):
                messages.append(text.split(" with ")[0])

    handler = Collect()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        fit_once()
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)
    return messages


def test_glmm_compiles_once_per_structure_whatever_the_centring():
    """The glmm engine centres a factor or not from the data (issue 14): the choice is an
    argument of its programs, so a data set that gets the other choice compiles nothing
    (it compiled a second sampler and second warm-start helpers, a p90 of 1.7 s)."""
    options = dict(draws=50, tune=50, chains=1, progressbar=False, **OPTIONS["glmm"])
    fits = {}

    def fit(seed: int) -> None:
        data = simulate(500 + seed)
        data["y"] = data["y"] + 2 * seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = bm.Model("y ~ x + (x | g)", data).fit(random_seed=seed, **options)
        fits[seed] = fitted.idata["posterior"].attrs["centred"]

    fit(0)  # compiles the structure's programs (centred: 500 is an informative data set)
    later = _compilations(lambda: [fit(seed) for seed in (1, 4, 2)])
    assert [fits[s] for s in (0, 1, 4, 2)] == ["g", "none", "g", "none"]
    assert later == []
