"""derivations/corrections.md is what featfate_sym.corrections renders, and every command
it shows still prints what it shows (run in-process)."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

import featfate_sym as ff
from featfate_sym import corrections, derive

ROOT = Path(__file__).resolve().parents[1]

_DERIVE = "python -m featfate_sym.derive "
_PYTHON_C = "python -c "

CHECKS = [(entry, check) for entry in corrections.CORRECTIONS for check in entry.checks]


def run_command(command: str) -> str:
    """What ``command`` prints, run in this process (trailing whitespace stripped)."""
    if command.startswith(_DERIVE):
        return derive.run(shlex.split(command[len(_DERIVE):])).rstrip()
    if command.startswith(_PYTHON_C):
        (code,) = shlex.split(command[len(_PYTHON_C):])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<python -c>", "exec"), {"__name__": "__main__"})
        return out.getvalue().rstrip()
    raise AssertionError(f"not a derive or python -c command: {command}")


def test_document_up_to_date():
    committed = ROOT / "derivations" / "corrections.md"
    assert committed.exists(), f"{committed} missing: run python -m featfate_sym.derive --write-docs derivations"
    assert committed.read_text() == corrections.document(), (
        "corrections.md is stale: run python -m featfate_sym.derive --write-docs derivations"
    )


def test_entries_are_complete_and_name_registered_keys():
    assert len(corrections.CORRECTIONS) >= 6
    registered = set(ff.keys())
    for entry in corrections.CORRECTIONS:
        assert entry.title and entry.where and entry.stated and entry.right and entry.checks
        for key in entry.keys:
            assert key in registered, f"{entry.title}: unknown key {key}"
        for check in entry.checks:
            # the recorded output is itself an instance of the pattern
            assert re.fullmatch(check.pattern, check.output), (entry.title, check.output)


@pytest.mark.parametrize("entry, check", CHECKS, ids=[c.command[:90] for _, c in CHECKS])
def test_command_prints_what_the_document_shows(entry, check):
    output = run_command(check.command)
    assert re.fullmatch(check.pattern, output), f"{check.command}\nprinted:\n{output}\nexpected /{check.pattern}/"
