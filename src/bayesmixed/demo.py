"""End-to-end demo: ``python -m bayesmixed.demo`` fits sleepstudy and prints the summary."""

from __future__ import annotations

import gc
import sys
import time


def main() -> None:
    """Fit ``Reaction ~ Days + (Days | Subject)`` on sleepstudy and print the results."""
    start = time.perf_counter()
    import bayesmixed as bm

    data = bm.datasets.sleepstudy()
    model = bm.Model("Reaction ~ Days + (Days | Subject)", data)
    print(model, end="\n\n")
    fit = model.fit(draws=1000, tune=1000, chains=4, random_seed=1)
    print(fit, end="\n\n")
    print("Per-subject coefficients (posterior means):")
    coefs = fit.coef()["Subject"].xs("mean", axis=1, level="stat")
    print(coefs.round(2).head(6).to_string(), end="\n\n")
    print(f"Done in {time.perf_counter() - start:.1f} s (sampling {fit.sampling_time:.1f} s).")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    # The process ends here: let it skip the interpreter's last garbage collection over
    # the millions of objects PyMC, Bambi, ArviZ and JAX create (a second or more of
    # teardown, more than the fit). Nothing is left to finalise: output is flushed and
    # every file the fit wrote is closed.
    gc.freeze()
