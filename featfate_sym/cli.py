"""Argument parsing shared by the study scripts in ``numerics/``.

Bad arguments end the script with one line on stderr naming the parameter and its
allowed range, exit status 2, no usage block and no traceback (the package's own
commands report the same way through their ``main``).
"""

from __future__ import annotations

import argparse
import math

__all__ = ["Parser", "number"]


class Parser(argparse.ArgumentParser):
    """``argparse`` parser whose errors are one line, ``PROG: message``, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def number(name: str, *, lower=None, upper=None, lower_open=False, upper_open=False, integer=False):
    """An ``argparse`` type: a finite number (an integer if ``integer``) in the stated
    range, named with its range in the error."""
    bound = []
    if lower is not None:
        bound.append(f"{'>' if lower_open else '>='} {lower:g}")
    if upper is not None:
        bound.append(f"{'<' if upper_open else '<='} {upper:g}")
    allowed = f"{name} must be {'an integer' if integer else 'a number'}" + (
        f" {' and '.join(bound)}" if bound else "")

    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{allowed} (got {text!r})") from None
        bad = not math.isfinite(value)
        bad = bad or (lower is not None and (value <= lower if lower_open else value < lower))
        bad = bad or (upper is not None and (value >= upper if upper_open else value > upper))
        if bad:
            raise argparse.ArgumentTypeError(f"{allowed} (got {text})")
        return value

    return parse
