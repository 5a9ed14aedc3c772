"""Beyond gradient flow: finite step size and the time course of training.

Conventions (SPEC section 5, stated again in every entry's notes): the training loss is
``(1/n)|X beta - y|^2`` (no 1/2), every weight is updated ``W <- W - eta dLoss/dW``, and
the pretrained network is balanced (``D_l = 0``) with unit ``|beta_s|``.  Up to a
constant the loss is ``(beta - beta*)^T Sxx (beta - beta*)`` (``Sxx = X^T X/n``,
``beta*`` a least-squares minimiser; the population loss has ``Sxx = I``).

Results registered (family ``finite_step``):

- ``dln.max_stable_step`` -- the largest step for which gradient descent is linearly
  stable at a balanced minimum: ``eta_max = 2 / h_top`` with ``h_top = 2 lambda_max L
  |beta|^(2 - 2/L)`` the top eigenvalue of the Hessian of the loss in weight space.
  Derived from explicit symbolic networks (depths 1..4, width 2): ``sp.hessian`` of the
  loss at the balanced rank-one minimum, its equality with the Gauss-Newton matrix
  ``2 J^T Sxx J`` (the residual term vanishes at a minimum), ``J J^T = |beta|^(2-2/L)
  (I + (L-1) P_beta)`` and the spectrum; general ``L`` by the layer recursion
  (``sp.summation``) checked against the explicit depths; the stability condition
  ``|1 - eta h| < 1`` solved by ``sp.solve``.
- ``scratch.risk_time`` -- the risk along gradient flow from ``beta = 0`` for ``L = 1`` in
  the proportional limit: the per-eigenvalue bias and variance from ``sp.dsolve`` of the
  flow in an eigenbasis of ``Sxx``, the Marchenko-Pastur density and atom from the
  Stieltjes quadratic; the spectral integral (over ``phi in [0, pi]``, ``x = 1 + psi -
  2 sqrt(psi) cos(phi)``) is not closed by SymPy and is named ``I_MP`` (not evaluable by the
  registry; :mod:`featfate_sym.learning_curves` integrates it numerically).
- ``scratch.risk_sgd_stationary`` -- the stationary excess risk ``E|beta - beta*|^2`` of
  constant-step minibatch SGD (batches of ``B`` rows with replacement, L = 1, ``gamma > 1``)
  to first order in ``eta``: the minibatch covariance (enumerated), the Hessian ``2 Sxx``
  (``sp.hessian``), the discrete per-mode fixed point (``sp.solve``) and its first order
  (``sp.series``), the Lyapunov trace identity ``tr C = (eta/2) tr(H^-1 G)`` (solved at 2x2),
  the leverages' limit; ``eta d sigma^2 (1 - 1/gamma)/B``, O(1) at ``eta = O(1/d)``.
- ``ft.transferability_gd`` -- fine-tuning with a fixed step ``eta`` on the whitened target
  loss, to first order in ``eta``: on the invariant rank-one ansatz the only imbalance is
  ``Delta = |v|^2 - varsigma^2``, its exact per-step drift ``eta^2 f`` gives ``Delta(end) =
  eta int f dt``, and the end-point equation ``Delta = a + b c^(2-2L) - c^2`` moves the
  null-space scale ``c``; the drift integral along the reduced flow is numerical (named
  ``I_drift``; not evaluable by the registry).
- ``ft.transferability_sgd`` -- minibatch SGD on the empirical loss, ``gamma < 1``: the
  minibatch variance adds ``eta^2 (4 d/B) varsigma^(2L-2) l`` per step to the imbalance
  drift (covariance factor ``1/B``, or ``(n-B)/(B(n-1))`` without replacement, derived and
  enumerated); ``T_exact + (eta d/B) 4 dT/dDelta I_noise`` with ``I_noise`` along the
  proportional-limit flow of the empirical loss (Marchenko-Pastur moment ODEs; not
  evaluable by the registry).
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.registry import Derivation, Exactness, SpecialCase, Source, Status, Step, register
from featfate_sym.symbols import L, beta_norm, eta, gamma, lambda_max, sigma, t, theta
from featfate_sym.theory.zero import is_zero, limit_by_powers

_FAMILY = "finite_step"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"
_CONVENTIONS = (
    "Conventions: training loss (1/n)|X beta - y|^2 (no 1/2); every weight updated "
    "W <- W - eta dLoss/dW; pretrained network balanced (D_l = 0) with unit |beta_s|. "
)

_DEPTH, _NORM, _TOP = parameters.L, parameters.beta_norm, parameters.lambda_max

_DEPTHS = (1, 2, 3, 4)
_WIDTH = 2
#: the second eigenvalue of Sxx in the explicit networks (``0 < lam_2 <= lambda_max``)
_LAM2 = sp.Symbol("lambda_2", positive=True)
#: the layer scale ``|beta|^(1/L)`` of a balanced rank-one network
_SCALE = sp.Symbol("s_layer", positive=True)
#: a curvature (Hessian eigenvalue) in the stability condition
_CURV = sp.Symbol("h", positive=True)
#: the layer index of the recursion
_LAYER = sp.Symbol("l", integer=True, positive=True)


# -- explicit networks -----------------------------------------------------------------
def _weights(depth: int) -> list[sp.Matrix]:
    """Single-output weights with one real symbol per entry: square hidden layers of
    width 2, a column readout."""
    shapes = [(_WIDTH, _WIDTH)] * (depth - 1) + [(_WIDTH, 1)]
    return [
        sp.Matrix(rows, cols, lambda i, j, l=l: sp.Symbol(f"w{l}_{i}{j}", real=True))
        for l, (rows, cols) in enumerate(shapes, start=1)
    ]


def _product(mats: list[sp.Matrix]) -> sp.Matrix:
    out = sp.eye(mats[0].rows)
    for m_ in mats:
        out = out * m_
    return out


def _balanced_point(weights: list[sp.Matrix]) -> dict[sp.Symbol, sp.Expr]:
    """The balanced rank-one network ``W_l = s e_1 e_1^T`` (``l < L``), ``W_L = s e_1``."""
    e1 = sp.Matrix([1, 0])
    point = {}
    for l, w in enumerate(weights):
        value = _SCALE * (e1 * e1.T if l < len(weights) - 1 else e1)
        point.update({e: v for e, v in zip(w, value)})
    return point


def _hessian_at_minimum(depth: int):
    """Hessian of ``(beta - beta*)^T S (beta - beta*)`` over every weight entry at the
    balanced minimum ``beta = beta* = s^L e_1``, ``S = diag(lambda_max, lambda_2)``;
    the Jacobian ``J = d beta / d W`` there; ``J J^T``; and the spectrum."""
    weights = _weights(depth)
    entries = [e for w in weights for e in w]
    beta = _product(weights)
    point = _balanced_point(weights)
    target = _SCALE**depth * sp.Matrix([1, 0])
    curvature = sp.diag(lambda_max, _LAM2)
    residual = beta - target
    # left unexpanded: differentiated first and evaluated at the point, which is much
    # cheaper than expanding the degree-2L polynomial in every entry
    loss = (residual.T * curvature * residual)[0, 0]
    # the point is balanced (D_l = 0) and a minimum (beta = beta*, zero gradient)
    for l in range(depth - 1):
        imbalance = (weights[l].T * weights[l] - weights[l + 1] * weights[l + 1].T).subs(point)
        if imbalance != sp.zeros(*imbalance.shape):
            raise ArithmeticError("the rank-one network is not balanced")
    if (beta.subs(point) - target) != sp.zeros(2, 1):
        raise ArithmeticError("the rank-one network is not at the minimum")
    gradient = [sp.diff(loss, e) for e in entries]
    grad = sp.Matrix([g.xreplace(point) for g in gradient]).applyfunc(sp.expand)
    if grad != sp.zeros(len(entries), 1):
        raise ArithmeticError("the gradient does not vanish at the minimum")
    # the Hessian of a polynomial is symmetric: each pair (i, j), i <= j, differentiated once;
    # d g_i / d w_j at the point is the derivative of g_i restricted to the line through the
    # point along w_j (every other entry at its value first: a small univariate polynomial)
    size = len(entries)
    upper = {}
    for j, entry in enumerate(entries):
        others = {e: v for e, v in point.items() if e != entry}
        for i in range(j + 1):
            upper[(i, j)] = sp.expand(sp.diff(gradient[i].xreplace(others), entry).xreplace({entry: point[entry]}))
    hessian = sp.Matrix(size, size, lambda i, j: upper[(min(int(i), int(j)), max(int(i), int(j)))])
    jac = beta.jacobian(entries).subs(point)
    gauss_newton = (2 * jac.T * curvature * jac).applyfunc(sp.expand)
    if (hessian - gauss_newton).applyfunc(sp.expand) != sp.zeros(len(entries)):
        raise ArithmeticError("the Hessian at the minimum is not 2 J^T S J")
    jjt = (jac * jac.T).applyfunc(sp.factor)
    # the nonzero eigenvalues of 2 J^T S J = A^T A (A = sqrt(2 S) J) are those of A A^T
    root_s = sp.diag(sp.sqrt(lambda_max), sp.sqrt(_LAM2))
    reduced = (2 * root_s * jjt * root_s).applyfunc(sp.factor)
    spectrum = reduced.eigenvals()
    return hessian, jjt, spectrum, len(entries)


def _stable_steps() -> tuple[sp.Expr, list[Step]]:
    """Gradient descent near a minimum moves a Hessian eigen-coordinate by ``delta ->
    (1 - eta h) delta``; it is linearly stable iff ``|1 - eta h| < 1``, whose boundary in
    ``eta > 0`` is found by ``sp.solve``."""
    delta = sp.Symbol("delta", real=True)
    quad = _CURV * delta**2 / 2  # the loss along one eigen-direction, to second order
    update = sp.expand(delta - eta * sp.diff(quad, delta))
    factor = sp.factor(update / delta)
    edges = sp.solve(sp.Eq(factor, -1), eta) + sp.solve(sp.Eq(factor, 1), eta)
    (edge,) = [e for e in edges if e.is_positive]
    inside = factor.subs(eta, edge / 2)  # the factor at the middle of (0, edge)
    if not (sp.Abs(inside) < 1) == sp.true:
        raise ArithmeticError("the stable range is not (0, 2/h)")
    steps = [
        Step("one GD step on the loss h delta^2/2 along a Hessian eigen-direction", sp.Eq(sp.Symbol("delta_next"), update)),
        Step("amplification factor; |factor| < 1 is linear stability", factor),
        Step("the positive boundary |1 - eta h| = 1 (sp.solve): stable iff 0 < eta < 2/h", edge),
    ]
    return edge, steps


@register(
    "dln.max_stable_step",
    title="Largest stable gradient-descent step at a balanced minimum of a deep linear network",
    family=_FAMILY,
    params=[_DEPTH, _NORM, _TOP],
    regime="gradient descent with a fixed step eta near a balanced minimum (D_l = 0, rank-one "
    "layers of norm |beta|^(1/L), what gradient flow from small initialisation or a balanced "
    "pretrained network reaches); beta* along the top eigenvector of Sxx (always so for the "
    "population loss, Sxx = I, and the whitened loss of a minimiser in the row space)",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="Hessian by sp.hessian at L = 1, 2, 3, 4 (width 2); general L by the "
                  "layer recursion, checked against those depths"),
    reference="Linear stability of GD at a minimum (eta < 2/lambda_max(H)); Arora, Cohen, "
    "Golowich & Hu (ICLR 2019) for GD on deep linear networks; model of " + _PAPER,
    notes=_CONVENTIONS + (
        "At a minimum the residual term of the Hessian vanishes and H = 2 J^T Sxx J, J the map "
        "of layer perturbations to d beta = sum_l W_<l dW_l W_>l. For balanced rank-one layers "
        "J J^T = |beta|^(2-2/L) (I + (L-1) P_beta) (the end-to-end preconditioner of the "
        "balanced flow), so the nonzero curvatures are 2 lambda L |beta|^(2-2/L) along beta "
        "and 2 lambda_i |beta|^(2-2/L) across it; the top is 2 lambda_max L |beta|^(2-2/L) when "
        "beta* is a top eigenvector of Sxx, and eta_max = 2/top = 1/(L lambda_max "
        "|beta|^(2-2/L)). The other directions of weight space are flat (the manifold of "
        "minima). For beta* in a general direction the top curvature lies between "
        "2 lambda_max |beta|^(2-2/L) and 2 L lambda_max |beta|^(2-2/L). An unbalanced minimum "
        "with the same beta is sharper (for the scalar chain, sum_l prod_{j != l} w_j^2 >= "
        "L |beta|^(2-2/L) by AM-GM), so eta_max is the largest stable step at any minimum of that "
        "beta. Pretrained unit teacher (population loss): eta_max = 1/L. Extras: hessian_top, "
        "preconditioner_identity, preconditioner_projection (J J^T = A I + B P_beta), "
        "curvature_across (the curvature across beta, in the second eigenvalue lambda_2 of Sxx)."
    ),
    special_cases=[
        SpecialCase("one layer: least squares, eta_max = 1/lambda_max", 1 / lambda_max, subs={L: 1}),
        SpecialCase("unit pretrained teacher, population loss: 1/L", 1 / L, subs={beta_norm: 1, lambda_max: 1}),
        SpecialCase("L = 2, |beta| = 4: 1/(8 lambda_max)", 1 / (8 * lambda_max), subs={L: 2, beta_norm: 4}),
    ],
    singular="none: finite and positive on the whole domain",
)
def max_stable_step() -> Derivation:
    steps = [Step(
        "loss (1/n)|X beta - y|^2 = (beta - beta*)^T Sxx (beta - beta*) + const; explicit "
        "networks of width 2 with Sxx = diag(lambda_max, lambda_2) and beta* = |beta| e_1 "
        "along the top eigenvector; balanced rank-one minimum W_l = s e_1 e_1^T, W_L = s e_1, "
        "s = |beta|^(1/L) (D_l = 0 and zero gradient checked)")]
    coeff_identity, coeff_projection, spectra = {}, {}, {}
    for depth in _DEPTHS:
        hessian, jjt, spectrum, size = _hessian_at_minimum(depth)
        spectra[depth] = spectrum
        # J J^T = A I + B e_1 e_1^T
        a_coef = sp.factor(jjt[1, 1])
        b_coef = sp.factor(jjt[0, 0] - jjt[1, 1])
        if jjt[0, 1] != 0 or jjt[1, 0] != 0:
            raise ArithmeticError("J J^T is not A I + B P_beta")
        coeff_identity[depth], coeff_projection[depth] = a_coef, b_coef
        if depth <= 2:
            full = hessian.eigenvals()  # the whole spectrum, where SymPy does it quickly
            nonzero = {k: v for k, v in full.items() if k != 0}
            if nonzero != spectrum or full.get(0, 0) != size - 2:
                raise ArithmeticError("the nonzero Hessian spectrum is not that of 2 S^(1/2) J J^T S^(1/2)")
            steps.append(Step(f"L = {depth}: full Hessian spectrum by eigenvals ({size} entries; "
                              "eigenvalue: multiplicity)", sp.Dict(full)))
        if depth == 2:
            steps.append(Step("L = 2: Hessian over the 6 weight entries at the minimum (second derivatives "
                              "by sp.diff); equal to the Gauss-Newton matrix 2 J^T Sxx J", hessian))
        steps.append(Step(f"L = {depth}: J J^T at the balanced point (J = d beta/dW)", jjt))
        steps.append(Step(f"L = {depth}: nonzero Hessian eigenvalues = eigenvalues of "
                          "2 S^(1/2) J J^T S^(1/2) (multiplicities)", sp.Dict(spectrum)))
    # general depth: J J^T = sum_l (W_<l W_<l^T) |W_>l|^2; W_<1 = I, W_<l W_<l^T = s^(2l-2)
    # P_beta for l >= 2, |W_>l|^2 = s^(2L-2l)
    general_identity = _SCALE ** (2 * (L - 1))
    general_projection = sp.simplify(sp.summation(_SCALE ** (2 * (_LAYER - 1)) * _SCALE ** (2 * (L - _LAYER)),
                                                  (_LAYER, 2, L)))
    for depth in _DEPTHS:
        if not is_zero(general_identity.subs(L, depth) - coeff_identity[depth]) or \
                not is_zero(general_projection.subs(L, depth) - coeff_projection[depth]):
            raise ArithmeticError(f"the layer recursion disagrees with the explicit depth {depth}")
    steps.append(Step("general L, layer recursion: J J^T = A I + B P_beta with A = s^(2L-2) (layer 1) "
                      "and B = sum_{l=2}^L s^(2l-2) s^(2L-2l) (sp.summation); equal to the explicit "
                      "depths 1..4", sp.Tuple(general_identity, general_projection)))
    layer_scale = beta_norm ** (1 / L)
    top_s = 2 * lambda_max * (general_identity + general_projection)
    across_s = 2 * _LAM2 * general_identity
    for depth in _DEPTHS:
        want = {sp.factor(top_s.subs(L, depth)), sp.factor(across_s.subs(L, depth))}
        if {sp.factor(k_) for k_ in spectra[depth]} != want:
            raise ArithmeticError(f"the general curvatures disagree with the spectrum at depth {depth}")
    top = sp.powsimp(sp.expand_power_base(sp.simplify(top_s.subs(_SCALE, layer_scale)), force=True), force=True)
    across = sp.powsimp(sp.simplify(across_s.subs(_SCALE, layer_scale)), force=True)
    steps.append(Step("top curvature 2 lambda_max (A + B) along beta (beta* a top eigenvector of Sxx, "
                      "L >= 1 and lambda_max >= lambda_2), with s = |beta|^(1/L)", top))
    edge, stable_steps = _stable_steps()
    steps += stable_steps
    expr = sp.powsimp(sp.simplify(edge.subs(_CURV, top)), force=True)
    steps.append(Step("eta_max = 2 / top curvature", expr))
    extras = {
        "hessian_top": top,
        "curvature_across": across,
        "preconditioner_identity": sp.powsimp(sp.simplify(general_identity.subs(_SCALE, layer_scale)), force=True),
        "preconditioner_projection": sp.powsimp(sp.simplify(general_projection.subs(_SCALE, layer_scale)), force=True),
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- scratch.risk_time -----------------------------------------------------------------------
#: an eigenvalue of Sxx = X^T X/n (the spectral variable)
_EIG = sp.Symbol("x", positive=True)
#: the angle of the substitution x = 1 + psi - 2 sqrt(psi) cos(phi) over the MP support
_ANGLE = sp.Symbol("varphi", real=True)
#: the teacher's and the noise's coordinates along one eigenvector of Sxx
_TEACH, _NOISE = sp.Symbol("b_i", real=True), sp.Symbol("xi_i", real=True)
#: the aspect ratio d/n (the MP parameter) and a positive distance from 1
_PSI = sp.Symbol("psi", positive=True)
_Q = sp.Symbol("q", positive=True)


def _sqrt_factored(expr):
    """Square roots of perfect squares simplified (``sqrt(q^2 + 2q + 1) = q + 1``)."""
    return expr.replace(lambda e: e.is_Pow and e.exp == sp.S.Half, lambda e: sp.sqrt(sp.factor(e.base)))


def _time_integrand() -> tuple[sp.Expr, list[Step]]:
    """The expected squared error carried by one eigen-direction of ``Sxx`` at time ``t``,
    times ``d``, as a function of its eigenvalue ``x``: the integrand of the risk against the
    spectral law of ``Sxx``."""
    coord = sp.Function("beta_i")
    target = _TEACH + _NOISE
    ode = sp.Eq(coord(t).diff(t), -2 * _EIG * (coord(t) - target))
    solution = sp.dsolve(ode, coord(t), ics={coord(0): 0}).rhs
    error = sp.expand((solution - _TEACH) ** 2)
    poly = sp.Poly(error, _TEACH, _NOISE)
    n_, d_ = sp.symbols("n_samples d_dim", positive=True)
    moments = {(2, 0): 1 / d_, (0, 2): sigma**2 / (n_ * _EIG), (1, 1): 0}
    if set(poly.monoms()) - set(moments):
        raise ArithmeticError("the squared error is not quadratic in (b_i, xi_i)")
    mean = sum(coeff * moments[monom] for monom, coeff in poly.terms())
    integrand = sp.expand(sp.together((d_ * mean).subs(n_, gamma * d_)))
    integrand = sp.collect(integrand, sigma)
    at_zero = limit_by_powers(integrand, sigma, _EIG, 0, "+")
    # bias + sigma^2 variance, the variance in E = exp(-2 x t): (1 - E)^2/(gamma x)
    decay = sp.Symbol("E_t", positive=True)
    variance = sp.factor(integrand.coeff(sigma, 2).subs(sp.exp(-4 * t * _EIG), decay**2)
                         .subs(sp.exp(-2 * t * _EIG), decay))
    bias = sp.simplify(integrand - sigma**2 * integrand.coeff(sigma, 2))
    variance = variance.subs(decay, sp.exp(-2 * t * _EIG))
    if not is_zero(bias + sigma**2 * variance - integrand) or bias.has(sigma):
        raise ArithmeticError("the integrand is not bias + sigma^2 variance")
    steps = [
        Step("loss (1/n)|X beta - y|^2: gradient flow dbeta/dt = -2 (Sxx beta - Sxy) = -2 Sxx (beta - "
             "beta_ls); along an eigenvector of Sxx (eigenvalue x) with beta_ls = b_i + xi_i "
             "(teacher + noise coordinate)", ode),
        Step("sp.dsolve from beta_i(0) = 0", sp.Eq(coord(t), solution)),
        Step("squared error (beta_i(t) - b_i)^2, expanded", error),
        Step("moments: E b_i^2 = 1/d (isotropic unit teacher), xi = Sxx^+ X^T eps/n has "
             "E xi xi^T = sigma^2 Sxx^+/n so E xi_i^2 = sigma^2/(n x), E b_i xi_i = 0; times d, "
             "with n = gamma d: the integrand h(x)", integrand),
        Step("bias and variance parts of h (sp.factor in exp(-2 x t))", sp.Tuple(bias, variance)),
        Step("h(0+) (sp.limit): a zero eigenvalue (null space of X) keeps the bias 1 and no "
             "variance, the value of beta = 0 there", at_zero),
    ]
    return integrand, at_zero, (bias, variance), steps


def _marchenko_pastur() -> tuple[sp.Expr, sp.Expr, sp.Expr, list[Step]]:
    """Density of the continuous part of the MP law of ``Sxx`` (``psi = d/n``) from the
    quadratic of its Stieltjes transform, its support, and the atom at zero."""
    from featfate_sym.theory.random_matrix import mp_stieltjes

    zeta = sp.Symbol("zeta")
    m_ = sp.Symbol("m")
    quadratic = _PSI * zeta * m_**2 - (1 - _PSI - zeta) * m_ + 1
    disc = sp.expand(sp.discriminant(quadratic, m_).subs(zeta, _EIG))
    # (simplify=False: simplifying the roots leaves them as they are)
    edges = sorted(sp.solve(disc, _EIG, simplify=False), key=lambda e: float(e.subs(_PSI, 2)))
    lead = sp.Poly(quadratic, m_).LC().subs(zeta, _EIG)
    # on the support the discriminant is negative: m(x + i0) = (-B + i sqrt(-disc))/(2A),
    # and the density is Im m / pi
    density = sp.sqrt(-disc) / (2 * sp.pi * lead)
    # x = 1 + psi - 2 sqrt(psi) cos(phi): phi in [0, pi] runs over the support, and the
    # square-root edges become sin(phi) (smooth for quadrature)
    # written as (1 - sqrt(psi))^2 + 4 sqrt(psi) sin^2(phi/2): no cancellation at the lower edge
    # next to psi = 1 (checked equal to 1 + psi - 2 sqrt(psi) cos(phi) below)
    x_of_phi = (1 - sp.sqrt(_PSI)) ** 2 + 4 * sp.sqrt(_PSI) * sp.sin(_ANGLE / 2) ** 2
    if not is_zero(sp.expand_trig(x_of_phi - (1 + _PSI - 2 * sp.sqrt(_PSI) * sp.cos(_ANGLE)))):
        raise ArithmeticError("the two forms of the substitution differ")
    if not is_zero(x_of_phi.subs(_ANGLE, 0) - edges[0]) or not is_zero(x_of_phi.subs(_ANGLE, sp.pi) - edges[1]):
        raise ArithmeticError("the substitution does not run over the MP support")
    minus_disc = sp.simplify(sp.trigsimp(sp.expand(-disc.subs(_EIG, x_of_phi))))
    if not is_zero(minus_disc - 4 * _PSI * sp.sin(_ANGLE) ** 2):
        raise ArithmeticError("-disc is not 4 psi sin^2 on the support")
    # sqrt(-disc) = 2 sqrt(psi) |sin(phi)| = 2 sqrt(psi) sin(phi) on [0, pi]
    root_on_support = sp.sqrt(minus_disc).replace(sp.Abs, lambda arg: arg)
    jacobian = sp.simplify(sp.trigsimp(root_on_support * sp.diff(x_of_phi, _ANGLE)))
    weight = jacobian / (2 * sp.pi * lead.subs(_EIG, x_of_phi))
    # atom at zero: -lim_{z -> 0-} z m(z), on each side of psi = 1
    z_neg = sp.Symbol("zeta_neg", negative=True)
    atom_above = sp.simplify(_sqrt_factored(sp.limit(-z_neg * mp_stieltjes(1 + _Q, z_neg), z_neg, 0, "-")))
    atom_below = sp.simplify(_sqrt_factored(sp.limit(-z_neg * mp_stieltjes(1 / (1 + _Q), z_neg), z_neg, 0, "-")))
    if atom_below != 0 or not is_zero(atom_above - (1 - 1 / (1 + _Q))):
        raise ArithmeticError("the MP atom at zero is not 1 - 1/psi for psi > 1, 0 below")
    steps = [
        Step("Stieltjes quadratic of the MP law of Sxx = X^T X/n, psi = d/n (random_matrix.mp_stieltjes)",
             sp.Eq(quadratic, 0)),
        Step("its discriminant at z = x; the support is where it is negative, between its roots",
             sp.Tuple(disc, *edges)),
        Step("density of the continuous part, Im m(x + i0)/pi = sqrt(-disc)/(2 pi psi x)", density),
        Step("substitution x = 1 + psi - 2 sqrt(psi) cos(phi), phi in [0, pi]: -disc = 4 psi sin^2(phi), "
             "and rho(x) dx = w(phi) dphi", weight),
        Step("atom at 0, -lim_{z->0-} z m(z): psi = 1 + q gives q/(1+q) = 1 - 1/psi; psi = 1/(1+q) "
             "gives 0", sp.Tuple(atom_above, atom_below)),
    ]
    return density, x_of_phi, weight, steps


@register(
    "scratch.risk_time",
    title="Risk along gradient flow of linear least squares from zero (time course, L = 1)",
    family=_FAMILY,
    params=[
        parameters.gamma,
        parameters.sigma,
        parameters.t,
    ],
    regime="n, d -> oo with gamma = n/d; L = 1; gradient flow on the empirical loss from beta = 0; "
    "isotropic Gaussian design, unit teacher uniform on the sphere",
    status=Status(Source.DERIVED, Exactness.EXACT,
                  verified="the integrand and the MP density are derived symbolically; the spectral "
                  "integral is left as an Integral (SymPy does not close it) and evaluated by numerical "
                  "quadrature (featfate_sym.learning_curves), checked against t -> oo (scratch.risk) and "
                  "a Monte Carlo of the flow at d = 400"),
    reference="Advani & Saxe (2017), high-dimensional dynamics of generalisation error; "
    "Marchenko-Pastur law (Bai & Silverstein 2010, Thm 3.10); model of " + _PAPER,
    notes=_CONVENTIONS + (
        "beta(t) = (I - exp(-2 Sxx t)) beta_ls; R(t) = |beta(t) - beta_t|^2 averaged over the "
        "teacher, the noise and the design: R(t) = (1 - gamma)_+ h(0+) + int h(x) rho(x) dx "
        "with h(x) = exp(-4 x t) + (sigma^2/gamma)(1 - exp(-2 x t))^2/x (bias + variance per "
        "eigenvalue x of Sxx) and rho the continuous MP density (psi = 1/gamma); the integral "
        "is written over phi in [0, pi] by x = 1 + psi - 2 sqrt(psi) cos(phi), which makes it "
        "smooth. SymPy does not evaluate the integral in closed form: the registered expression "
        "names it I_MP(gamma, sigma, t) (the Integral is extras['spectral_integral'] and a step) and is not compiled by the registry (evaluable = False); "
        "featfate_sym.learning_curves.risk_time evaluates it by quadrature of the derived "
        "integrand (scipy.integrate.quad in float64; mpmath.quad for the reference). t = 0 gives "
        "1 (beta = 0); t -> oo gives scratch.risk for sigma > 0 on both sides of gamma = 1. "
        "Extras: integrand (h = bias + sigma^2 variance), bias, variance, at_zero (h(0+)), weight (rho dx in phi), eigenvalue_of_phi, "
        "density, atom."
    ),
    singular="gamma = 1 with sigma > 0: finite at every finite t, diverging as t -> oo",
    evaluable=False,
)
def risk_time() -> Derivation:
    integrand, at_zero, (bias, variance), steps = _time_integrand()
    density, x_of_phi, weight, mp_steps = _marchenko_pastur()
    steps += mp_steps
    psi_of_gamma = 1 / gamma
    atom = sp.Max(0, 1 - gamma)
    steps.append(Step("psi = d/n = 1/gamma: atom (1 - gamma)_+", atom))
    # not simplified: simplify would merge exp(-4 x t) with exp(+4 x t) factors (overflow)
    in_phi = (integrand.subs(_EIG, x_of_phi) * weight).subs(_PSI, psi_of_gamma)
    integral = sp.Integral(in_phi, (_ANGLE, 0, sp.pi))
    # the main expression names the integral (an undefined function of the parameters, so
    # that it prints in every LaTeX renderer); the Integral itself is a step and an extra
    named = sp.Function("I_MP")(gamma, sigma, t)
    expr = atom * at_zero + named
    steps.append(Step("the continuous part: I_MP(gamma, sigma, t) = int_0^pi h(x(phi)) w(phi) dphi (not "
                      "closed by SymPy: numerical quadrature)", sp.Eq(named, integral)))
    steps.append(Step("R(t) = atom h(0+) + I_MP", expr))
    limit_integrand = limit_by_powers(integrand, sigma, t, sp.oo)
    steps.append(Step("t -> oo (sp.limit, x > 0): the bias of every nonzero eigenvalue is gone, the "
                      "variance tends to sigma^2/(gamma x)", limit_integrand))
    extras = {
        "integrand": integrand,
        "bias": bias,
        "variance": variance,
        "at_zero": at_zero,
        "integrand_limit": limit_integrand,
        "weight": weight.subs(_PSI, psi_of_gamma),
        "eigenvalue_of_phi": x_of_phi.subs(_PSI, psi_of_gamma),
        "density": density.subs(_PSI, psi_of_gamma),
        "atom": atom,
        "spectral_integral": integral,
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- ft.transferability_gd -----------------------------------------------------------------
#: reduced coordinates of fine-tuning: the row-space part of the first layer's column
#: vector (two components) and the common scale of the deeper layers
_P1, _P2 = sp.Symbol("p_1", real=True), sp.Symbol("p_2", real=True)
_SG = sp.Symbol("varsigma", positive=True)
#: the scratch interpolator's components in the row-space basis (e_1 along P beta_s)
_B1, _B2 = sp.Symbol("b_1", real=True), sp.Symbol("b_2", real=True)
#: the layer imbalance u_1^T D_1 u_1 = |v|^2 - varsigma^2 at the end of fine-tuning
_DELTA = sp.Symbol("Delta", real=True)


def _reduced_loss(scales, product):
    """The whitened loss |P beta - beta_sc|^2 on the invariant ansatz ``W_1 = v u_1^T``,
    ``W_l = varsigma_l u_{l-1} u_l^T``: ``beta = v prod varsigma_l``, ``P v = (p_1, p_2)``."""
    return (product * _P1 - _B1) ** 2 + (product * _P2 - _B2) ** 2


def _reduced_parts():
    """GD drift of the imbalance on the ansatz (explicit depths 2 and 3, separate scales),
    and the common-scale flow for general L."""
    steps = []
    for depth in (2, 3):
        scales = sp.symbols(f"varsigma_2:{depth + 1}", positive=True)
        product = sp.Mul(*scales)
        loss = _reduced_loss(scales, product)
        grads = {v: sp.diff(loss, v) for v in (_P1, _P2, *scales)}
        stepped = {v: v - eta * g for v, g in grads.items()}
        a_sym = sp.Symbol("a_null", nonnegative=True)  # |(I-P) v|^2, frozen
        imbalance = a_sym + _P1**2 + _P2**2 - scales[0] ** 2
        change = sp.expand(imbalance.xreplace(stepped) - imbalance)
        drift = sp.expand(grads[_P1] ** 2 + grads[_P2] ** 2 - grads[scales[0]] ** 2)
        if sp.expand(change - eta**2 * drift) != 0:
            raise ArithmeticError("the one-step change of the imbalance is not eta^2 (|G_1|^2 - |G_2|^2)")
        if depth == 3:
            deeper = scales[0] ** 2 - scales[1] ** 2
            deeper_change = sp.expand(deeper.xreplace(stepped) - deeper)
            equal = {scales[1]: scales[0]}
            if not is_zero(deeper_change.subs(equal)):
                raise ArithmeticError("equal deeper scales do not stay equal")
            rate_equal = sp.simplify((-grads[scales[0]]).subs(equal))
        steps.append(Step(f"L = {depth}: one GD step changes |v|^2 - varsigma_2^2 by eta^2 times "
                          "(|dl/dp|^2 - (dl/dvarsigma_2)^2), exactly (no eta-linear term)", sp.Eq(change, eta**2 * drift)))
    steps.append(Step("L = 3: varsigma_2^2 - varsigma_3^2 does not move when the deeper scales are equal, so "
                      "they stay equal (one common scale varsigma)"))
    # common scale, general depth: prod = varsigma^(L-1); dl/dvarsigma_l = (dl/dprod) prod/varsigma
    prod_sym = sp.Symbol("Pi", positive=True)
    loss_pi = _reduced_loss((), prod_sym)
    rate_p = [sp.expand(-sp.diff(loss_pi, v).subs(prod_sym, _SG ** (L - 1))) for v in (_P1, _P2)]
    rate_sg = sp.expand(-(sp.diff(loss_pi, prod_sym) * prod_sym / _SG).subs(prod_sym, _SG ** (L - 1)))
    rate_sg = sp.powsimp(rate_sg, force=True)
    if not is_zero(rate_sg.subs(L, 3) - rate_equal.subs(sp.Symbol("varsigma_2", positive=True), _SG)):
        raise ArithmeticError("the common-scale rate disagrees with the explicit depth 3")
    drift_rate = sp.powsimp(sp.expand(rate_p[0] ** 2 + rate_p[1] ** 2 - rate_sg**2), force=True)
    steps += [
        Step("common scale, any L: gradient flow dp/dt, dvarsigma/dt (= -dl/dvarsigma_l at equal scales; "
             "checked against L = 3)", sp.Tuple(*rate_p, rate_sg)),
        Step("drift rate of the imbalance: D(end) = eta int_0^oo f dt + O(eta^2) (the sum over steps of "
             "eta^2 f is eta times a Riemann sum of the flow)", drift_rate),
    ]
    return rate_p, rate_sg, drift_rate, steps


@register(
    "ft.transferability_gd",
    title="Fine-tuning transferability at a finite gradient-descent step, first order in eta",
    family=_FAMILY,
    params=[
        parameters.gamma,
        parameters.theta,
        parameters.sigma,
        parameters.L,
        parameters.eta,
    ],
    regime="n, d -> oo with gamma = n/d < 1 (T = 0 above); population source; balanced pretrained "
    "network (rank one, unit |beta_s|); fine-tuning of all layers by gradient descent with a fixed step "
    "eta on the whitened target loss |P beta - beta_sc|^2 (the 'whitened' solver of the simulator: the "
    "same minimisers and the same flow end point as the empirical loss)",
    status=Status(Source.DERIVED, Exactness.APPROXIMATION, neglected="O(eta^2)",
                  verified="the drift integral is not closed by SymPy: it is the integral of a derived rate "
                  "along the reduced flow, solved numerically (featfate_sym.learning_curves); checked against "
                  "the exact reduced GD map and the simulator at d = 100"),
    reference="drift law of dln.conservation; end point of ft.transferability_exact; model of " + _PAPER,
    notes=_CONVENTIONS + (
        "On the ansatz W_1 = v u_1^T, W_l = varsigma_l u_{l-1} u_l^T (invariant under GD from the "
        "balanced rank-one pretrained weights for any loss of beta), (I-P) v = (I-P) beta_s is frozen, "
        "P v = (p_1, p_2) lies in span{P beta_s, beta_sc} for the whitened loss, and the deeper scales "
        "stay equal (varsigma). The only imbalance is Delta = |v|^2 - varsigma^2, 0 at the start; a "
        "step changes it by eta^2 f exactly, so Delta(end) = eta int_0^oo f dt + O(eta^2) along the flow. "
        "At the end P beta = beta_sc, so with c = varsigma(end): Delta = a + b c^(2-2L) - c^2 "
        "(Delta = 0: the balanced root of ft.transferability_exact); T = (1-gamma)(2 c^(L-1) cos(theta) "
        "- c^(2L-2)) moves by dT/dc dc/dDelta Delta. The expression is T_exact + eta T_1 with "
        "T_1 = dT/deta at eta = 0 written with the drift integral I_drift(gamma, theta, sigma, L) = "
        "int_0^oo f_drift(t) dt of the flow's rate (extras['drift_integral']); it is not compiled by the registry (evaluable = False): "
        "featfate_sym.learning_curves.transferability_gd evaluates it. L = 1: no imbalance, T_1 = 0. "
        "For the empirical loss (1/n)|X beta - y|^2 the end-point equation is the same but the drift "
        "integral runs over the flow in the whole row space (the MP spectrum): learning_curves.fine_tuning_noise_integral(...).full_batch (see ft.transferability_sgd). "
        "Extras: rate_p1, rate_p2, rate_varsigma (reduced flow), drift_rate (f), end_imbalance "
        "(Delta(c)), scale_slope (dc/dDelta at Delta = 0), transferability_of_c, initial_p1, b_1, b_2, "
        "slope_factor (dT/dc dc/dDelta)."
    ),
    singular="gamma -> 1- with sigma > 0: c diverges (as in ft.transferability_exact)",
    evaluable=False,
)
def transferability_gd() -> Derivation:
    from featfate_sym.registry import get
    from featfate_sym.symbols import a, b, c

    rate_p, rate_sg, drift_rate, steps = _reduced_parts()
    exact = get("ft.transferability_exact")
    t_of_c = next(value for value, cond in exact.expr.args if cond == (gamma < 1))
    a_lim, b_lim = exact.extras["a"], exact.extras["b"]
    # end point: p = beta_sc / c^(L-1), |v|^2 = a + |p|^2
    end_p2 = (_B1**2 + _B2**2) / _SG ** (2 * L - 2)
    end_imbalance = sp.powsimp(sp.expand((a + end_p2 - _SG**2).subs(_B1**2 + _B2**2, b).subs(_SG, c)), force=True)
    end_imbalance = sp.powsimp(end_imbalance.subs({_B1**2: b - _B2**2}), force=True)
    balanced = exact.extras["root_equation"]  # c^(2L) - a c^(2L-2) - b = 0
    if not is_zero(sp.expand(sp.powsimp(end_imbalance * c ** (2 * L - 2), force=True)) + sp.expand(balanced)):
        raise ArithmeticError("Delta = 0 is not the balanced root equation")
    scale_slope = sp.simplify(1 / sp.diff(end_imbalance, c))
    t_slope = sp.simplify(sp.diff(t_of_c, c))
    factor = sp.factor(t_slope * scale_slope)
    # concentrated geometry: e_1 = P beta_s/|P beta_s|, |P beta_s|^2 -> gamma, P beta_s . beta_sc ->
    # gamma cos(theta) (E P = gamma I; the noise part of beta_sc has mean zero against beta_s)
    b1 = sp.sqrt(gamma) * sp.cos(theta)
    b2 = sp.sqrt(sp.simplify(b_lim - b1**2))
    p1_start = sp.sqrt(gamma)
    drift = sp.Function("f_drift")
    integral = sp.Integral(drift(t), (t, 0, sp.oo))
    named = sp.Function("I_drift")(gamma, theta, sigma, L)
    steps.append(Step("the drift integral along the reduced flow from the pretrained state", sp.Eq(named, integral)))
    t1 = factor.subs({a: a_lim, b: b_lim}) * named
    expr = t_of_c.subs({a: a_lim, b: b_lim}) + eta * t1
    steps += [
        Step("end point: P beta = beta_sc gives p = beta_sc/c^(L-1) (c = varsigma(end)); the imbalance there, "
             "|v|^2 - c^2 with |v|^2 = a + |p|^2 (Delta = 0 is the balanced root equation of "
             "ft.transferability_exact, checked)", end_imbalance),
        Step("dc/dDelta at the balanced end point (implicit function)", scale_slope),
        Step("T(c) (ft.transferability_exact, gamma < 1) and dT/dc", sp.Tuple(t_of_c, t_slope)),
        Step("concentrated start: p(0) = (sqrt(gamma), 0), varsigma(0) = 1; beta_sc = (b_1, b_2) with "
             "b_1 = P beta_s . beta_sc / |P beta_s| and b_2^2 = |beta_sc|^2 - b_1^2", sp.Tuple(p1_start, b1, b2)),
        Step("T_gd = T_exact + eta dT/dc dc/dDelta int_0^oo f dt + O(eta^2); the integral runs along the "
             "reduced flow (numerical ODE solve: not closed by SymPy)", expr),
    ]
    extras = {
        "rate_p1": rate_p[0], "rate_p2": rate_p[1], "rate_varsigma": rate_sg, "drift_rate": drift_rate,
        "end_imbalance": end_imbalance, "scale_slope": scale_slope, "transferability_of_c": t_of_c,
        "slope_factor": factor, "initial_p1": p1_start, "b_1": b1, "b_2": b2,
        "null_norm_sq": a_lim, "scratch_norm_sq": b_lim, "drift_integral": integral,
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- scratch.risk_sgd_stationary -----------------------------------------------------------
#: per-sample gradients u_i = 2 x_i r_i of one coordinate (the enumeration of the sampling)
_GRADS = sp.symbols("u_1:4", real=True)
#: a curvature (eigenvalue of H = 2 Sxx), the noise variance along it, its stationary variance
_HMODE, _GMODE, _CMODE = sp.Symbol("h_i", positive=True), sp.Symbol("g_i", positive=True), sp.Symbol("c_i", positive=True)
#: the leverage x_i^T (X^T X)^+ x_i of a sample and its limit
_LEV = sp.Symbol("ell", positive=True)


def _minibatch_covariance() -> tuple[sp.Expr, list[Step]]:
    """Covariance of the mean of ``B`` per-sample gradients drawn uniformly with replacement
    out of ``n``: enumerated exactly for ``n = 3`` and ``B = 1, 2, 3`` and found to be
    ``(M - g^2)/B`` (``M`` the mean square, ``g`` the mean), the variance of a mean of ``B``
    iid draws."""
    import itertools

    count = len(_GRADS)
    mean = sp.Add(*_GRADS) / count
    second = sp.Add(*[u**2 for u in _GRADS]) / count
    for size in (1, 2, 3):
        draws = list(itertools.product(range(count), repeat=size))
        avg = [sp.Add(*[_GRADS[i] for i in draw]) / size for draw in draws]
        e1 = sp.Add(*avg) / len(draws)
        e2 = sp.Add(*[a**2 for a in avg]) / len(draws)
        if sp.expand(e1 - mean) != 0 or sp.expand(e2 - e1**2 - (second - mean**2) / size) != 0:
            raise ArithmeticError(f"the minibatch covariance at B = {size} is not (M - g^2)/B")
    batch = parameters.batch.symbol
    cov = (second - mean**2) / batch
    steps = [Step("minibatch gradient g_B = (1/B) sum_j u_{i_j}, u_i = 2 x_i r_i, i_j uniform on 1..n with "
                  "replacement: mean and covariance enumerated exactly (n = 3, B = 1, 2, 3, one coordinate; "
                  "the covariance of two coordinates is the same bilinear form): unbiased, Cov = (M - g g^T)/B",
                  cov)]
    return cov, steps


def _lyapunov() -> tuple[sp.Expr, list[Step]]:
    """Stationary covariance of ``delta <- (I - eta H) delta - eta xi`` (``Cov xi = G``):
    the exact per-mode fixed point, its first order in ``eta``; the continuous Lyapunov
    equation ``H C + C H = eta G`` solved for a 2x2 block with ``G`` not diagonal in the
    eigenbasis of ``H``, and the trace identity ``tr C = (eta/2) tr(H^{-1} G)``."""
    # simplify=False: the root is factored next
    exact = sp.solve(sp.Eq(_CMODE, (1 - eta * _HMODE) ** 2 * _CMODE + eta**2 * _GMODE), _CMODE, simplify=False)
    (exact,) = exact
    exact = sp.factor(exact)
    first = sp.series(exact, eta, 0, 2).removeO()
    h1, h2 = sp.symbols("h_1 h_2", positive=True)
    g11, g12, g22 = sp.symbols("G_11 G_12 G_22", real=True)
    c11, c12, c22 = sp.symbols("C_11 C_12 C_22", real=True)
    hmat = sp.diag(h1, h2)
    gmat = sp.Matrix([[g11, g12], [g12, g22]])
    cmat = sp.Matrix([[c11, c12], [c12, c22]])
    eqs = hmat * cmat + cmat * hmat - eta * gmat
    sol = sp.solve([eqs[0, 0], eqs[0, 1], eqs[1, 1]], [c11, c12, c22], dict=True)[0]
    trace = sp.factor((cmat.trace()).subs(sol))
    identity = sp.factor(eta / 2 * (hmat.inv() * gmat).trace())
    if not is_zero(trace - identity):
        raise ArithmeticError("tr C is not (eta/2) tr(H^-1 G)")
    if not is_zero(first - eta * _GMODE / (2 * _HMODE)):
        raise ArithmeticError("the first order of the discrete fixed point is not the continuous Lyapunov one")
    steps = [
        Step("linearised SGD around the minimiser: delta_{k+1} = (I - eta H) delta_k - eta xi_k, H = 2 Sxx, "
             "Cov xi = G; per eigen-mode of H (curvature h_i, noise variance g_i) the stationary variance "
             "solves c = (1 - eta h)^2 c + eta^2 g (sp.solve)", sp.Eq(_CMODE, exact)),
        Step("to first order in eta (sp.series): the continuous Lyapunov equation H C + C H = eta G",
             sp.Eq(_CMODE, first)),
        Step("H C + C H = eta G for a 2x2 block, G not diagonal in the eigenbasis of H (sp.solve)",
             sp.Matrix([[sol[c11], sol[c12]], [sol[c12], sol[c22]]])),
        Step("trace identity (checked equal to (eta/2) tr(H^-1 G), for any G)", sp.Eq(sp.Symbol("tr_C"), trace)),
    ]
    return exact, steps


@register(
    "scratch.risk_sgd_stationary",
    title="Stationary excess risk of constant-step minibatch SGD on linear least squares, first order in eta",
    family=_FAMILY,
    params=[parameters.gamma, parameters.sigma, parameters.eta, parameters.batch, parameters.d],
    regime="L = 1; n, d -> oo with gamma = n/d; minibatch SGD with a fixed step eta and batches of B rows "
    "drawn uniformly with replacement; the stationary law reached after the transient, around the "
    "empirical minimiser beta*; isotropic Gaussian design, label noise sigma; valid for eta d/B << 1 "
    "(the result is O(1) when the step is eta = O(1/d), i.e. eta d = O(1), the natural SGD scale since "
    "|x_i|^2 ~ d)",
    status=Status(Source.DERIVED, Exactness.APPROXIMATION,
                  neglected="O(eta^2): the relative corrections eta mu_1 = eta (the discrete map) and "
                  "~ eta d/B (the multiplicative gradient noise at beta != beta*); finite-d corrections of "
                  "the leverages",
                  verified="minibatch covariance enumerated at n = 3; the Lyapunov trace identity at 2x2; "
                  "the leading order and the eta d/B estimate of the next order checked against the SGD "
                  "simulator (time averages after burn-in) at d = 50 and 100"),
    reference="Linearised SGD / Ornstein-Uhlenbeck stationary law (Mandt, Hoffman & Blei, JMLR 2017); "
    "leverages of Gaussian designs; model of " + _PAPER,
    notes=_CONVENTIONS + (
        "Excess risk E|beta - beta*|^2 = tr C of the stationary fluctuation delta = beta - beta* (its mean "
        "is 0: the linear map is unbiased), i.e. the test risk above that of the least-squares minimiser. "
        "At beta* the full gradient vanishes, so the minibatch noise is G = (4/(B n)) sum_i r_i^2 x_i x_i^T "
        "(r = X beta* - y); the trace identity gives tr C = (eta/2) tr(H^-1 G) = (eta/B) sum_i r_i^2 h_i "
        "with h_i = x_i^T (X^T X)^+ x_i the leverages. Given X, r = (I - P) eps has E r_i^2 = sigma^2 "
        "(1 - h_i); in the proportional limit every leverage concentrates at h_i -> min(1, 1/gamma) "
        "(sum_i h_i = rank X exactly) and the residuals are independent of the design to leading order, "
        "so tr C = (eta sigma^2/B) n l (1 - l). Equivalently G -> (4 s^2/B) Sxx with s^2 = sigma^2 "
        "(1 - 1/gamma) the training residual: the per-mode variance eta s^2/B is the same for every "
        "eigenvalue x of Sxx, and the MP mass of the continuous part (1 for gamma > 1) gives the trace. "
        "gamma <= 1: the residual vanishes at every interpolator, SGD converges (0). Not uniform as "
        "gamma -> 1+: the slowest mode relaxes at 2 eta x_min with x_min = (1 - gamma^(-1/2))^2 -> 0. "
        "Depth: for a balanced network near beta* the end-to-end step is eta J J^T with J J^T = "
        "|beta|^(2-2/L) (I + (L-1) P_beta) (dln.max_stable_step), so to the same order the d - 1 "
        "directions across beta see the step eta |beta*|^(2-2/L): R_L ~ |beta*|^(2-2/L) R_1 at the start "
        "(not registered). It is not a stationary law: the minibatch noise also moves the weights along the "
        "manifold of minima (an O(eta^2) drift per step that accumulates), unbalancing the layers; for L = 2 "
        "the simulator (gamma = 2, d = 100, B = 10, eta d = 0.5) shows |W_2|^2 falling from |beta*| ~ 1.41 to "
        "0.28 over 2000 epochs while |W_1| grows, and the excess risk following about 1.1-1.3 times "
        "|W_2|^2 R_1 (0.033 down to 0.0095, against R_1 = 0.025): SGD drifts towards flatter minima, with a "
        "smaller end-to-end step across beta. Extras: residual_variance (s^2), mode_variance "
        "(eta s^2/B), discrete_mode_variance (all orders in eta, fixed G), next_order_estimate "
        "(the eta^2 term from the multiplicative noise, Gaussian fourth moments and isotropic C: "
        "an estimate of the size of the neglected term, not a result)."
    ),
    special_cases=[
        SpecialCase("many samples (gamma = 10^6): nearly online SGD, eta d sigma^2 (1 - 10^-6)/B",
                    eta * parameters.d.symbol * sigma**2 * (1 - sp.Rational(1, 10**6)) / parameters.batch.symbol,
                    {gamma: 10**6}),
        SpecialCase("gamma <= 1: interpolation, SGD converges (0)", sp.Integer(0), {gamma: sp.Rational(1, 2)}),
        SpecialCase("gamma = 2, B = 1: eta d sigma^2/2", eta * parameters.d.symbol * sigma**2 / 2,
                    {gamma: 2, parameters.batch.symbol: 1}),
    ],
    singular="none: finite on the whole domain (0 for gamma <= 1); the approximation needs eta d/B << 1 and is "
    "reached only after a relaxation time ~ 1/(eta (1 - gamma^(-1/2))^2) steps",
)
def risk_sgd_stationary() -> Derivation:
    from featfate_sym.theory.random_matrix import mp_moments

    batch, dim = parameters.batch.symbol, parameters.d.symbol
    cov, steps = _minibatch_covariance()
    # the Hessian of the loss (1/n)|X beta - y|^2, at three samples in two dimensions
    xs = sp.Matrix(3, 2, lambda i, j: sp.Symbol(f"x_{i}{j}", real=True))
    ys = sp.Matrix(3, 1, lambda i, j: sp.Symbol(f"y_{i}", real=True))
    bs = sp.Matrix(sp.symbols("beta_1:3", real=True))
    res = xs * bs - ys
    loss = (res.T * res)[0, 0] / 3
    hess = sp.hessian(loss, list(bs)).applyfunc(sp.expand)
    if (hess - (2 * xs.T * xs / 3).applyfunc(sp.expand)).applyfunc(sp.expand) != sp.zeros(2):
        raise ArithmeticError("the Hessian of the loss is not 2 Sxx")
    steps.append(Step("Hessian of (1/n)|X beta - y|^2 (sp.hessian, n = 3, d = 2): H = 2 X^T X/n = 2 Sxx; the "
                      "per-sample gradient 2 x_i r_i, r = X beta - y", hess))
    steps.append(Step("at beta* the full gradient (the mean g) vanishes (normal equations X^T r* = 0): "
                      "G = Cov g_B = (4/(B n)) sum_i r_i^2 x_i x_i^T"))
    discrete, lyap_steps = _lyapunov()
    steps += lyap_steps
    # tr(H^-1 G) with H = 2 X^T X/n: x_i^T (2 Sxx)^-1 x_i (4 r_i^2/(B n)) = (2/B) r_i^2 h_i
    n_, r2 = sp.Symbol("n_samples", positive=True), sp.Symbol("rho_i", nonnegative=True)  # rho_i = r_i^2
    quad_form = sp.Symbol("q_i", positive=True)  # x_i^T (X^T X)^-1 x_i = h_i
    per_sample = sp.simplify(eta / 2 * (4 * r2 / (batch * n_)) * (n_ * quad_form) / 2)
    per_sample = per_sample.subs(quad_form, _LEV)
    steps.append(Step("one sample's share of tr C = (eta/2) tr(H^-1 G): x_i^T (2 Sxx)^-1 x_i = (n/2) h_i with "
                      "h_i = x_i^T (X^T X)^+ x_i (ell here), so (eta/B) rho_i h_i with rho_i = r_i^2", per_sample))
    mean_r2 = sigma**2 * (1 - _LEV)
    share = sp.factor(per_sample.subs(r2, mean_r2))
    steps.append(Step("E[r_i^2 | X] = sigma^2 (1 - h_i) (r = (I - P) eps, P the hat matrix); the residuals "
                      "are taken independent of the design beyond this, to leading order", share))
    lev = sp.Piecewise((1 / gamma, gamma >= 1), (1, True))
    total = sp.piecewise_fold(share.subs(_LEV, lev) * gamma * dim)
    total = sp.Piecewise(*[(sp.factor(v), c) for v, c in total.args])
    steps.append(Step("proportional limit: every leverage concentrates at l = rank X/n = min(1, 1/gamma) "
                      "(sum_i h_i = rank X); n = gamma d samples", total))
    # the eigenbasis route: G -> (4 s^2/B) Sxx with s^2 the mean training residual
    s2 = sp.factor(mean_r2.subs(_LEV, 1 / gamma))
    mode = sp.factor((eta * _GMODE / (2 * _HMODE)).subs({_GMODE: 4 * s2 / batch * _EIG, _HMODE: 2 * _EIG}))
    if mode.has(_EIG):
        raise ArithmeticError("the per-mode variance depends on the eigenvalue")
    psi_ = 1 / gamma
    mu1 = mp_moments(_PSI, 1)[0].subs(_PSI, psi_)
    route = mode * dim  # times the continuous MP mass, 1 for gamma > 1 (psi < 1: no atom)
    if not is_zero(route - total.args[0][0]):
        raise ArithmeticError("the eigenbasis route disagrees with the leverage route")
    steps.append(Step("eigenbasis route (gamma > 1): G -> (4 s^2/B) Sxx, s^2 = sigma^2 (1 - 1/gamma) the "
                      "training residual; the mode variance eta g/(2h) at h = 2x, g = 4 s^2 x/B does not "
                      "depend on x, and d times the MP mass 1 of the continuous part gives the same trace",
                      sp.Tuple(s2, mode)))
    # the next order from the multiplicative noise: G(delta) ~ (4/B)(s^2 + tr(Sxx C)) Sxx,
    # tr(Sxx C) = mu_1 d c for isotropic C = c I (Gaussian fourth moments)
    c_sym = sp.Symbol("c", positive=True)
    # simplify=False: only the factored series coefficient of the root is used
    (self_consistent,) = sp.solve(sp.Eq(c_sym, eta * (s2 + mu1 * dim * c_sym) / batch), c_sym, simplify=False)
    second = sp.factor(sp.series(self_consistent * dim, eta, 0, 3).removeO().coeff(eta, 2) * eta**2)
    steps.append(Step("size of the neglected term (estimate): the noise at beta* + delta adds (4/B) tr(Sxx C) "
                      "Sxx (Gaussian fourth moments, isotropic C = c I, tr(Sxx C) = mu_1 d c with the MP "
                      "moment mu_1 = 1); c = eta (s^2 + mu_1 d c)/B, its eta^2 term times d", second))
    expr = total
    extras = {
        "residual_variance": s2,
        "mode_variance": mode,
        "discrete_mode_variance": discrete,
        "minibatch_covariance": cov,
        "next_order_estimate": second,
    }
    return Derivation(expr, steps=steps, extras=extras)


# -- ft.transferability_sgd ------------------------------------------------------------------
#: a per-step gradient of the loss in beta (three coordinates stand for any dimension) and
#: the ansatz' first-layer column
_GVEC = sp.Matrix(sp.symbols("g_1:4", real=True))
_VVEC = sp.Matrix(sp.symbols("v_1:4", real=True))
#: population size and batch size of the sampling, the sums S_1 = sum u_i, S_2 = sum u_i^2
_NPOP = sp.Symbol("n_samples", integer=True, positive=True)
_S1, _S2 = sp.Symbol("S_1", real=True), sp.Symbol("S_2", nonnegative=True)
#: training loss l = (1/n)|X beta - y|^2 at the current weights; the ratio
#: kappa = (1/n) sum_i r_i^2 |x_i|^2 / (d l) (-> 1: |x_i|^2 concentrates at d)
_LOSS, _KAPPA = sp.Symbol("ell", nonnegative=True), sp.Symbol("kappa", positive=True)
#: the mean gradient's squared norm, its component along v, v^T M v (O(1) in the limit)
_GBAR2, _VGBAR, _VMV = sp.Symbol("gbar_sq", nonnegative=True), sp.Symbol("vgbar", real=True), \
    sp.Symbol("vMv", nonnegative=True)
#: second moments (times d) of one eigen-mode of Sxx: E p_k^2, E p_k b_k, E b_k^2
_AMOM, _CMOM, _BMOM = sp.Symbol("A_x", nonnegative=True), sp.Symbol("C_x", real=True), \
    sp.Symbol("B_x", positive=True)


def _drift_any_gradient() -> tuple[sp.Expr, list[Step]]:
    """One step on the ansatz with an arbitrary gradient ``g = dloss_B/dbeta`` (any
    minibatch loss): the exact change of ``Delta = |v|^2 - varsigma^2``.  Explicit depths 2
    and 3 (separate scales, a linear surrogate ``g . beta`` with the same weight gradient at
    the point), then the common scale for general ``L``."""
    steps = []
    for depth in (2, 3):
        scales = sp.symbols(f"varsigma_2:{depth + 1}", positive=True)
        product = sp.Mul(*scales)
        # the layer gradients at the point only involve dloss/dbeta = g
        surrogate = (_GVEC.T * _VVEC)[0, 0] * product
        variables = list(_VVEC) + list(scales)
        grads = {v: sp.diff(surrogate, v) for v in variables}
        stepped = {v: v - eta * grads[v] for v in variables}
        imbalance = (_VVEC.T * _VVEC)[0, 0] - scales[0] ** 2
        change = sp.expand(imbalance.xreplace(stepped) - imbalance)
        drift = sp.expand(sum(grads[v] ** 2 for v in _VVEC) - grads[scales[0]] ** 2)
        if sp.expand(change - eta**2 * drift) != 0:
            raise ArithmeticError("the one-step change of Delta is not eta^2 (|G_v|^2 - G_varsigma^2)")
        if depth == 3:
            deeper = scales[0] ** 2 - scales[1] ** 2
            if sp.expand(deeper.xreplace(stepped) - deeper).subs(scales[1], scales[0]) != 0:
                raise ArithmeticError("equal deeper scales do not stay equal under a minibatch step")
        steps.append(Step(f"L = {depth}, any gradient g = dloss_B/dbeta (any minibatch): one step changes "
                          "Delta = |v|^2 - varsigma_2^2 by exactly eta^2 (|G_v|^2 - G_varsigma^2)",
                          sp.Eq(change, eta**2 * drift)))
    prod_sym = sp.Symbol("Pi", positive=True)
    surrogate = (_GVEC.T * _VVEC)[0, 0] * prod_sym
    g_v = [sp.diff(surrogate, v).subs(prod_sym, _SG ** (L - 1)) for v in _VVEC]
    g_s = sp.powsimp((sp.diff(surrogate, prod_sym) * prod_sym / _SG).subs(prod_sym, _SG ** (L - 1)), force=True)
    rate = sp.powsimp(sp.expand(sum(x**2 for x in g_v) - g_s**2), force=True)
    steps.append(Step("common scale, any L: G_v = varsigma^(L-1) g, G_varsigma = varsigma^(L-2) v.g, and the "
                      "per-step drift divided by eta^2", rate))
    return rate, steps


def _drift_expectation(rate) -> tuple[sp.Expr, list[Step]]:
    """``E`` of the drift over a random gradient ``g = gbar + xi`` (``E xi = 0``,
    ``E xi xi^T = Sigma``): the GD drift at ``gbar`` plus ``tr Cov G_v - Var G_varsigma``."""
    mean = sp.Matrix(sp.symbols("gbar_1:4", real=True))
    xi = sp.Matrix(sp.symbols("xi_1:4", real=True))
    sig = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"Sigma_{min(i, j) + 1}{max(i, j) + 1}", real=True))
    sub = dict(zip(_GVEC, mean + xi))
    poly = sp.Poly(sp.expand(rate.xreplace(sub)), *xi)
    out = sp.Integer(0)
    for monom, coeff in poly.terms():
        if sum(monom) == 0:
            out += coeff
        elif sum(monom) == 2:
            idx = [k for k, m in enumerate(monom) for _ in range(m)]
            out += coeff * sig[idx[0], idx[1]]
        # odd orders have zero mean
    gd_part = rate.xreplace(dict(zip(_GVEC, mean)))
    noise = sp.expand(out - gd_part)
    want = sp.expand(_SG ** (2 * L - 2) * sig.trace() - _SG ** (2 * L - 4) * (_VVEC.T * sig * _VVEC)[0, 0])
    if sp.expand(sp.powsimp(noise - want, force=True)) != 0:
        raise ArithmeticError("the noise part of the drift is not tr Cov G_v - Var G_varsigma")
    steps = [Step("E over the minibatch, g = gbar + xi, E xi = 0, E xi xi^T = Sigma: E drift = drift(gbar) + "
                  "varsigma^(2L-2) tr Sigma - varsigma^(2L-4) v^T Sigma v (= tr Cov G_v - Var G_varsigma)",
                  sp.Eq(sp.Symbol("E_drift"), gd_part + want))]
    return want, steps


def _sampling_factor(replacement: bool) -> tuple[sp.Expr, list[Step]]:
    """``Var`` of a minibatch mean ``(1/B) sum_{j in batch} u_j`` of ``n`` numbers, for any
    ``n``, ``B``: from the inclusion probabilities (without replacement: ``P(i in S) =
    C(n-1, B-1)/C(n, B)``, ``P(i, j in S) = C(n-2, B-2)/C(n, B)``; with: ``B`` independent
    uniform draws), written ``factor * (M - gbar^2)``; checked by enumeration at ``n = 4``."""
    import itertools

    batch = parameters.batch.symbol
    n_, b_ = _NPOP, batch
    if replacement:
        # E (sum_j u_{i_j})^2 = B S_2/n + B (B - 1) (S_1/n)^2 (independent draws)
        second = (b_ * _S2 / n_ + b_ * (b_ - 1) * (_S1 / n_) ** 2) / b_**2
    else:
        single = sp.combsimp(sp.binomial(n_ - 1, b_ - 1) / sp.binomial(n_, b_))
        pair = sp.combsimp(sp.binomial(n_ - 2, b_ - 2) / sp.binomial(n_, b_))
        # (sum_{i in S} u_i)^2 = sum_{i in S} u_i^2 + sum_{i != j in S} u_i u_j
        second = (single * _S2 + pair * (_S1**2 - _S2)) / b_**2
    variance = sp.factor(sp.expand(second - (_S1 / n_) ** 2))
    spread = _S2 / n_ - (_S1 / n_) ** 2  # M - gbar^2
    factor = sp.factor(sp.cancel(variance / spread))
    if factor.has(_S1) or factor.has(_S2):
        raise ArithmeticError("the minibatch variance is not proportional to M - gbar^2")
    # enumeration at n = 4, B = 1..4
    us = sp.symbols("u_1:5", real=True)
    for size in range(1, 5):
        draws = list(itertools.product(range(4), repeat=size)) if replacement else \
            list(itertools.combinations(range(4), size))
        avg = [sp.Add(*[us[i] for i in draw]) / size for draw in draws]
        e1 = sp.Add(*avg) / len(draws)
        e2 = sp.Add(*[x**2 for x in avg]) / len(draws)
        s1, s2 = sp.Add(*us), sp.Add(*[u**2 for u in us])
        want = factor.subs({n_: 4, b_: size}) * (s2 / 4 - (s1 / 4) ** 2)
        if sp.expand(e1 - s1 / 4) != 0 or sp.expand(e2 - e1**2 - want) != 0:
            raise ArithmeticError(f"enumeration at n = 4, B = {size} disagrees with the minibatch variance")
    how = "with replacement (B independent uniform draws)" if replacement else \
        "without replacement (a uniform B-subset; P(i in S), P(i, j in S) from binomials, sp.combsimp)"
    steps = [Step(f"minibatch mean of n numbers u_i, {how}: Var = factor (M - gbar^2), M = S_2/n, gbar = S_1/n; "
                  "checked by enumerating every batch at n = 4, B = 1..4 (one coordinate; the covariance of two "
                  "coordinates is the same bilinear form)", sp.Eq(sp.Symbol("factor"), factor))]
    return factor, steps


def _mode_moments() -> tuple[tuple[sp.Expr, ...], list[Step]]:
    """The empirical flow in an eigenbasis of ``Sxx``: one mode's ODE, its second moments'
    closed ODEs, and the loss, gradient norm and ``v . grad`` as spectral integrals."""
    x = _EIG
    s_l = sp.Symbol("s", positive=True)  # s = varsigma^(L-1)
    pk, bk = sp.Symbol("p_k", real=True), sp.Symbol("b_k", real=True)
    beta_k = s_l * pk
    # one mode's share of the loss (beta - beta_sc)^T Sxx (beta - beta_sc)
    loss_k = x * (beta_k - bk) ** 2
    grad_k = 2 * x * (beta_k - bk)  # dloss/dbeta_k
    if sp.expand(sp.diff(loss_k, pk) - s_l * grad_k) != 0:
        raise ArithmeticError("the mode gradient is not s times dloss/dbeta_k")
    rate_p = sp.expand(-s_l * grad_k)  # dp_k/dt = -G_v (row-space component)
    moments = {pk**2: _AMOM, pk * bk: _CMOM, bk**2: _BMOM}

    def mean(expr):
        poly = sp.Poly(sp.expand(expr), pk, bk)
        return sp.expand(sum(c * moments[pk**m[0] * bk**m[1]] for m, c in poly.terms()))

    rate_a, rate_c = mean(2 * pk * rate_p), mean(bk * rate_p)
    loss_x, grad2_x, vgrad_x = mean(loss_k), mean(grad_k**2), mean(pk * grad_k)
    steps = [
        Step("empirical loss (beta - beta_sc)^T Sxx (beta - beta_sc) (= (1/n)|X beta - y|^2 for gamma < 1, "
             "y = X beta_sc): on one eigenvector of Sxx (eigenvalue x) with p_k the mode of P v, b_k that of "
             "beta_sc, s = varsigma^(L-1): dp_k/dt", sp.Eq(sp.Symbol("dp_k/dt"), rate_p)),
        Step("second moments times d, A = E p_k^2, C = E p_k b_k, B = E b_k^2 at eigenvalue x (closed: the "
             "mode ODE is linear given varsigma(t)): dA/dt, dC/dt", sp.Tuple(rate_a, rate_c)),
        Step("per-mode loss, |grad|^2 and p.grad (times d): integrated against the MP law of Sxx give the "
             "training loss l, |gbar|^2 and v.gbar", sp.Tuple(loss_x, grad2_x, vgrad_x)),
    ]
    return (s_l, rate_a, rate_c, loss_x, grad2_x, vgrad_x), steps


@register(
    "ft.transferability_sgd",
    title="Fine-tuning transferability after minibatch SGD (interpolating regime), first order in eta d/B",
    family=_FAMILY,
    params=[
        parameters.gamma,
        parameters.theta,
        parameters.sigma,
        parameters.L,
        parameters.eta,
        parameters.batch,
        parameters.d,
    ],
    regime="n, d -> oo with gamma = n/d < 1 (interpolation: SGD converges to a zero-loss point; T = 0 "
    "above); population source; balanced rank-one pretrained network with unit |beta_s|; fine-tuning of "
    "all layers by minibatch SGD with a fixed step eta, batches of B rows drawn uniformly with replacement, "
    "on the empirical loss (1/n)|X beta - y|^2 (the simulator's SGD); step eta = O(1/d) with eta d/B << 1",
    status=Status(Source.DERIVED, Exactness.APPROXIMATION,
                  neglected="O((eta d/B)^2) (the noise also moves the trajectory, by |delta|^2 ~ eta d/B); "
                  "O(eta) = O(1/d) at this scaling: the full-batch drift of the empirical loss (extras, "
                  "numerics: learning_curves.fine_tuning_noise_integral) and the O(1) parts of the minibatch "
                  "noise (|gbar|^2, v^T M v, the fluctuation of |x_i|^2 about d)",
                  verified="drift law on explicit depths 2, 3 (any gradient); minibatch variance from "
                  "inclusion probabilities, enumerated at n = 4; the integral I_noise along the proportional-"
                  "limit flow is not closed by SymPy (numerical, learning_curves); checked against the first-"
                  "order drift summed along each replicate's own gradient-descent run and against the SGD "
                  "simulator at d = 200"),
    reference="drift law of dln.conservation; end point of ft.transferability_exact and "
    "ft.transferability_gd; minibatch variance: sampling theory (Cochran, Sampling Techniques, 1977, "
    "Thm 2.2, finite-population correction); model of " + _PAPER,
    notes=_CONVENTIONS + (
        "On the invariant ansatz of ft.transferability_gd (W_1 = v u_1^T, deeper scales equal; invariant "
        "under any gradient of a loss of beta, hence under every minibatch step) one step with gradient g "
        "changes Delta = |v|^2 - varsigma^2 by exactly eta^2 (|G_v|^2 - G_varsigma^2) with G_v = "
        "varsigma^(L-1) g, G_varsigma = varsigma^(L-2) v.g. Over the batch, E = the GD drift at the mean "
        "gradient plus tr Cov(G_v) - Var(G_varsigma). The minibatch mean of the per-sample gradients u_i = "
        "2 x_i r_i has covariance factor (M - gbar gbar^T), M = (4/n) sum r_i^2 x_i x_i^T, factor 1/B with "
        "replacement and (n - B)/(B (n - 1)) without (a uniform B-subset; extras['without_replacement_factor']; "
        "0 at B = n: GD). tr M = 4 d kappa l (l the training loss, kappa -> 1 since |x_i|^2 ~ d) is O(d) "
        "while |gbar|^2, v.gbar, v^T M v are O(1): at eta = O(1/d) the extra drift is eta^2 (4 d/B) "
        "varsigma^(2L-2) l per step and Delta(end) - Delta_GD(end) = (eta d/B) 4 I_noise, I_noise = "
        "int_0^oo varsigma^(2L-2) l dt along the flow of the empirical loss, O(1) (as for "
        "scratch.risk_sgd_stationary). The end point (P beta = beta_sc) depends on the path only through "
        "Delta(end) (Delta = a + b c^(2-2L) - c^2), so T_sgd = T_exact + (eta d/B) 4 dT/dc dc/dDelta I_noise: "
        "the noise raises Delta, hence (dc/dDelta < 0) lowers the null-space scale c. The flow of the "
        "empirical loss is not the whitened flow of ft.transferability_gd: in an eigenbasis of Sxx the modes "
        "relax at rates 2 x varsigma^(2L-2) with x MP-distributed (psi = 1/gamma); their second moments "
        "A(x), C(x) (B(x) = 1 + sigma^2/(gamma x)) obey closed ODEs (steps), integrated numerically on "
        "Gauss nodes in phi (evaluable = False; featfate_sym.learning_curves.transferability_sgd). The "
        "whitened-loss GD term of ft.transferability_gd does not apply to this loss; the full-batch drift of "
        "the empirical loss, O(eta), is extras['full_batch_rate'] and is included by the numerics on request. "
        "L = 1: no imbalance, no correction (the interpolator reached from beta_s is unique). Extras: "
        "drift_rate_any_gradient, noise_rate (exact, per step / eta^2), noise_rate_limit, sampling_factor, "
        "without_replacement_factor, rate_A, rate_C, loss_of_x, grad_sq_of_x, vgrad_of_x, initial_A, "
        "initial_C, B_of_x, full_batch_rate, noise_integral."
    ),
    singular="gamma -> 1- with sigma > 0: c diverges (as in ft.transferability_exact); the expansion needs "
    "eta d/B << 1",
    evaluable=False,
)
def transferability_sgd() -> Derivation:
    from featfate_sym.registry import get
    from featfate_sym.symbols import b

    batch, dim = parameters.batch.symbol, parameters.d.symbol
    rate, steps = _drift_any_gradient()
    noise, more = _drift_expectation(rate)
    steps += more
    with_f, more = _sampling_factor(True)
    steps += more
    without_f, more = _sampling_factor(False)
    steps += more
    if not is_zero(without_f.subs(_NPOP, batch)) or not is_zero(without_f.subs(batch, 1) - with_f.subs(batch, 1)):
        raise ArithmeticError("without replacement: B = n is not GD or B = 1 differs from with replacement")
    # the per-sample gradient of (x_i . beta - y_i)^2
    xi_vec = sp.Matrix(sp.symbols("x_i1:4", real=True))
    y_i = sp.Symbol("y_i", real=True)
    bvec = sp.Matrix(sp.symbols("beta_1:4", real=True))
    r_i = (xi_vec.T * bvec)[0, 0] - y_i
    u_i = sp.Matrix([sp.diff(r_i**2, bb) for bb in bvec])
    if (u_i - 2 * r_i * xi_vec).applyfunc(sp.expand) != sp.zeros(3, 1):
        raise ArithmeticError("the per-sample gradient is not 2 x_i r_i")
    steps.append(Step("per-sample gradient of (x_i.beta - y_i)^2 (sp.diff): u_i = 2 x_i r_i; M = (1/n) sum u_i u_i^T "
                      "= (4/n) sum r_i^2 x_i x_i^T", u_i))
    # noise rate: Sigma = factor (M - gbar gbar^T); tr M = 4 d kappa l
    noise_rate = with_f * (_SG ** (2 * L - 2) * (4 * dim * _KAPPA * _LOSS - _GBAR2)
                           - _SG ** (2 * L - 4) * (_VMV - _VGBAR**2))
    limit_rate = sp.limit(noise_rate / dim, dim, sp.oo).subs(_KAPPA, 1) * dim
    limit_rate = sp.powsimp(sp.expand(limit_rate), force=True)
    steps.append(Step("noise part with Sigma = factor (M - gbar gbar^T): tr M = (4/n) sum r_i^2 |x_i|^2 = 4 d kappa l, "
                      "v^T Sigma v = factor (v^T M v - (v.gbar)^2) (with replacement)", noise_rate))
    steps.append(Step("proportional limit, eta = O(1/d): kappa -> 1 (|x_i|^2 = d (1 + O(d^-1/2)), the residuals "
                      "independent of |x_i| to leading order); summed over the 1/eta steps of a unit of time, eta^2 "
                      "times the O(1) terms gives O(eta) = O(1/d), which drops: per step eta^2 times", limit_rate))
    # the flow of the empirical loss in the proportional limit
    (s_l, rate_a, rate_c, loss_x, grad2_x, vgrad_x), more = _mode_moments()
    steps += more
    ex_time = get("scratch.risk_time").extras
    weight, x_of_phi = ex_time["weight"], ex_time["eigenvalue_of_phi"]
    init_a, init_c = sp.Integer(1), sp.cos(theta)
    b_of_x = 1 + sigma**2 / (gamma * _EIG)
    steps.append(Step("start: P beta_s and beta_sc = P beta_t + X^+ eps in the eigenbasis: d E p_k^2 = 1, "
                      "d E p_k b_k = cos(theta), d E b_k^2 = 1 + sigma^2/(gamma x) (E xi_k^2 = sigma^2/(n x)); the "
                      "nonzero modes carry the MP weight of scratch.risk_time (mass gamma, first moment 1)",
                      sp.Tuple(init_a, init_c, b_of_x)))
    phi = next(iter(weight.free_symbols - {gamma}))
    loss0 = sp.Integral(sp.factor(loss_x.subs({s_l: 1, _AMOM: init_a, _CMOM: init_c, _BMOM: b_of_x}))
                        .subs(_EIG, x_of_phi) * weight, (phi, 0, sp.pi))
    steps.append(Step("check: the training loss at the start (numerical quadrature of this integral in the tests) "
                      "is |beta_s - beta_t|^2 + sigma^2 = 2 - 2 cos(theta) + sigma^2", loss0))
    vs_rate = sp.Symbol("dvarsigma/dt")
    steps.append(Step("varsigma obeys dvarsigma/dt = -varsigma^(L-2) v.grad with v.grad = int vgrad(x) rho(x) dx "
                      "(the modes of (I-P) v are frozen: the gradient lies in the row space of X)",
                      sp.Eq(vs_rate, -_SG ** (L - 2) * sp.Symbol("vgrad"))))
    full_rate = sp.powsimp(_SG ** (2 * L - 2) * sp.Symbol("grad_sq") - _SG ** (2 * L - 4) * sp.Symbol("vgrad") ** 2,
                           force=True)
    steps.append(Step("full-batch drift of the empirical loss (O(eta), neglected at eta = O(1/d); extra)", full_rate))
    gd = get("ft.transferability_gd")
    exact = get("ft.transferability_exact")
    t_of_c = next(value for value, cond in exact.expr.args if cond == (gamma < 1))
    factor = gd.extras["slope_factor"].subs(b, exact.extras["b"])
    named = sp.Function("I_noise")(gamma, theta, sigma, L)
    integral = sp.Integral(_SG ** (2 * L - 2) * sp.Function("ell")(t), (t, 0, sp.oo))
    steps.append(Step("the noise integral along the proportional-limit flow of the empirical loss (numerical ODE "
                      "on Gauss nodes in phi: not closed by SymPy)", sp.Eq(named, integral)))
    per_time = sp.simplify(limit_rate / (_SG ** (2 * L - 2) * _LOSS))  # 4 d/B
    expr = t_of_c + eta * per_time * factor * named
    steps.append(Step("Delta(end) - Delta_GD(end) = eta^2 sum_k (4 d/B) varsigma^(2L-2) l = eta (4 d/B) I_noise; "
                      "T_sgd = T_exact + dT/dc dc/dDelta times that (slope factor of ft.transferability_gd)", expr))
    extras = {
        "drift_rate_any_gradient": rate, "noise_rate": noise_rate, "noise_rate_limit": limit_rate,
        "sampling_factor": with_f, "without_replacement_factor": without_f,
        "rate_A": rate_a, "rate_C": rate_c, "loss_of_x": loss_x, "grad_sq_of_x": grad2_x, "vgrad_of_x": vgrad_x,
        "initial_A": init_a, "initial_C": init_c, "B_of_x": b_of_x, "full_batch_rate": full_rate,
        "noise_integral": integral, "slope_factor": factor, "start_loss_integral": loss0,
        "mode_scale": s_l, "noise_per_time": per_time,
    }
    return Derivation(expr, steps=steps, extras=extras)
