"""Command-line checks shared by the chat server and client."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def number_in(
    kind: Callable[[str], Number], low: Number, high: Number, what: str
) -> Callable[[str], Number]:
    """An argparse type: a number of ``kind`` from ``low`` to ``high``
    (inclusive; NaN is refused), or an error that says ``what`` it must
    be."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    return parse
