"""Every parameter of the toolkit, declared once: symbol, description, domain, LaTeX name.

A theory module lists the parameters of a result by these declarations; the simulator,
the sweeps and the command lines validate their inputs through the same ones, so a
domain or a description is written in one place.  A result whose domain is narrower
than the declaration (the distances need ``sigma > 0``) takes :meth:`Param.restricted`,
which keeps the symbol and the description and may only shrink the domain (a test checks
it).  ``PARAMETERS`` maps the user-facing name (``u0``, not ``u_0``) to its declaration.
"""

from __future__ import annotations

import math

import sympy as sp

from featfate_sym import symbols as S
from featfate_sym.registry import Param

__all__ = ["PARAMETERS", "declare", "get", "scalar"]

PARAMETERS: dict[str, Param] = {}


def declare(symbol, description, lower=0, upper=None, lower_open=False, upper_open=False, integer=False) -> Param:
    """Declare the parameter of ``symbol`` (once; a second declaration raises)."""
    param = Param(
        symbol=symbol,
        description=description,
        lower=None if lower is None else sp.sympify(lower, strict=True),
        upper=None if upper is None else sp.sympify(upper, strict=True),
        lower_open=lower_open,
        upper_open=upper_open,
        integer=integer,
    )
    if param.name in PARAMETERS:
        raise ValueError(f"parameter {param.name} declared twice")
    PARAMETERS[param.name] = param
    return param


def get(name: str) -> Param:
    """The declaration of the parameter ``name``; ``KeyError`` lists the known names."""
    try:
        return PARAMETERS[name]
    except KeyError:
        raise KeyError(f"unknown parameter {name!r}; known: {', '.join(sorted(PARAMETERS))}") from None


def scalar(param: Param, value, *, allow_inf: bool = False):
    """One value of ``param``, validated: a Python ``int`` for integer parameters, else
    ``float``.  ``allow_inf`` admits ``+inf`` as a documented sentinel (``gamma_s = inf``:
    the population source).  Raises ``ValueError`` naming the parameter and its domain."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise ValueError(f"parameter {param.name} must be {param.domain_text()} (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {param.name} must be {param.domain_text()} (got {value!r})") from None
    if allow_inf and number == math.inf:
        return number
    param.check(number)
    return int(number) if param.integer else number


# --- the task -------------------------------------------------------------------------
gamma = declare(S.gamma, "target samples per input dimension, n/d", lower_open=True)
theta = declare(S.theta, "angle between source and target teachers (in classification: the class means)",
                upper=sp.pi)
sigma = declare(S.sigma, "target label-noise standard deviation (of both tasks in the distances family)")
gamma_s = declare(S.gamma_s, "source samples per input dimension, n_s/d", lower_open=True)
sigma_s = declare(S.sigma_s, "source label-noise standard deviation")
n = declare(S.n, "number of target samples", lower=1, integer=True)
d = declare(S.d, "input dimension", lower=1, integer=True)

# --- the network and its training --------------------------------------------------
L = declare(S.L, "depth (number of weight matrices)", lower=1, integer=True)
lam = declare(S.lam, "ridge strength of (1/n)|y - F w|^2 + lam |w|^2 (F the features: X for scratch)")
mu = declare(S.mu, "weight-decay rate of the gradient flow")
t = declare(S.t, "gradient-flow time (of the loss (1/n)|X beta - y|^2, or of the mode dynamics)")
eta = declare(S.eta, "fixed gradient-descent step (W <- W - eta dloss/dW)", lower_open=True)
beta_norm = declare(S.beta_norm, "norm |beta| of the end-to-end vector at the minimum", lower_open=True)
lambda_max = declare(S.lambda_max, "largest eigenvalue of Sxx = X^T X/n (1 for the population or whitened loss)",
                     lower_open=True)
tau = declare(S.tau, "time constant (inverse learning rate)", lower_open=True)
s = declare(S.s, "strength of the target mode", lower_open=True)
u0 = declare(S.u0, "initial strength of the mode (small init: 0 < u0 < s)", lower_open=True)
uf = declare(S.uf, "strength to reach", lower_open=True)

# --- distances ----------------------------------------------------------------------
omega = declare(S.omega, "frequency of the test function cos(omega e.z)/(1 + omega)", lower_open=True)
phi = declare(S.phi, "angle of the test direction e = (0, cos phi, sin phi) in the (v, y) plane",
              upper=sp.pi / 2)

# --- two-layer ReLU networks -----------------------------------------------------------
r1 = declare(S.r1, "norm |w| of the (first, ReLU) weight vector", lower_open=True)
r2 = declare(S.r2, "norm of the second weight vector (|w'|, or the linear weight |v|)", lower_open=True)
rho = declare(S.rho, "cosine of the angle between the two weight vectors", lower=-1, upper=1)

# --- classification of Gaussian mixtures ------------------------------------------------
#: bounded above so that every normal tail stays in mpmath's range (the margins grow like
#: m^2); at m = 10^3 every error is below 10^-200000, 0 in float64
m = declare(S.m_mean, "norm of the class means, |mu_s| = |mu_t| (signal strength)", lower_open=True, upper=1000)

# --- anisotropic inputs -----------------------------------------------------------------
frac = declare(S.frac, "fraction of input directions with variance r (two-level covariance; the rest have variance 1)",
               lower_open=True, upper=1, upper_open=True)
r = declare(S.r, "input variance of the fraction frac of directions (two-level covariance)", lower_open=True)
w_r = declare(S.w_r, "fraction of each teacher's squared norm in the variance-r eigenspace (w_r = frac: uniform)",
              upper=1)

# --- several source tasks -----------------------------------------------------------------
k = declare(S.k, "number of source tasks pretrained on (rank of the pretrained features)", lower=1, integer=True)

# --- minibatch SGD --------------------------------------------------------------------------
batch = declare(S.batch, "minibatch size of SGD", lower=1, integer=True)

# --- label flips in classification ----------------------------------------------------------
p_flip = declare(S.p_flip, "probability that a target training label is flipped (y -> -y), independently",
                 upper=sp.Rational(1, 2), upper_open=True)


def random_generator(seed):
    """A NumPy ``Generator`` from ``seed``: a nonnegative integer, or a ``Generator``
    passed through (so one stream can feed several draws); anything else is a
    ``ValueError`` naming the parameter."""
    import numpy as np

    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"parameter seed must be a nonnegative integer or a numpy Generator (got {seed!r})")
    return np.random.default_rng(int(seed))
