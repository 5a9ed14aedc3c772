"""The derive command, run as a user runs it (a subprocess)."""

import json
import subprocess
import sys

import mpmath
import pytest

import featfate_sym as ff
from checks import assert_one_line_error


def derive(*args):
    return subprocess.run(
        [sys.executable, "-m", "featfate_sym.derive", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_list_names_every_key():
    proc = derive("--list")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.strip().splitlines()]
    assert listed == ff.keys()


def test_json_records_for_selected_keys():
    proc = derive("lt.transferability", "scratch.risk", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["key"] for r in records] == ["lt.transferability", "scratch.risk"]
    for rec in records:
        assert {"key", "title", "status", "parameters", "latex", "sympy"} <= set(rec)
        # the exact SymPy string re-parses to the registered expression
        import sympy as sp

        assert sp.sympify(rec["sympy"]) == ff.get(rec["key"]).expr


def test_steps_are_printed():
    proc = derive("ft.transferability_exact", "--steps")
    assert proc.returncode == 0, proc.stderr
    assert "derivation:" in proc.stdout
    assert len(ff.get("ft.transferability_exact").steps) >= 3


@pytest.mark.parametrize("fmt", ["text", "latex", "markdown"])
def test_formats(fmt):
    proc = derive("scratch.risk", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert ff.get("scratch.risk").latex() in proc.stdout


def test_eval_float64_matches_api():
    proc = derive("lt.transferability", "--eval", "gamma=0.5", "theta=pi/4", "sigma=0.2", "lam=0")
    assert proc.returncode == 0, proc.stderr
    api = ff.get("lt.transferability").evaluate(gamma=0.5, theta=mpmath.pi / 4, sigma=0.2, lam=0.0)
    assert float(proc.stdout) == pytest.approx(api, rel=1e-15)


def test_eval_50_digits():
    proc = derive("lt.transferability", "--eval", "gamma=1/2", "theta=pi/4", "sigma=1/5", "lam=0", "--dps", "50")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    assert len(text.replace("-", "").replace(".", "")) >= 45
    with mpmath.workdps(50):
        ref = ff.get("lt.transferability").mpmath(
            mpmath.mpf(1) / 2, mpmath.pi / 4, mpmath.mpf(1) / 5, mpmath.mpf(0)
        )
        assert abs(mpmath.mpf(text) - ref) < mpmath.mpf(10) ** -45


def test_unknown_key_exits_2():
    assert_one_line_error(derive("no.such_result"), "no.such_result")


def test_missing_parameter_exits_2():
    assert_one_line_error(derive("lt.transferability", "--eval", "gamma=0.5", "theta=1"), "sigma")


def test_out_of_domain_exits_2():
    proc = derive("lt.transferability", "--eval", "gamma=-1", "theta=1", "sigma=0.2", "lam=0")
    assert_one_line_error(proc, "gamma", "(0, inf)")


def test_bad_value_and_bad_flag_exit_2():
    assert_one_line_error(derive("scratch.risk", "--eval", "gamma=abc", "sigma=1"), "gamma")
    assert_one_line_error(derive("--no-such-flag"), "--no-such-flag")
    assert_one_line_error(derive("scratch.risk", "--eval", "gamma=0.5", "sigma=1", "--dps", "0"), "--dps")
