"""Fitting helper shared by the model tests (``from _fits import quiet_fit``).

pytest puts ``tests/`` on ``sys.path`` when it imports a test module (the folder is not a
package), so test modules import this one by its bare name.  The reference data sets the
same tests fit are the ``datasets`` fixture of ``conftest.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from helpers.models import MixedResult, fit_mixed


def quiet_fit(*args, **kwargs) -> MixedResult:
    """fit_mixed with its re-emitted warnings recorded (they are checked in test_models)."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        return fit_mixed(*args, **kwargs)


class LazyFits(dict):
    """Reference fits by fitting path (``"auto"``, ``"statsmodels"``), made the first time a
    test asks for a path: ``make test-fast`` leaves out the slow statsmodels path's tests,
    and then never pays for its fits."""

    def __init__(self, fit_path: Callable[[str], dict]) -> None:
        super().__init__()
        self._fit_path = fit_path

    def __missing__(self, engine: str) -> dict:
        fits = self._fit_path(engine)
        self[engine] = fits
        return fits
