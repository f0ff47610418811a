"""Small statistical helpers shared by the correlation modules.

:mod:`helpers.meta_analysis` (effect-size conversions, the benchmark table),
:mod:`helpers.associations` (the patient-level alliance–outcome r) and
:mod:`helpers.agreement` (client–therapist rater agreement) check their scalar
arguments and build Fisher-z intervals with these functions, so a confidence
level, a count or an interval means the same in all three.

Arguments that cannot be used raise :class:`~helpers.errors.SettingsError`
(a ``ValueError``); a value that is not a real number at all raises
``TypeError``.
"""

from __future__ import annotations

import math
import numbers

from scipy import stats

from helpers.errors import SettingsError

__all__ = ["confidence_level", "fisher_interval", "real_number", "whole_number", "z_critical"]


def real_number(value: object, name: str) -> float:
    """``value`` as a finite float, or a clear TypeError/SettingsError.

    Parameters
    ----------
    value : object
        The argument to check (``bool`` is refused: it is not a number here).
    name : str
        Its name, as the message gives it.

    Examples
    --------
    >>> real_number(3, "t")
    3.0
    >>> real_number(float("nan"), "t")
    Traceback (most recent call last):
    ...
    helpers.errors.SettingsError: t is missing (NaN); a number is needed. Pass a number.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    out = float(value)
    if math.isnan(out):
        raise SettingsError(f"{name} is missing (NaN); a number is needed.", fix="Pass a number.")
    if math.isinf(out):
        raise SettingsError(f"{name} must be finite, got {out}.", fix="Pass a finite number.")
    return out


def whole_number(value: object, name: str, minimum: int) -> int:
    """A whole number >= ``minimum`` (floats such as 120.0 are accepted).

    Examples
    --------
    >>> whole_number(120.0, "n", minimum=4)
    120
    >>> whole_number(3, "n", minimum=4)
    Traceback (most recent call last):
    ...
    helpers.errors.SettingsError: n must be at least 4, got 3.
    """
    out = real_number(value, name)
    if out != int(out):
        raise SettingsError(
            f"{name} must be a whole number, got {out}.", fix="Pass a whole number."
        )
    if out < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {int(out)}.")
    return int(out)


def confidence_level(level: object) -> float:
    """A confidence level as a proportion strictly between 0 and 1.

    Examples
    --------
    >>> confidence_level(0.9)
    0.9
    >>> confidence_level(95)
    Traceback (most recent call last):
    ...
    helpers.errors.SettingsError: level is the confidence level as a proportion (e.g. 0.95), got 95.0; it must lie strictly between 0 and 1.
    """  # noqa: E501
    out = real_number(level, "level")
    if not 0.0 < out < 1.0:
        raise SettingsError(
            f"level is the confidence level as a proportion (e.g. 0.95), got {out}; "
            "it must lie strictly between 0 and 1."
        )
    return out


def z_critical(level: float) -> float:
    """Two-sided standard-normal quantile, 1.959964 for ``level`` = 0.95.

    >>> round(z_critical(0.95), 6)
    1.959964
    """
    return float(stats.norm.ppf(0.5 + level / 2.0))


def fisher_interval(r: float, se_z: float, level: float) -> tuple[float, float]:
    """Confidence interval of a correlation: ``tanh(atanh(r) ± z * se_z)``.

    Parameters
    ----------
    r : float
        The correlation, strictly between -1 and 1.
    se_z : float
        Standard error on Fisher's z scale (``1 / sqrt(n - 3)`` for a Pearson r of n pairs).
    level : float
        Confidence level as a proportion.

    Examples
    --------
    >>> [round(bound, 4) for bound in fisher_interval(0.3, 1 / math.sqrt(97), 0.95)]
    [0.1101, 0.4688]
    """
    z = math.atanh(r)
    half = z_critical(level) * se_z
    return math.tanh(z - half), math.tanh(z + half)
