"""The protocol table, the parameter declarations, and the labelled simulate / compare.

The statistical tests use finite-size results that are exact at the simulated ``n, d``
(``scratch.risk_finite``, ``lt.risk_finite``), so ``ff.compare`` needs no allowance: under
the theory each point's t statistic exceeds its Bonferroni critical value with
probability at most ``FAMILY_ALPHA / points``.
"""

import math
import re
import os

import numpy as np
import pytest

import featfate_sym as ff
from featfate_sym import parameters, protocols
from featfate_sym.simulation import run_cell

from checks import FAMILY_ALPHA

SEED = int(os.environ.get("FEATFATE_SEED", "42"))


def test_every_prediction_names_a_result_and_its_parameters():
    for protocol, prediction in protocols.predictions():
        result = ff.get(prediction.key)
        assert set(prediction.takes) == {p.name for p in result.params}, (protocol.name, prediction.key)
        assert prediction.observable in protocol.observables
        assert prediction.source in ("population", "finite", "any")


def test_paper_protocols_and_first_layer_are_registered():
    assert protocols.resolve(None) == tuple(protocols.PROTOCOLS[name] for name in protocols.PAPER)
    first = protocols.get("fine_tune[1]")
    assert first.tag == "ft1" and first.pretrained
    assert [p.key for p in first.predictions] == ["ft.transferability_first_layer"]
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocols.get("fine_tune_everything")
    with pytest.raises(ValueError, match="given twice"):
        protocols.resolve(["scratch", "scratch"])
    with pytest.raises(ValueError, match="layers must be distinct integers"):
        protocols.fine_tune_layers((0,))


def test_every_result_parameter_is_its_declaration():
    """One declaration per parameter: every result lists it with the declared symbol and
    description, on the declared domain or a narrower one; and every declaration is used."""
    used = set()
    for result in ff.results():
        for param in result.params:
            declared = parameters.get(param.name)
            assert param.description == declared.description, (result.key, param.name)
            assert param.within(declared), (result.key, param.name, param.domain_text())
            used.add(param.name)
    assert used == set(parameters.PARAMETERS)


def test_restricted_only_narrows():
    sigma = parameters.sigma
    positive = sigma.restricted(lower_open=True)
    assert positive.within(sigma) and not sigma.within(positive)
    with pytest.raises(ValueError, match="not inside its declared domain"):
        parameters.theta.restricted(upper=4)


@pytest.mark.parametrize("name, value", [("theta", 4.0), ("sigma", -1.0), ("gamma", 0.0), ("lam", -0.1),
                                          ("L", 2.5), ("gamma_s", -1.0), ("sigma_s", float("nan"))])
def test_simulator_validates_through_the_declarations(name, value):
    params = dict(gamma=0.5, theta=0.5, sigma=0.2, lam=0.0, L=2, d=8)
    params[name] = value
    declared = parameters.get(name)
    with pytest.raises(ValueError, match=re.escape(f"parameter {name} must be {declared.domain_text()}")):
        run_cell(params, replicates=2, seed=0)


def _simulate(**kw):
    base = dict(replicates=30, seed=SEED, gamma=[0.5, 1.5], theta=math.pi / 4, sigma=0.3, d=40)
    base.update(kw)
    return ff.simulate(["scratch", "linear_transfer"], **base)


@pytest.fixture(scope="module")
def simulation():
    return _simulate()


def test_simulate_is_a_sweep_dataset(simulation):
    assert simulation.sizes == {"gamma": 2, "replicate": 30}
    for name in ("risk_sc", "risk_lt", "T_lt", "converged_sc", "rank_lt", "seed"):
        assert name in simulation.data_vars
    assert simulation["converged_sc"].dtype == bool and bool(simulation["converged_sc"].all())
    assert simulation.attrs["protocols"] == "scratch,linear_transfer"
    assert float(simulation.coords["theta"]) == pytest.approx(math.pi / 4)
    # the same point has the numbers of run_cell at its seed (the sweeps' seeds)
    point = simulation.isel(gamma=0)
    params = protocols.cell_params(point.coords)
    params["L"], params["d"] = int(params["L"]), int(params["d"])
    params["gamma_s"] = None
    direct = run_cell(params, replicates=30, seed=int(point["seed"]), protocols=["scratch", "linear_transfer"])
    np.testing.assert_array_equal(direct["T_lt"], point["T_lt"].values)
    again = _simulate(gamma=[0.5])
    np.testing.assert_array_equal(again["T_lt"].isel(gamma=0).values, point["T_lt"].values)


