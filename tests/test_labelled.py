"""``ff.theory`` (labelled arrays) and the notebook views of a result.

Independent expectation: the result's own float64 evaluator at the same points.
"""

from __future__ import annotations

import numpy as np
import pytest

import featfate_sym as ff


def test_array_parameters_become_named_dimensions():
    gammas, thetas = np.array([0.25, 0.5, 1.5]), np.array([0.1, 0.7])
    da = ff.theory("lt.transferability", gamma=gammas, theta=thetas, sigma=0.2, lam=0)
    assert da.dims == ("gamma", "theta") and da.shape == (3, 2)
    assert da.attrs["key"] == "lt.transferability" and "paper" in da.attrs["status"]
    assert float(da.coords["sigma"]) == 0.2
    for i, g in enumerate(gammas):
        for j, t in enumerate(thetas):
            want = ff.get("lt.transferability").evaluate(gamma=g, theta=t, sigma=0.2, lam=0.0)
            assert da.values[i, j] == want
    # a vector result gains an output dimension named by its components
    b = ff.theory("lt.boundary", theta=np.array([0.3, 0.6]), sigma=0.2, lam=0)
    assert b.dims == ("output", "theta") and list(b.coords["output"].values) == list(ff.get("lt.boundary").outputs)


def test_bad_values_are_refused_by_name():
    with pytest.raises(ValueError, match=r"parameter gamma must be \(0, inf\) \(got -1\)"):
        ff.theory("lt.transferability", gamma=np.array([0.5, -1.0]), theta=0.3, sigma=0.2, lam=0)
    with pytest.raises(ValueError, match="1-D array"):
        ff.theory("lt.risk", theta=np.zeros((2, 2)), lam=0)


def test_notebook_views_show_the_formula():
    r = ff.get("ft.transferability_exact")
    assert r._repr_latex_() == f"$\\displaystyle {r.latex()}$"
    html = r._repr_html_()
    assert "ft.transferability_exact" in html and "$$" in html and "<table>" in html
    assert "derived here" in html
