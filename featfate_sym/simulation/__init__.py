"""Finite-width Torch simulations of transfer in deep linear networks.

The engine behind the theory-vs-simulation checks and the sweeps: batched over
replicates, gradient descent from sufficient statistics with an adaptive step, closed-form
linear transfer with a rank rule, and monitors of the conserved quantities and the
pretrained features.  See :mod:`featfate_sym.simulation.deep_linear`.
"""

from featfate_sym.simulation.deep_linear import (
    SOLVERS,
    EngineOptions,
    TransferOutcome,
    fine_tune,
    pretrain,
    run_cell,
    simulate_transfer,
    train_scratch,
)
from featfate_sym.simulation.monitors import (
    DriftMonitor,
    conserved_quantities,
    feature_map,
    feature_spectrum,
)
from featfate_sym.simulation.readout import ReadoutFit, refit_readout
from featfate_sym.simulation.ridge_baseline import RidgeBaseline, default_lam_grid, simulate_ridge_baseline
from featfate_sym.simulation.ridge_baseline_phase import RidgeBaselinePhase, simulate_ridge_baseline_phase
from featfate_sym.simulation.tasks import (
    RegressionData,
    Teachers,
    make_teachers,
    population_data,
    risk,
    sample_regression,
    whitened,
)
from featfate_sym.simulation.training import (
    DescentResult,
    DivergenceError,
    end_to_end,
    gradient_descent,
    layer_gradients,
    small_init,
)

__all__ = [
    "SOLVERS",
    "RidgeBaseline",
    "default_lam_grid",
    "simulate_ridge_baseline",
    "RidgeBaselinePhase",
    "simulate_ridge_baseline_phase",
    "DescentResult",
    "DivergenceError",
    "DriftMonitor",
    "EngineOptions",
    "ReadoutFit",
    "RegressionData",
    "Teachers",
    "TransferOutcome",
    "conserved_quantities",
    "end_to_end",
    "feature_map",
    "feature_spectrum",
    "fine_tune",
    "gradient_descent",
    "layer_gradients",
    "make_teachers",
    "population_data",
    "pretrain",
    "refit_readout",
    "risk",
    "run_cell",
    "sample_regression",
    "simulate_transfer",
    "small_init",
    "train_scratch",
    "whitened",
]
