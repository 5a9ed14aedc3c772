"""Figures: every figure renders to PNG and PDF, the linear-transfer zero contour lies on
the sign change of the compiled transferability, simulation points are the replicate
means of the results file, and the command rejects bad arguments with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr
from matplotlib.container import ErrorbarContainer
from matplotlib.image import imread

import featfate_sym as ff
from featfate_sym import plot
from featfate_sym.plotting import FIGURES, REQUIRES, experiment, phase, style

# quick figures with their fast arguments
QUICK_ARGS = {"scratch": {"sigmas": (0.0, 0.2)}, "ft-phase": {"sigma": 1.0, "L": 3}}


def _need(name):
    missing = [k for k in REQUIRES[name] if k not in ff.keys()]
    if missing:
        pytest.fail(f"{name} needs unregistered results {missing}")


def _render(name, tmp_path, results=None, **kwargs):
    with style.figure_style():
        fig = FIGURES[name](**{**QUICK_ARGS.get(name, {}), **kwargs}, quick=True, results=results)
        return fig, style.save(fig, tmp_path, name, style.QUICK["dpi"])


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_renders_png_and_pdf(name, tmp_path):
    _need(name)
    _, (png, pdf) = _render(name, tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    pixels = imread(png)[..., :3]
    # a blank (single-colour) image has zero variance; a drawn figure has lines and maps
    assert pixels.std() > 0.05
    # and more than a sliver of non-white pixels
    assert np.mean(pixels.min(axis=-1) < 0.9) > 0.02


# --- the zero contour of lt-phase ------------------------------------------------------
def _boundary_lines(fig):
    return [line for ax in fig.axes for line in ax.lines if line.get_gid() == phase.BOUNDARY_GID]


@pytest.mark.parametrize("sigma, lam", [(0.2, 0.0), (0.0, 0.0), (0.1, 0.3)])
def test_lt_phase_contour_is_the_sign_change_of_the_transferability(sigma, lam):
    _need("lt-phase")
    with style.figure_style():
        fig = phase.lt_phase(sigma, lam, quick=True)
    lines = _boundary_lines(fig)
    assert lines, "no zero contour drawn"
    t = ff.get("lt.transferability")
    checked = 0
    for line in lines:
        theta, gamma = (np.asarray(a, dtype=float) for a in line.get_data())
        keep = (gamma > 0.02) & (np.abs(gamma - 1) > 1e-3) & (gamma < 2)
        theta, gamma = theta[keep], gamma[keep]
        h = 2e-3
        ones = np.ones_like(gamma)
        sg, sl = sigma * ones, lam * ones
        on = t.numpy(gamma, theta, sg, sl)
        across_gamma = t.numpy(gamma - h, theta, sg, sl) * t.numpy(gamma + h, theta, sg, sl)
        th_lo, th_hi = np.clip(theta - h, 0, np.pi / 2), np.clip(theta + h, 0, np.pi / 2)
        across_theta = t.numpy(gamma, th_lo, sg, sl) * t.numpy(gamma, th_hi, sg, sl)
        # the curve separates positive from negative transfer (across gamma, or across
        # theta at the tip where the two gamma < 1 roots meet) ...
        assert np.all((across_gamma < 0) | (across_theta <= 0)), "a boundary point without a sign change"
        # ... and T vanishes on it: far smaller than one grid step away (|dT/dgamma| h)
        neighbours = np.maximum(np.abs(t.numpy(gamma + h, theta, sg, sl)), np.abs(t.numpy(gamma - h, theta, sg, sl)))
        assert np.all(np.abs(on) <= 1e-6 + 1e-2 * neighbours)
        checked += gamma.size
    assert checked > 50


def test_lt_phase_contour_passes_through_the_papers_check_values():
    """SPEC.md check values at sigma = 0.2, lam = 0, theta = 45 degrees: negative transfer
    on (0.549, 0.911) and beyond 1.080 (typed here as independent expectations)."""
    _need("lt-phase")
    with style.figure_style():
        fig = phase.lt_phase(0.2, 0.0, quick=True)
    crossings = []
    for line in _boundary_lines(fig):
        theta, gamma = (np.asarray(a, dtype=float) for a in line.get_data())
        for i in range(theta.size - 1):
            a, b = theta[i] - np.pi / 4, theta[i + 1] - np.pi / 4
            if a * b < 0 or a == 0:
                w = a / (a - b) if a != b else 0.0
                crossings.append(gamma[i] + w * (gamma[i + 1] - gamma[i]))
    assert np.allclose(sorted(crossings), [0.549, 0.911, 1.080], atol=2e-3)


# --- simulation overlay ----------------------------------------------------------------
@pytest.fixture
def synthetic_results(tmp_path, seed):
    """A small sweep in the layout of ``results.nc``: (gamma, theta, replicate), with
    fixed axes as scalar coordinates; values = theory + Gaussian noise."""
    rng = np.random.default_rng(seed)
    gamma = np.array([0.25, 0.5, 0.75, 1.5, 2.0])
    theta = np.array([np.pi / 8, np.pi / 4, 3 * np.pi / 8])
    reps = 6
    g, th = np.meshgrid(gamma, theta, indexing="ij")
    # the compiled Piecewise needs arguments of one shape
    t_lt = ff.get("lt.transferability").evaluate(gamma=g, theta=th, sigma=np.full_like(g, 0.2), lam=np.zeros_like(g))
    r_sc = ff.get("scratch.risk").evaluate(gamma=g, sigma=np.full_like(g, 0.2))
    dims = ("gamma", "theta", "replicate")
    data = xr.Dataset(
        {
            "T_lt": (dims, t_lt[..., None] + 0.05 * rng.standard_normal((*g.shape, reps))),
            "risk_sc": (dims, r_sc[..., None] + 0.05 * rng.standard_normal((*g.shape, reps))),
        },
        coords={
            "gamma": gamma, "theta": theta, "replicate": np.arange(reps, dtype=np.int32),
            "sigma": 0.2, "lam": 0.0, "L": np.int32(2), "d": np.int32(200), "gamma_s": np.inf, "sigma_s": 0.0,
        },
    )
    path = tmp_path / "results.nc"
    data.to_netcdf(path, engine="scipy")
    return path, data


def test_slices_overlay_replicate_means_at_the_nearest_angle(synthetic_results, tmp_path):
    path, data = synthetic_results
    results = experiment.load(path)
    with style.figure_style():
        fig = FIGURES["slices"](thetas=(np.pi / 4 + 0.05,), sigma=0.2, lam=0.0, quick=True, results=results)
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    x, y = bars[0].lines[0].get_data()
    expected = data["T_lt"].sel(theta=np.pi / 4).values
    np.testing.assert_allclose(x, data["gamma"].values)
    np.testing.assert_allclose(y, expected.mean(axis=-1))
    # error bar half-heights are standard errors
    segments = bars[0].lines[2][0].get_segments()
    half = np.array([abs(s[1, 1] - s[0, 1]) / 2 for s in segments])
    np.testing.assert_allclose(half, expected.std(axis=-1, ddof=1) / np.sqrt(expected.shape[-1]))


def test_no_overlay_when_a_fixed_parameter_differs(synthetic_results):
    path, _ = synthetic_results
    results = experiment.load(path)
    assert experiment.points(results, "T_lt", ("gamma",), theta=np.pi / 4, sigma=0.5) is None
    assert experiment.points(results, "T_lt", ("gamma",), theta=np.pi / 4, sigma=0.2) is not None
    assert experiment.points(results, "T_ft", ("gamma",), theta=np.pi / 4, sigma=0.2) is None


def test_cli_with_results_writes_overlaid_figures(synthetic_results, tmp_path, capsys):
    _need("lt-phase")
    path, _ = synthetic_results
    out = tmp_path / "figs"
    code = plot.main(["lt-phase", "slices", "scratch", "--quick", "--sigma", "0.2", "--results", str(path), "--out", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert "lt-phase_sigma0.2_lam0.png" in names and "slices-lt_sigma0.2_lam0.pdf" in names
    assert "scratch_sigma0.2.png" in names


def test_lt_phase_with_results_draws_the_experimental_map(synthetic_results):
    path, data = synthetic_results
    with style.figure_style():
        fig = phase.lt_phase(0.2, 0.0, quick=True, results=experiment.load(path))
    maps = [ax for ax in fig.axes if ax.collections and ax.get_label() != "<colorbar>"]
    assert len(maps) == 2
    shown = np.asarray(maps[1].collections[0].get_array()).reshape(data["gamma"].size, data["theta"].size)
    np.testing.assert_allclose(shown, data["T_lt"].mean("replicate").values)


# --- bad arguments ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, word",
    [
        (["nonsense"], "nonsense"),
        (["lt-phase", "--sigma", "-1"], "--sigma"),
        (["slices", "--theta", "2"], "--theta"),
        (["slices", "--theta", "pie"], "angle"),
        (["ft-phase", "--L", "0"], "--L"),
        (["finite-source", "--gamma-s", "0"], "--gamma-s"),
        (["kl", "--sigma", "0"], "kl"),
        (["lt-phase", "--results", "/nonexistent/results.nc"], "--results"),
        ([], "FIGURE"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, word, capsys, tmp_path):
    assert plot.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err


def test_command_line_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "featfate_sym.plot", "lt-phase", "--lam", "-0.5", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1 and "--lam" in proc.stderr


def test_angles_accept_multiples_of_pi():
    assert plot.angle("3pi/8") == pytest.approx(3 * np.pi / 8)
    assert plot.angle("pi/6") == pytest.approx(np.pi / 6)
    assert plot.angle("0.5") == 0.5


# --- the reproduction report -----------------------------------------------------------
def test_report_is_self_contained_with_figures_formulas_and_z_scores(synthetic_results, tmp_path):
    import base64
    import io
    import re
    import xml.etree.ElementTree as ET

    from featfate_sym import report

    path, data = synthetic_results
    plan = [("slices", {"sigma": 0.2, "lam": 0.0, "kind": "lt"}, "slices")]
    keys = ("lt.transferability", "scratch.risk")
    info = report.build(tmp_path / "rep", experiment.load(path), quick=True, plan=plan, keys=keys)
    text = (tmp_path / "rep" / "report.html").read_text()
    # nothing fetched from the network: no external scripts, sources or style sheets
    assert not re.search(r"<script[^>]*src", text) and not re.search(r"(src|href)=['\"]https?:", text)
    assert "function lt_transferability(gamma, theta, sigma, lam)" in text  # the explorer's generated code
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 1
    pixels = imread(io.BytesIO(base64.b64decode(images[0])))[..., :3]
    assert pixels.std() > 0.05
    blocks = re.findall(r"<math .*?</math>", text, flags=re.S)
    assert len(blocks) == len(keys)
    for block in blocks:
        ET.fromstring(block)  # well-formed MathML
    assert "<mi>&#947;</mi>" in text or "<mi>γ</mi>" in text  # gamma rendered as a symbol
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert markdown.count("$$") == 2 * len(keys) and "](figures/00-slices.png)" in markdown
    assert (tmp_path / "rep" / "figures" / "00-slices.png").is_file()
    # agreement: one T_lt and one risk_sc row per grid point, z from the replicates
    # at every grid point: T_lt (limit) and risk_sc (limit and finite n, d)
    assert info["points"] == 3 * data["gamma"].size * data["theta"].size
    row = next(r for r in report.agreement(data) if r.quantity == "T_lt" and r.params["gamma"] == 0.5
               and abs(r.params["theta"] - np.pi / 4) < 1e-12)
    values = data["T_lt"].sel(gamma=0.5, theta=np.pi / 4).values
    theory = 0.04  # SPEC.md check value: T_lt(gamma = 0.5, theta = pi/4, sigma = 0.2) = +0.040
    assert row.theory == pytest.approx(theory, abs=5e-4)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert row.z == pytest.approx((values.mean() - row.theory) / np.hypot(se, report.SOLVER_ALLOWANCE))
    # the allowance only matters where the standard error is tiny
    exact_zero = report.Agreement({}, "risk_sc", "finite n, d", 0.0, 2e-8, 1e-9, 20)
    assert abs(exact_zero.z) < 0.05


def test_report_rejects_a_missing_results_file(tmp_path, capsys):
    from featfate_sym import report

    assert report.main(["--out", str(tmp_path), "--results", str(tmp_path / "none.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--results" in err


# --- the explorer's generated JavaScript against the compiled NumPy functions ------------
def test_generated_javascript_agrees_with_compiled_numpy(seed, tmp_path):
    """Evaluates the explorer's generated functions in Node.js at random points and
    compares with the compiled NumPy functions (relative 1e-9: same formulas, different
    float rounding; the compiled form is rewritten for cancellation)."""
    import json
    import shutil

    from featfate_sym.plotting import explorer

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (no `node` on PATH; .ci/run installs it)")
    rng = np.random.default_rng(seed)
    ranges = {"gamma": (0.02, 2.0), "theta": (0.0, np.pi / 2), "sigma": (0.0, 1.0), "lam": (0.0, 1.0),
              "gamma_s": (0.1, 3.0), "sigma_s": (0.0, 1.0)}
    cases = {}
    for key in explorer.EXPLORER_RESULTS:
        names = ff.get(key).param_names
        points = [[int(rng.integers(1, 6)) if n == "L" else float(rng.uniform(*ranges[n])) for n in names]
                  for _ in range(25)]
        cases[key] = points
    script = explorer.javascript_library() + "\nconst cases = " + json.dumps(cases) + ";\n" + """
const out = {};
for (const [key, pts] of Object.entries(cases)) {
  const f = globalThis[key.replace(/\\./g, "_")] || eval(key.replace(/\\./g, "_"));
  out[key] = pts.map(p => { const v = f(...p); return Array.isArray(v) ? v.map(String) : String(v); });
}
console.log(JSON.stringify(out));
"""
    path = tmp_path / "check.js"
    path.write_text(script)
    proc = subprocess.run([node, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert set(got) >= {"lt.transferability", "lt.boundary"}
    for key, points in cases.items():
        result = ff.get(key)
        for point, js_value in zip(points, got[key]):
            expected = np.asarray(result.numpy(*point), dtype=float)
            js = np.asarray(js_value, dtype=float)
            np.testing.assert_allclose(js, expected, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"{key} at {point}")
