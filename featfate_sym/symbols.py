"""Every symbol of the theory, defined once with its assumptions.

Two SymPy symbols with the same name but different assumptions are different
objects, and ``subs`` with the wrong one silently does nothing; so every module
imports its symbols from here and never calls ``Symbol`` for a model quantity.

Notation follows Tahir, Ganguli & Rotskoff, "Features are fate" (arXiv 2410.08194).
"""

from __future__ import annotations

import sympy as sp

# --- task geometry ---------------------------------------------------------------
#: angle between the source and target teachers, ``beta_s . beta_t = cos(theta)``
theta = sp.Symbol("theta", real=True, nonnegative=True)
#: label-noise standard deviation of the target task
sigma = sp.Symbol("sigma", real=True, nonnegative=True)
#: label-noise standard deviation of the source task (finite-source variant)
sigma_s = sp.Symbol("sigma_s", real=True, nonnegative=True)

# --- sample sizes ------------------------------------------------------------------
#: number of target samples
n = sp.Symbol("n", integer=True, positive=True)
#: input dimension
d = sp.Symbol("d", integer=True, positive=True)
#: number of frozen features refitted by linear transfer
k = sp.Symbol("k", integer=True, positive=True)
#: target sample ratio ``n / d`` (proportional limit)
gamma = sp.Symbol("gamma", real=True, positive=True)
#: source sample ratio ``n_s / d`` (finite-source variant)
gamma_s = sp.Symbol("gamma_s", real=True, positive=True)
#: aspect ratio ``d / n`` used by random-matrix formulas
psi = sp.Symbol("psi", real=True, positive=True)

# --- network and training --------------------------------------------------------
#: depth of the deep linear network (number of weight matrices)
L = sp.Symbol("L", integer=True, positive=True)
#: ridge strength, normalised as ``(1/n)|y - F w|^2 + lam |w|^2``
lam = sp.Symbol("lam", real=True, nonnegative=True)
#: weight-decay rate of gradient flow
mu = sp.Symbol("mu", real=True, nonnegative=True)
#: gradient-flow time
t = sp.Symbol("t", real=True, nonnegative=True)
#: gradient-descent step size
eta = sp.Symbol("eta", real=True, positive=True)
#: time constant of the mode dynamics
tau = sp.Symbol("tau", real=True, positive=True)

# --- mode dynamics -------------------------------------------------------------
#: strength of a target mode
s = sp.Symbol("s", real=True, positive=True)
#: learned strength of the mode
u = sp.Symbol("u", real=True, positive=True)
#: initial strength of the mode
u0 = sp.Symbol("u_0", real=True, positive=True)
#: final strength of the mode (time-to-learn)
uf = sp.Symbol("u_f", real=True, positive=True)

# --- fine-tuning -------------------------------------------------------------------
#: scale of the first layers after balanced fine-tuning (positive root)
c = sp.Symbol("c", real=True, positive=True)
#: ``log(c^2 - a)``, the unknown in which the root equation of ``c`` holds at any depth
ell_c = sp.Symbol("ell_c", real=True)
#: squared norm of the null-space part of the source teacher, ``|(I-P) beta_s|^2``
a = sp.Symbol("a", real=True, nonnegative=True)
#: squared norm of the scratch interpolator, ``|beta_sc|^2``
b = sp.Symbol("b", real=True, nonnegative=True)

# --- random matrices ---------------------------------------------------------------
#: complex spectral argument of a Stieltjes transform
z = sp.Symbol("z")
#: Stieltjes transform value
m = sp.Symbol("m")

# --- test functions of the bounded-Lipschitz (Dudley) metric ---------------------
#: frequency of the test function ``cos(omega e . z) / (1 + omega)``
omega = sp.Symbol("omega", real=True, positive=True)
#: angle of the test direction ``e`` in the plane of ``beta_s - beta_t`` and the label
phi = sp.Symbol("phi", real=True, nonnegative=True)

# --- two-layer ReLU networks (arc-cosine kernel) -----------------------------------
#: norm of the first weight vector ``|w|``
r1 = sp.Symbol("r1", real=True, positive=True)
#: norm of the second weight vector ``|w'|``
r2 = sp.Symbol("r2", real=True, positive=True)
#: cosine of the angle between the two weight vectors, ``w.w' / (|w| |w'|)`` in ``[-1, 1]``
rho = sp.Symbol("rho", real=True)


# --- classification of Gaussian mixtures -------------------------------------------
#: norm of the class means, ``|mu_s| = |mu_t| = m`` (signal strength of the mixture
#: ``x = y mu + z``).  Its name is ``m``, the parameter name of the ``clf.*`` results; it
#: is a different symbol from the Stieltjes-transform value ``m`` above (no assumptions),
#: and the two never occur in one expression
m_mean = sp.Symbol("m", positive=True)

# --- how the symbols print ------------------------------------------------------------
#: LaTeX of the symbols whose SymPy name does not print as intended (``lam`` is the
#: parameter's user-facing name, ``\lambda`` its mathematical one)
LATEX_NAMES = {lam: r"\lambda", ell_c: r"\ell_{c}"}


def latex(expr) -> str:
    """``sympy.latex`` with the project's symbol names (:data:`LATEX_NAMES`)."""
    import sympy

    return sympy.latex(expr, symbol_names=LATEX_NAMES)


# --- finite step size and the time course of training (family finite_step) ---------
#: norm of the end-to-end vector at a minimum, ``|beta|`` (positive)
beta_norm = sp.Symbol("beta_norm", real=True, positive=True)
#: largest eigenvalue of the input second-moment matrix ``Sxx`` (the top data curvature)
lambda_max = sp.Symbol("lambda_max", real=True, positive=True)
LATEX_NAMES[beta_norm] = r"|\beta|"
LATEX_NAMES[lambda_max] = r"\lambda_{\max}"

# --- anisotropic inputs (family anisotropic) ------------------------------------------
#: fraction of input directions in the second eigenspace of the two-level covariance
frac = sp.Symbol("frac", real=True, positive=True)
#: input variance of that eigenspace (the other directions have variance 1)
r = sp.Symbol("r", real=True, positive=True)
#: fraction of each teacher's squared norm in that eigenspace (``w = frac``: uniform teacher)
w_r = sp.Symbol("w_r", real=True, nonnegative=True)
#: effective regularisation of a deterministic equivalent, root of its self-consistent equation
kappa = sp.Symbol("kappa", real=True, positive=True)
LATEX_NAMES[frac] = r"\varrho"
LATEX_NAMES[w_r] = r"w_{r}"

# --- several source tasks (family multi_source) --------------------------------------
#: number of source tasks pretrained on, the rank of the pretrained features (``k`` above)

# --- minibatch SGD (family finite_step) ------------------------------------------------
#: minibatch size
batch = sp.Symbol("B", integer=True, positive=True)

# --- label flips (family classification) ------------------------------------------------
#: probability that a target training label is flipped, ``y -> -y`` (``0 <= p < 1/2``)
p_flip = sp.Symbol("p_flip", real=True, nonnegative=True)
LATEX_NAMES[p_flip] = "p"
