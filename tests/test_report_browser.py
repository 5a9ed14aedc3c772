"""The reproduction report in a real browser: headless Chromium opens ``report.html`` from
disk and the page must render offline (no request leaves ``file:``/``data:``), show every
figure (no broken image), lay out every MathML formula, and its explorer must redraw
when a user moves the sliders, with the page's generated JavaScript giving the compiled
NumPy values at the new slider settings.

Skipped only where Chromium or the Playwright package is not installed.  Set
``FEATFATE_SCREENSHOT_DIR`` to keep the explorer's screenshot after the slider moves.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread
from playwright import sync_api

import featfate_sym as ff

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# no GPU, no sandbox (containers), and nothing a fresh profile would fetch on its own
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# URL schemes a self-contained page may load from
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
KEYS = ("lt.transferability", "scratch.risk")
# the slider moves: (slider id, new value); sigma redraws both population-source phase
# diagrams, L only the fine-tuning one
MOVES = (("x-sigma", "0.5"), ("x-L", "4"))


def _dataset(seed: int) -> xr.Dataset:
    """A small sweep in the layout of ``results.nc``: theory + Gaussian noise."""
    rng = np.random.default_rng(seed)
    gamma = np.array([0.25, 0.5, 1.5, 2.0])
    theta = np.array([np.pi / 8, np.pi / 4])
    reps = 4
    g, th = np.meshgrid(gamma, theta, indexing="ij")
    t_lt = ff.get("lt.transferability").evaluate(gamma=g, theta=th, sigma=np.full_like(g, 0.2), lam=np.zeros_like(g))
    dims = ("gamma", "theta", "replicate")
    return xr.Dataset(
        {"T_lt": (dims, t_lt[..., None] + 0.05 * rng.standard_normal((*g.shape, reps)))},
        coords={"gamma": gamma, "theta": theta, "replicate": np.arange(reps, dtype=np.int32),
                "sigma": 0.2, "lam": 0.0, "L": np.int32(2), "d": np.int32(100), "gamma_s": np.inf, "sigma_s": 0.0},
    )


def _pixels(png: bytes) -> np.ndarray:
    return imread(io.BytesIO(png))[..., :3]


def _canvases(page) -> dict:
    return page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#explorer canvas')]"
                         ".map(c => [c.id, c.toDataURL('image/png')]))")


@pytest.mark.timeout(120)
def test_report_renders_offline_and_the_explorer_follows_its_sliders(tmp_path, seed):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (no `chromium` on PATH; .ci/run installs it)")
    from featfate_sym import report

    plan = [("slices", {"sigma": 0.2, "lam": 0.0, "kind": "lt"}, "slices"),
            ("scratch", {"sigmas": (0.0, 0.2)}, "scratch")]
    report.build(tmp_path / "rep", _dataset(seed), quick=True, plan=plan, keys=KEYS)
    page_url = (tmp_path / "rep" / "report.html").resolve().as_uri()

    requests, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            # every request is recorded; anything that would leave the machine is refused
            def route(r):
                requests.append(r.request.url)
                if r.request.url.startswith(LOCAL_SCHEMES):
                    r.continue_()
                else:
                    r.abort()
            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda req: requests.append(req.url))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(page_url, wait_until="load")

            # --- offline: the page itself is the only thing loaded, and only from disk
            assert page_url in requests
            remote = [u for u in requests if not u.startswith(LOCAL_SCHEMES)]
            assert not remote, f"the report requested non-local URLs: {remote}"

            # --- figures: every image decoded (a broken image has naturalWidth 0)
            images = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
            assert len(images) == len(plan)
            for alt, complete, width, height in images:
                assert complete and width > 0 and height > 0, f"image {alt!r} did not load"

            # --- formulas: parsed as MathML elements (not unknown HTML) and laid out
            maths = page.evaluate("() => [...document.querySelectorAll('math')].map(m => {"
                                  " const r = m.getBoundingClientRect();"
                                  " return [m instanceof MathMLElement, r.width, r.height, m.querySelectorAll('mi').length]; })")
            assert len(maths) == len(KEYS)
            for is_mathml, width, height, identifiers in maths:
                assert is_mathml and identifiers > 0
                # a laid-out formula is wider than a character and at least a line high
                assert width > 20 and height > 10

            # --- the whole page: not blank
            shot = _pixels(page.screenshot(full_page=True))
            assert shot.std() > 0.05 and np.mean(shot.min(axis=-1) < 0.9) > 0.02

            # --- the explorer follows its sliders
            before = _canvases(page)
            assert set(before) == {"c-lt", "c-ft", "c-fs", "c-slice"}
            for slider, value in MOVES:
                # fill() on a range input sets its value and fires 'input' and 'change',
                # as a user's drag does
                page.locator(f"#{slider}").fill(value)
            assert page.locator("#o-sigma").inner_text().strip() == "0.50"
            assert page.locator("#o-L").inner_text().strip() == "4"
            after = _canvases(page)
            assert after["c-lt"] != before["c-lt"], "T_lt phase diagram not redrawn for the new sigma"
            assert after["c-slice"] != before["c-slice"]
            if "ft.transferability_exact" in ff.keys():
                assert after["c-ft"] != before["c-ft"], "T_ft phase diagram not redrawn for the new sigma, L"
            # the finite-source diagram depends on neither slider: redrawn identically, so
            # the comparisons above detect real changes, not redraw noise
            assert after["c-fs"] == before["c-fs"]
            # the redrawn map has both signs of transfer (two colour families), not one fill
            lt_map = _pixels(page.locator("#c-lt").screenshot())
            assert lt_map.std() > 0.05

            shot_dir = os.environ.get("FEATFATE_SCREENSHOT_DIR")
            explorer_png = page.locator("#explorer").screenshot()
            if shot_dir:
                Path(shot_dir).mkdir(parents=True, exist_ok=True)
                (Path(shot_dir) / "explorer_after_sliders.png").write_bytes(explorer_png)
            assert _pixels(explorer_png).std() > 0.05

            # --- the page's generated functions at the new slider settings = compiled NumPy
            rng = np.random.default_rng(seed)
            points = np.column_stack([rng.uniform(0.05, 2.0, 12), rng.uniform(0.0, np.pi / 2, 12)]).tolist()
            got = page.evaluate(
                """(pts) => {
                  const v = id => parseFloat(document.getElementById(id).value);
                  const s = v("x-sigma"), lam = v("x-lam"), L = v("x-L");
                  const out = {sigma: s, lam: lam, L: L, lt: pts.map(([g, t]) => lt_transferability(g, t, s, lam))};
                  if (typeof ft_transferability_exact === "function")
                    out.ft = pts.map(([g, t]) => ft_transferability_exact(g, t, s, L));
                  return out;
                }""",
                points,
            )
        finally:
            browser.close()

    assert not errors, f"errors in the page: {errors}"
    assert (got["sigma"], got["L"]) == (0.5, 4.0)
    g, th = np.array(points).T
    ones = np.ones_like(g)
    expected_lt = ff.get("lt.transferability").numpy(g, th, got["sigma"] * ones, got["lam"] * ones)
    # same formulas, different float rounding (the compiled form is rewritten for cancellation)
    np.testing.assert_allclose(np.array(got["lt"], dtype=float), expected_lt, rtol=1e-9, atol=1e-12)
    if "ft" in got:
        expected_ft = ff.get("ft.transferability_exact").numpy(g, th, got["sigma"] * ones, got["L"] * ones)
        np.testing.assert_allclose(np.array(got["ft"], dtype=float), expected_ft, rtol=1e-9, atol=1e-12)
