"""Argparse value types shared by the ``ecomcore`` subcommands."""

from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_int", "non_negative_real", "positive_int"]


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1.

    Parameters
    ----------
    text : str
        The command-line text.

    Returns
    -------
    int
    """
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0.

    Parameters
    ----------
    text : str
        The command-line text.

    Returns
    -------
    int
    """
    return _int_at_least(text, 0, "an integer >= 0")


def non_negative_real(text: str) -> float:
    """Argparse type: a finite number >= 0.

    Parameters
    ----------
    text : str
        The command-line text.

    Returns
    -------
    float
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value
