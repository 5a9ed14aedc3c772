"""The derive command, run as a user runs it (a subprocess)."""

import json
import math
import subprocess
import sys

import mpmath
import pytest
import sympy as sp

import featfate_sym as ff
from checks import assert_one_line_error
from featfate_sym import cli
from featfate_sym import derive as derive_module


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


# ------------------------------------------------------------------ no code from input

INJECTIONS = [
    '__import__("os").system("touch {marker}")',
    '__import__("pathlib").Path("{marker}").touch()',
    "().__class__",
    "lambda: 1",
    "x.real",
    "[1]",
    "1;2",
    "exec('open(\"{marker}\", \"w\")')",
    "1" * 201,
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_eval_values_are_never_run_as_code(text, tmp_path):
    marker = tmp_path / "marker"
    value = text.format(marker=marker)
    proc = derive("lt.transferability", "--eval", f"gamma={value}", "theta=pi/4", "sigma=0.2", "lam=0")
    assert_one_line_error(proc, "parameter gamma", prefix="error:")
    assert not marker.exists()
    assert proc.stdout == ""


def test_eval_parameter_given_twice_exits_2():
    proc = derive("lt.transferability", "--eval", "gamma=0.5", "gamma=0.6", "theta=1", "sigma=0.2", "lam=0")
    assert_one_line_error(proc, "parameter gamma", "twice")


def test_eval_accepts_expressions_exactly():
    proc = derive("lt.transferability", "--eval", "gamma=sqrt(2)/2", "theta=pi/4", "sigma=2^-3", "lam=0")
    assert proc.returncode == 0, proc.stderr
    api = ff.get("lt.transferability").evaluate(gamma=2**-0.5, theta=mpmath.pi / 4, sigma=0.125, lam=0.0)
    assert float(proc.stdout) == pytest.approx(api, rel=1e-14)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("pi/4", sp.pi / 4),
        ("2^-3", sp.Rational(1, 8)),
        ("2**-3", sp.Rational(1, 8)),
        ("sqrt(2)/2", sp.sqrt(2) / 2),
        ("1e-300", sp.Rational(1, 10**300)),
        ("2.5E3", sp.Integer(2500)),
        ("-(1+2)*3", sp.Integer(-9)),
        ("inf", sp.oo),
        ("-oo", -sp.oo),
        ("0.1", sp.Rational(1, 10)),
        ("3pi/8", 3 * sp.pi / 8),
        ("e", sp.E),
        ("-2^2", sp.Integer(-4)),
        ("2^3^2", sp.Integer(512)),
        (" .5 ", sp.Rational(1, 2)),
    ],
)
def test_number_grammar_values(text, expected):
    value = cli.parse_number(text, "gamma")
    assert value == expected, (text, value)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("abc", "unknown name 'abc'"),
        ("1/0", "divides by zero"),
        ("inf-inf", "not a real number"),
        ("sqrt(-1)", "not a real number"),
        ("10^10^10", "more than 4000 digits"),
        ("1e999999999", "exponent"),
        ("(" * 60 + "1" + ")" * 60, "nests deeper"),
        ("2 3", "unexpected '3'"),
        ("1,2", "unexpected character ','"),
        ("'1'", "unexpected character"),
        ("2e", "expected an operator before 'e'"),
        ("nan", "unknown name 'nan'"),
    ],
)
def test_number_grammar_refusals(text, reason):
    with pytest.raises(ValueError) as info:
        cli.parse_number(text, "gamma")
    message = str(info.value)
    assert message.startswith("gamma must be a number") and reason in message and "\n" not in message


def test_number_with_dps_keeps_every_digit():
    values = derive_module._parse_values(["gamma=0.1", "sigma=1e-300", "theta=pi/4", "lam=inf"], 100)
    assert values["gamma"].startswith("0.1" + "0" * 100)  # exact 1/10, not the double nearest it
    assert mpmath.mpf(values["sigma"]) == mpmath.mpf(10) ** -300 or abs(
        mpmath.mpf(values["sigma"]) / mpmath.mpf("1e-300") - 1) < mpmath.mpf(10) ** -100
    with mpmath.workdps(110):
        assert abs(mpmath.mpf(values["theta"]) - mpmath.pi / 4) < mpmath.mpf(10) ** -105
    assert values["lam"] == "inf"
    floats = derive_module._parse_values(["gamma=0.1", "theta=pi/4"], None)
    assert floats == {"gamma": 0.1, "theta": math.pi / 4}


def test_no_user_text_reaches_sympify_or_eval():
    """The modules that read command lines, sweep folders and results files call no
    string evaluator (the theory modules sympify only their own expressions)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    commands = [root / "featfate_sym" / f"{name}.py" for name in ("cli", "derive", "simulate", "plot", "report")]
    sources = [*commands, *root.glob("featfate_sym/sweeps/*.py"), *root.glob("numerics/*.py")]
    assert len(sources) >= 14
    pattern = re.compile(r"\b(sympify|parse_expr|eval|exec|literal_eval)\s*\(")
    offenders = [f"{p.name}:{n}" for p in sources for n, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
