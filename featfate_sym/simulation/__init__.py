"""The engines: finite-width Torch simulations of transfer in deep linear networks (and
two-layer ReLU networks, :mod:`featfate_sym.simulation.relu`).

The deep-linear engine behind the theory-vs-simulation checks and the sweeps: batched over
replicates, gradient descent from sufficient statistics with an adaptive step, closed-form
linear transfer with a rank rule, and monitors of the conserved quantities and the
pretrained features.  See :mod:`featfate_sym.simulation.deep_linear`.
"""

from featfate_sym.simulation.deep_linear import (
    SOLVERS,
    STEP_RULES,
    EngineOptions,
    Outcome,
    Trial,
    end_point_budget,
    fine_tune,
    pretrain,
    run_cell,
    run_protocols,
    train_scratch,
)
from featfate_sym.simulation.monitors import (
    DriftMonitor,
    conserved_quantities,
    feature_map,
    feature_spectrum,
)
from featfate_sym.simulation.readout import ReadoutFit, refit_readout
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
    "STEP_RULES",
    "DescentResult",
    "DivergenceError",
    "DriftMonitor",
    "EngineOptions",
    "ReadoutFit",
    "RegressionData",
    "Teachers",
    "Outcome",
    "Trial",
    "conserved_quantities",
    "end_point_budget",
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
    "run_protocols",
    "small_init",
    "train_scratch",
    "whitened",
]
