"""Argument types shared by the commands, so that argparse refuses a bad value before anything runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["LARGEST", "whole_number"]

#: The largest whole number an argument takes: the largest a database's 64-bit integer holds.
LARGEST = 2**63 - 1


def whole_number(*, minimum: int, what: str) -> Callable[[str], int]:
    """An argparse ``type`` that accepts a whole number from ``minimum`` to :data:`LARGEST`.

    ``what`` names the number in the message argparse prints when the value is refused:
    ``whole_number(minimum=0, what="a number of rows")`` refuses ``-1`` with
    ``argument --rows: expected a number of rows, 0 or more, got '-1'``.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, {minimum} or more, got {text!r}")
        if value > LARGEST:
            raise argparse.ArgumentTypeError(f"expected {what}, at most {LARGEST}, got {text!r}")
        return value

    return parse
