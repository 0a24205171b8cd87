"""Argparse value types shared by the ``ecomcore`` subcommands."""

from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_int", "non_negative_real", "positive_int"]


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
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


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