def test_compare_passes_for_exact_finite_forms(simulation):
    for key in ("scratch.risk_finite", "lt.risk_finite"):
        out = ff.compare(key, simulation, alpha=FAMILY_ALPHA)
        assert out.attrs["comparisons"] == 2 and out.attrs["false_alarm_rate"] == FAMILY_ALPHA / 2
        assert out.attrs["all_passed"], out[["theory", "mean", "se", "z", "critical"]].to_dataframe()
        assert np.all(np.isfinite(out["z"].values))


def test_compare_detects_a_wrong_mean(simulation):
    """Shifting the simulated risks by 8 standard errors must fail every point."""
    shifted = simulation.copy()
    se = simulation["risk_lt"].std("replicate", ddof=1) / math.sqrt(simulation.sizes["replicate"])
    shifted["risk_lt"] = simulation["risk_lt"] + 8 * se
    out = ff.compare("lt.risk_finite", shifted, alpha=FAMILY_ALPHA)
    assert not out["passed"].any()
    assert np.all(np.abs(out["z"].values) > out["critical"].values)


def test_compare_refuses_what_the_simulation_cannot_test(simulation):
    with pytest.raises(ValueError, match="predicts a variable of this simulation"):
        ff.compare("ft.transferability_exact", simulation)  # no fine-tuning in it
    with pytest.raises(ValueError, match="no point of this simulation where its prediction holds"):
        ff.compare("lt.risk_finite_source", simulation)  # population source


def test_a_new_protocol_is_one_entry():
    """Fine-tuning only the readout of a two-layer network, written as one protocol
    entry (its predictions come from the table), ends where linear transfer ends at
    lam = 0: the same least-squares readout on the frozen rank-one feature."""
    last = protocols.fine_tune_layers((2,))
    assert "lt.transferability" in [p.key for p in last.predictions]
    # the pretrained feature is rank one up to a residue of the initialisation scale
    # alpha = 1e-5: the closed form's rank rule drops it, descent keeps it (measured
    # differences 4e-6), so the two agree to O(alpha)
    out = run_cell(dict(gamma=0.5, theta=0.6, sigma=0.3, lam=0.0, L=2, d=30), replicates=4, seed=SEED,
                   protocols=["scratch", "linear_transfer", last])
    np.testing.assert_allclose(out["risk_ft2"], out["risk_lt"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(out["T_ft2"], out["T_lt"], rtol=0, atol=2e-5)
    assert np.abs(out["risk_ft2"] - out["risk_sc"]).min() > 1e-2  # not trivially equal to scratch


def test_simulate_is_callable_before_and_after_the_command_line_is_imported():
    import featfate_sym.simulate as command_line

    assert callable(ff.simulate) and hasattr(command_line, "main")
    small = dict(replicates=2, seed=SEED, gamma=0.5, theta=0.4, sigma=0.0, d=8)
    a = command_line(["scratch"], **small)
    b = ff.labelled.simulate(["scratch"], **small)
    np.testing.assert_array_equal(a["risk_sc"].values, b["risk_sc"].values)


def test_simulate_takes_a_spectrum_and_source_tasks_and_compare_refuses_them():
    """``ff.simulate(spectrum=, teachers=, k=)`` runs the engine on those inputs (recorded in
    the attributes; k > 1 runs scratch and linear transfer by default); ``ff.compare`` then
    refuses, the protocols' predictions being isotropic and one-feature.  The numbers are
    those of run_cell with the same covariance, profile and seed."""
    from featfate_sym import spectra

    sim = ff.simulate(replicates=3, seed=SEED, gamma=0.5, theta=0.6, sigma=0.2, d=20,
                      spectrum="two_level:frac=0.5,r=4", teachers="top:0.5", k=2)
    assert sim.attrs["spectrum"] == "two_level:frac=0.5,r=4" and sim.attrs["source_tasks"] == 2
    assert {"risk_sc", "risk_lt", "T_lt"} <= set(sim.data_vars) and "risk_ft" not in sim.data_vars
    params = protocols.cell_params(sim.coords)
    params["L"], params["d"], params["gamma_s"] = int(params["L"]), int(params["d"]), None
    covariance, profile = spectra.spectrum_arrays(("two_level", (0.5, 4.0)), ("top", 0.5), 20)
    direct = run_cell(params, replicates=3, seed=int(sim["seed"]), protocols=["scratch", "linear_transfer"],
                      covariance=covariance, profile=profile, source_tasks=2)
    np.testing.assert_array_equal(sim["risk_lt"].values, direct["risk_lt"])
    with pytest.raises(ValueError, match="isotropic inputs"):
        ff.compare("lt.risk_finite", sim)
    with pytest.raises(ValueError, match="spectrum"):
        ff.simulate(replicates=2, seed=0, gamma=0.5, d=20, spectrum="two_level:frac=2")
