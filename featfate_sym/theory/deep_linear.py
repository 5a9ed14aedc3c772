"""Gradient-flow structure of deep linear networks.

Model (SPEC section 1): ``f(x) = x^T W_1 W_2 ... W_L`` with a single output, so the
readout ``W_L`` is a column and the end-to-end vector is ``beta = W_1 ... W_L``; the loss
depends on the weights only through ``beta``, and training is gradient flow
``dW_l/dt = -dLoss/dW_l`` (or gradient descent with a step ``eta``).

Results registered (family ``deep_linear``):

- ``dln.conservation`` -- the matrices ``D_l = W_l^T W_l - W_{l+1} W_{l+1}^T`` are
  conserved by gradient flow.  Shown by differentiating ``D_l`` along the flow for explicit
  symbolic weights (depths 2 and 3, width 2) and a loss that is an undefined function of
  the components of ``beta``.  The main expression is the weight-decay factor
  ``D_l(t)/D_l(0)`` (from ``sp.dsolve``).  ``extras``:

  - ``flow_rate_L2_l1``, ``flow_rate_L3_l1``, ``flow_rate_L3_l2``: ``dD_l/dt`` along the
    flow after simplification (zero matrices);
  - ``weight_decay_residual_L3_l1``, ``weight_decay_residual_L3_l2``: ``dD_l/dt + 2 mu D_l``
    along the flow with weight decay ``mu`` (zero matrices);
  - ``gd_first_order_L3_l1``, ``gd_first_order_L3_l2``: the ``eta``-linear part of the
    one-step change of ``D_l`` under gradient descent (zero matrices);
  - ``gd_second_order_residual_L3_l1``, ``gd_second_order_residual_L3_l2``: the
    ``eta^2`` part minus ``G_l^T G_l - G_{l+1} G_{l+1}^T`` (zero matrices);
  - ``gd_drift``: ``D_l(k+1) - D_l(k)`` in generic matrix symbols ``W_l, G_l`` once the
    first-order terms are removed, ``eta^2 (G_l^T G_l - G_{l+1} G_{l+1}^T)``.

- ``dln.balanced_flow`` -- balanced single-output networks (``D_l = 0``, what a small
  initialisation gives) obey ``dbeta/dt = -|beta|^(2-2/L) (g + (L-1) P_beta g)``.  The
  coefficients are computed with explicit 2x2 balanced weights for ``L = 2, 3, 4``; general
  ``L`` follows from the layer-by-layer scalar recursion (the power of the layer scale is
  the same in every layer's term; the layers are counted with ``sp.summation``), which is
  checked against the explicit depths.  From the vector field: the component of ``beta``
  in a subspace that ``g`` never touches (the null space of ``X``) obeys
  ``dlog|beta_N| / dlog|beta| = (L-1)/L``.  ``extras``: ``null_space_exponent``,
  ``vector_field`` (in matrix symbols ``beta``, ``g``), ``layer_scale`` (``|beta|^(1/L)``),
  ``coefficient_g``, ``coefficient_projection`` (``dbeta/dt = A g + B P_beta g``); the norm
  is the positive symbol named ``|beta|``.

- ``dln.mode_dynamics`` -- one mode of strength ``s``: ``tau du/dt = L u^(2-2/L)(s - u)``,
  obtained by restricting the balanced-flow vector field to the mode (population loss
  with a 1/2, learning rate ``1/tau``); the ``L = 2`` solution by ``sp.dsolve`` (Saxe et
  al. 2014).  ``extras``: ``ode_rhs`` (``tau du/dt``), ``solution_L1``.

- ``dln.time_to_learn`` -- time for the mode to go from ``u0`` to ``uf``,
  ``(tau/L) int_{u0}^{uf} du / (u^p (s - u))``, ``p = 2 - 2/L``, with the Gauss
  hypergeometric function (``sp.integrate`` gives a Lerch transcendent, converted with
  ``sp.hyperexpand``); separate logarithmic branches at ``L = 2`` (below ``s``) and
  ``L = 1`` (above ``s``); infinite where the flow never reaches ``uf``.  Its float64
  evaluator needs ``hyper`` mapped to ``scipy.special.hyp2f1``.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1
from sympy.integrals.meijerint import meijerint_indefinite

from featfate_sym import registry
from featfate_sym import parameters
from featfate_sym.derivation_cache import memo
from featfate_sym.registry import Derivation, NumericForm, SpecialCase, Exactness, Source, Status, Step, register
from featfate_sym.symbols import L, eta, mu, s, t, tau, u, u0, uf
from featfate_sym.theory.zero import is_zero

_FAMILY = "deep_linear"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"
_CONSERVATION_REFERENCE = (
    "Arora, Cohen & Hazan (2018), Thm 1; Du, Hu & Lee (2018), Thm 2.1; " + _PAPER + ", Sec. 3"
)
_BALANCED_REFERENCE = "Arora, Cohen & Hazan (2018), Thm 1 (single output); " + _PAPER + ", Sec. 3"
_SAXE_REFERENCE = "Saxe, McClelland & Ganguli (2014), Eqs. 6-8; " + _PAPER + ", Sec. 3"

_WIDTH = 2  # input dimension and hidden width of the explicit symbolic networks


# -- explicit networks -----------------------------------------------------------------------
def _shapes(depth: int, width: int) -> list[tuple[int, int]]:
    """Layer shapes of a single-output network: square hidden layers, a column readout."""
    return [(width, width)] * (depth - 1) + [(width, 1)]


def _symbolic_weights(depth: int, width: int) -> list[sp.Matrix]:
    """Weights with one real symbol per entry, ``w{l}_{i}{j}``."""
    return [
        sp.Matrix(rows, cols, lambda i, j, l=l: sp.Symbol(f"w{l}_{i}{j}", real=True))
        for l, (rows, cols) in enumerate(_shapes(depth, width), start=1)
    ]


def _product(mats: list[sp.Matrix], size: int) -> sp.Matrix:
    out = sp.eye(size)
    for m_ in mats:
        out = out * m_
    return out


def _end_to_end(weights: list[sp.Matrix]) -> sp.Matrix:
    return _product(weights, weights[0].rows)


def _imbalance(weights: list[sp.Matrix], l: int) -> sp.Matrix:
    """``D_l = W_l^T W_l - W_{l+1} W_{l+1}^T`` (``l`` counted from 1)."""
    wl, wn = weights[l - 1], weights[l]
    return wl.T * wl - wn * wn.T


def _entries(weights: list[sp.Matrix]) -> list[sp.Symbol]:
    return [e for w in weights for e in w]


def _gradients(loss: sp.Expr, weights: list[sp.Matrix]) -> list[sp.Matrix]:
    """``G_l = dLoss/dW_l`` entry by entry (``sp.diff``: the chain rule through ``beta``)."""
    return [w.applyfunc(lambda e: sp.diff(loss, e)) for w in weights]


def _generic_loss(beta: sp.Matrix) -> sp.Expr:
    """An undefined function of the components of ``beta``: any loss that sees only ``beta``."""
    return sp.Function("ell")(*beta)


def _rate_along(weights, velocity, quantity) -> sp.Matrix:
    """``d quantity / dt`` when every weight entry moves with ``velocity`` (same layout).

    The entries are made functions of ``t``; ``quantity`` is differentiated in ``t`` and
    each ``dw/dt`` is replaced by the velocity: the derivative along the flow.
    """
    time = sp.Symbol("time", real=True)
    entries = _entries(weights)
    moving = {e: sp.Function(e.name)(time) for e in entries}
    rates = {sp.Derivative(moving[e], time): v for e, v in zip(entries, _entries(velocity))}
    back = {f: e for e, f in moving.items()}
    # xreplace: exact structural replacement (subs would also try to match inside Subs)
    return quantity.xreplace(moving).diff(time).xreplace(rates).xreplace(back)


def _expand_entries(mat: sp.Matrix) -> sp.Matrix:
    """Each entry expanded as a polynomial in the weights and the loss derivatives: those
    (``Subs``, ``Derivative`` of ``ell``) are held as symbols while expanding, then put
    back (expanding inside their arguments as well only costs time)."""
    held = {a: sp.Dummy() for a in mat.atoms(sp.Subs, sp.Derivative)}
    back = {v: k for k, v in held.items()}
    return mat.xreplace(held).applyfunc(sp.expand).xreplace(back)


def _simplify_matrix(mat: sp.Matrix, expanded: bool = False) -> sp.ImmutableMatrix:
    """Each entry expanded (unless ``expanded``: it is already) and simplified."""
    if not expanded:
        mat = _expand_entries(mat)
    return sp.ImmutableMatrix(mat.applyfunc(sp.simplify))


def _conservation_parts() -> tuple[dict[str, sp.Basic], list[Step]]:
    """The flow identities, the weight-decay law and the GD drift, for explicit networks."""
    extras: dict[str, sp.Basic] = {}
    steps: list[Step] = []
    for depth in (2, 3):
        weights = _symbolic_weights(depth, _WIDTH)
        beta = _end_to_end(weights)
        loss = _generic_loss(beta)
        grads = _gradients(loss, weights)
        flow = [-g for g in grads]
        decay = [-g - mu * w for g, w in zip(grads, weights)]
        if depth == 2:
            steps.append(Step(
                f"depth {depth}, width {_WIDTH}: beta = W_1 W_2 and a generic loss ell(beta)",
                sp.Eq(sp.Symbol("ell"), loss)))
            steps.append(Step("layer gradient G_2 = d ell/d W_2 by the chain rule (sp.diff)", grads[1]))
        for l in range(1, depth):
            name = f"L{depth}_l{l}"
            d_l = _imbalance(weights, l)
            rate = _simplify_matrix(_rate_along(weights, flow, d_l))
            extras[f"flow_rate_{name}"] = rate
            steps.append(Step(
                f"depth {depth}: dD_{l}/dt along dW/dt = -G, i.e. "
                f"Wdot_{l}^T W_{l} + W_{l}^T Wdot_{l} - Wdot_{l+1} W_{l+1}^T - W_{l+1} Wdot_{l+1}^T, "
                "simplified",
                rate))
            if depth == 3:
                residual = _simplify_matrix(_rate_along(weights, decay, d_l) + 2 * mu * d_l)
                extras[f"weight_decay_residual_{name}"] = residual
                steps.append(Step(
                    f"weight decay, dW/dt = -G - mu W: dD_{l}/dt + 2 mu D_{l}, simplified",
                    residual))
                first, second = _gd_step_parts(weights, grads, l)
                extras[f"gd_first_order_{name}"] = first
                extras[f"gd_second_order_residual_{name}"] = second
                steps.append(Step(
                    f"one GD step W -> W - eta G: the eta-linear part of D_{l}(k+1) - D_{l}(k) "
                    "(the same combination as the flow rate), simplified",
                    first))
                steps.append(Step(
                    f"the eta^2 part minus (G_{l}^T G_{l} - G_{l+1} G_{l+1}^T), simplified",
                    second))
    return extras, steps


def _gd_step_parts(weights, grads, l) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
    """Expand ``D_l(W - eta G) - D_l(W)`` in ``eta``: its linear part and its quadratic residual."""
    stepped = [w - eta * g for w, g in zip(weights, grads)]
    change = _expand_entries(_imbalance(stepped, l) - _imbalance(weights, l))
    first = change.applyfunc(lambda e: e.coeff(eta, 1))
    second = change.applyfunc(lambda e: e.coeff(eta, 2))
    # every term of the expanded change is eta or eta^2 times a product free of eta (no
    # weight or gradient entry holds eta): the change is exactly eta first + eta^2 second
    powers = {term.as_independent(eta, as_Add=False)[1] for e in change for term in sp.Add.make_args(e) if e != 0}
    if not powers <= {eta, eta**2}:
        raise ArithmeticError("the GD change of D_l is not quadratic in eta")
    gl, gn = grads[l - 1], grads[l]
    # the eta-coefficients of expanded entries are expanded already
    return _simplify_matrix(first, expanded=True), _simplify_matrix(second - (gl.T * gl - gn * gn.T))


def _gd_drift_generic() -> tuple[sp.MatrixExpr, sp.MatrixExpr]:
    """``D_l(k+1) - D_l(k)`` for generic matrix symbols, and that change with its
    ``eta``-linear terms dropped (they vanish by the flow identity).

    The symbols are square for brevity; the expansion is the same for the readout column.
    """
    nd = sp.Symbol("d_l", integer=True, positive=True)
    wl, wn = sp.MatrixSymbol("W_l", nd, nd), sp.MatrixSymbol("W_{l+1}", nd, nd)
    gl, gn = sp.MatrixSymbol("G_l", nd, nd), sp.MatrixSymbol("G_{l+1}", nd, nd)

    def imbalance(a, b):
        return a.T * a - b * b.T

    change = (imbalance(wl - eta * gl, wn - eta * gn) - imbalance(wl, wn)).expand()
    kept = []
    for term in change.args if isinstance(change, sp.MatAdd) else (change,):
        coeff, _ = term.as_coeff_mmul()
        if sp.degree(coeff, eta) != 1:
            kept.append(term)
    return change, sp.MatAdd(*kept)


# -- dln.conservation --------------------------------------------------------------------------
@register(
    "dln.conservation",
    title="Conserved layer imbalances of gradient flow; weight-decay law; GD drift",
    family=_FAMILY,
    params=[
        parameters.mu,
        parameters.t,
    ],
    regime="gradient flow (optionally with weight decay mu) or gradient descent with step eta "
    "on any loss that depends on the weights only through beta = W_1...W_L",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_CONSERVATION_REFERENCE,
    notes="The expression is the decay factor D_l(t)/D_l(0) under weight decay (1 without it). "
    "The conservation identities, the weight-decay residuals and the gradient-descent drift are "
    "derived for explicit symbolic weights (depths 2 and 3, width 2, single output) and a generic "
    "loss ell(beta); they are in extras. extras['gd_drift'] is the one-step change of D_l under "
    "gradient descent, eta^2 (G_l^T G_l - G_{l+1} G_{l+1}^T), exactly (not to leading order).",
    special_cases=[
        SpecialCase("no weight decay: D_l is conserved", sp.Integer(1), subs={mu: 0}),
        SpecialCase("at t = 0 the factor is 1", sp.Integer(1), subs={t: 0}),
    ],
)
def conservation() -> Derivation:
    extras, steps = _conservation_parts()
    # the generic drift drops the eta-linear terms: only because the explicit networks
    # above show that they vanish when G is the gradient
    if not all(m_.is_zero_matrix for k_, m_ in extras.items() if k_.startswith("gd_first_order_")):
        raise ArithmeticError("first-order GD terms do not cancel")
    change, drift = _gd_drift_generic()
    extras["gd_drift"] = drift
    steps.append(Step("generic matrices: D_l(W - eta G) - D_l(W), expanded", change))
    steps.append(Step(
        "its eta-linear terms are -eta times the flow combination, zero when G is the gradient "
        "(shown above); what remains is the exact drift",
        drift))
    # weight decay: every entry of D_l obeys dD/dt = -2 mu D (residuals above are zero)
    d_fn, d0 = sp.Function("D"), sp.Symbol("D_0", real=True)
    ode = sp.Eq(d_fn(t).diff(t), -2 * mu * d_fn(t))
    solution = sp.dsolve(ode, d_fn(t), ics={d_fn(0): d0})
    factor = sp.simplify(solution.rhs / d0)
    steps.append(Step("so each entry of D_l obeys this ODE under weight decay", ode))
    steps.append(Step("sp.dsolve with D(0) = D_0", solution))
    steps.append(Step("decay factor D_l(t)/D_l(0)", factor))
    return Derivation(factor, steps=steps, extras=extras)


# -- dln.balanced_flow ------------------------------------------------------------------------
def _on_circle(expr: sp.Expr, units: list[tuple[sp.Symbol, sp.Symbol]]) -> sp.Expr:
    """Reduce a polynomial modulo ``c_l^2 + s_l^2 = 1`` (unit vectors ``(c_l, s_l)``)."""
    sines = [s_ for _, s_ in units]
    others = sorted(expr.free_symbols - set(sines), key=str)
    relations = [c_**2 + s_**2 - 1 for c_, s_ in units]
    # reduced expands into polynomials itself (in the polys domain, cheaper than sp.expand)
    _, remainder = sp.reduced(expr, relations, *sines, *others, order="lex")
    return sp.factor(remainder)


def _balanced_coefficients(depth: int):
    """Coefficients of ``dbeta/dt`` for explicit balanced weights of one depth.

    Ansatz ``W_l = r_l u_{l-1} u_l^T`` (``l < L``), ``W_L = r_L u_{L-1}`` with unit vectors
    ``u_l = (c_l, s_l)``, ``c_l^2 + s_l^2 = 1``.  Balancedness ``D_l = 0`` fixes
    ``r_l = r_{l+1}`` (solved), so ``|beta| = r^L``.  The layer gradients are those of
    ``g . beta(W)`` with ``g`` frozen at ``dLoss/dbeta`` (the chain rule is linear in
    ``g``), taken at generic weights (``sp.diff``) and then evaluated at the balanced point;
    ``dbeta/dt = J Wdot`` with ``J`` the Jacobian of ``beta(W)`` there.  Returns the
    components of ``dbeta/dt`` along ``u_0`` and ``u_0^perp`` in units of ``(u_0.g)`` and
    ``(u_0^perp.g)``, the solved scales, the scale symbol and the balancedness conditions.
    """
    pairs = [sp.symbols(f"c{l} s{l}", real=True) for l in range(depth)]
    scales = sp.symbols(f"r1:{depth + 1}", positive=True)
    units = [sp.Matrix(pair) for pair in pairs]
    weights = [scales[l] * units[l] * units[l + 1].T for l in range(depth - 1)]
    weights.append(scales[-1] * units[-1])
    # balancedness: D_l = (r_l^2 - r_{l+1}^2) u_l u_l^T, so tr D_l = 0 is the condition
    conditions = [_on_circle(_imbalance(weights, l).trace(), pairs) for l in range(1, depth)]
    r = sp.Symbol("r", positive=True)
    solved = sp.solve(conditions + [scales[0] - r], scales, dict=True)[0]
    g = sp.Matrix(sp.symbols("g1:3", real=True))
    generic = _symbolic_weights(depth, _WIDTH)
    entries = _entries(generic)
    beta = _end_to_end(generic)
    velocity = [-sp.diff((g.T * beta)[0, 0], e) for e in entries]  # dW/dt = -G, entrywise
    jacobian = beta.jacobian(entries)
    point = {e: v for w, bw in zip(generic, weights) for e, v in zip(w, bw.subs(solved))}
    # xreplace: every weight symbol at once by its balanced value (subs would also try to
    # match each of them inside the others' values, which hold none of them)
    rate = (jacobian * sp.Matrix(velocity)).xreplace(point)
    perp = sp.Matrix([-units[0][1], units[0][0]])
    along = _on_circle((units[0].T * rate)[0, 0], pairs)
    across = _on_circle((perp.T * rate)[0, 0], pairs)
    ug, pg = sp.expand((units[0].T * g)[0, 0]), sp.expand((perp.T * g)[0, 0])
    c_along, rest_along = sp.div(along, ug, *sorted(along.free_symbols, key=str))
    c_across, rest_across = sp.div(across, pg, *sorted(across.free_symbols, key=str))
    if rest_along != 0 or rest_across != 0:
        raise ArithmeticError("dbeta/dt is not c_par (u_0.g) u_0 + c_perp (u_0^perp.g) u_0^perp")
    return sp.factor(c_along), sp.factor(c_across), solved, r, conditions


@register(
    "dln.balanced_flow",
    title="End-to-end gradient flow of a balanced single-output deep linear network",
    family=_FAMILY,
    params=[parameters.L],
    regime="gradient flow from balanced weights (D_l = 0, the small-initialisation limit), "
    "single output, any loss of beta; the invariant assumes g = dLoss/dbeta stays in a fixed "
    "subspace (the row space of X)",
    status=Status(Source.CITED, Exactness.EXACT, verified="at L = 2, 3, 4 with explicit balanced weights (general L by the layer recursion, not a symbolic-L proof)"),
    reference=_BALANCED_REFERENCE,
    notes="The expression is the exponent (L-1)/L of dlog|beta_N| / dlog|beta| for the part "
    "beta_N of beta in the null space of X. The vector-field coefficients are computed with explicit "
    "balanced 2x2 weights for L = 2, 3, 4; general L uses the layer-by-layer recursion (every "
    "layer term carries the same power of the layer scale), checked against the explicit depths. "
    "extras['vector_field'] is dbeta/dt in matrix symbols beta, g.",
    special_cases=[
        SpecialCase("one layer: the null-space part does not move", sp.Integer(0), subs={L: 1}),
        SpecialCase("two layers: |beta_N| grows like |beta|^(1/2)", sp.Rational(1, 2), subs={L: 2}),
        SpecialCase("infinite depth: |beta_N| grows like |beta|", sp.Integer(1), limit=(L, sp.oo, "-")),
    ],
)
def balanced_flow() -> Derivation:
    steps: list[Step] = []
    l = sp.Symbol("l", integer=True, positive=True)
    r = sp.Symbol("r", positive=True)
    norm = sp.Symbol("|beta|", positive=True)
    explicit = {}
    for depth in (2, 3, 4):
        c_along, c_across, solved, r_sym, conditions = _balanced_coefficients(depth)
        explicit[depth] = (c_along.subs(r_sym, r), c_across.subs(r_sym, r))
        if depth == 3:
            # the ansatz and the balancedness solve lead the derivation
            steps[:0] = [
                Step("L = 3, W_l = r_l u_{l-1} u_l^T, W_3 = r_3 u_2, |u_l| = 1: tr D_l = 0 "
                     "(balancedness)", sp.Tuple(*conditions)),
                Step("solved: all layer scales equal (r_1 = r)", sp.Dict(solved)),
            ]
        steps.append(Step(
            f"L = {depth}: dbeta/dt = c_par (u_0.g) u_0 + c_perp (u_0^perp.g) u_0^perp with "
            "(c_par, c_perp) =",
            sp.Tuple(*explicit[depth])))
    # general L: layer l's term is (W_1..W_{l-1}) Wdot_l (W_{l+1}..W_L),
    # Wdot_l = -(W_1..W_{l-1})^T g (W_{l+1}..W_L)^T; prefix has scale r^(l-1), suffix r^(L-l)
    exponent = sp.simplify((l - 1) + (l - 1) + (L - l) + (L - l))
    steps.append(Step(
        "layer l's term: prefix r^(l-1), Wdot_l r^((l-1)+(L-l)), suffix r^(L-l); total power of r",
        exponent))
    if exponent.has(l):
        raise ArithmeticError("layer terms carry different powers of the scale")
    # layer 1 gives g itself; layers 2..L each give (u_0.g) u_0 (unit-vector contractions)
    count = sp.summation(sp.Integer(1), (l, 2, L))
    coefficient_g = -(r**exponent)
    coefficient_projection = -count * r**exponent
    steps.append(Step("layer 1 contributes -r^(2L-2) g; layers 2..L each -r^(2L-2) P_beta g; count",
                      count))
    for depth, (c_along, c_across) in explicit.items():
        general = (coefficient_g + coefficient_projection, coefficient_g)
        if any(not is_zero(x_ - y_.subs(L, depth)) for x_, y_ in zip((c_along, c_across), general)):
            raise ArithmeticError(f"general-L recursion disagrees with the explicit depth {depth}")
    (scale,) = sp.solve(sp.Eq(r**L, norm), r)
    coefficient_g = sp.powsimp(coefficient_g.subs(r, scale), force=True)
    coefficient_projection = sp.powsimp(coefficient_projection.subs(r, scale), force=True)
    steps.append(Step("|beta| = r^L, so the layer scale is", sp.Eq(r, scale)))
    steps.append(Step(
        "dbeta/dt = A g + B P_beta g with (A, B) =", sp.Tuple(coefficient_g, coefficient_projection)))
    nd = sp.Symbol("d", integer=True, positive=True)
    beta_m, g_m = sp.MatrixSymbol("beta", nd, 1), sp.MatrixSymbol("g", nd, 1)
    field = coefficient_g * g_m + coefficient_projection / norm**2 * beta_m * beta_m.T * g_m
    steps.append(Step("the balanced vector field", field))

    # invariant: coordinates with the row space of X = span(e1, e2), null space = span(e3, e4)
    b = sp.Matrix(sp.symbols("b1:5", real=True))
    gv = sp.Matrix([*sp.symbols("g1:3", real=True), 0, 0])
    # |beta| stays the positive symbol `norm`; b4^2 = |beta|^2 - b1^2 - b2^2 - b3^2 closes it
    flow = coefficient_g * gv + coefficient_projection * b * (b.T * gv)[0, 0] / norm**2
    on_sphere = {b[3] ** 2: norm**2 - b[0] ** 2 - b[1] ** 2 - b[2] ** 2}
    null_sq = b[2] ** 2 + b[3] ** 2
    rate_null = sp.factor_terms(sp.cancel((b[2] * flow[2] + b[3] * flow[3]) / null_sq))  # dlog|beta_N|/dt
    # dlog|beta|/dt: a rational function once |beta|^2 closes the sum, over one denominator
    rate_norm = sp.together(sp.expand(sp.expand((b.T * flow)[0, 0]).subs(on_sphere) / norm**2))
    exponent_null = sp.simplify(rate_null / rate_norm)
    steps.append(Step("g in the row space of X (span e1, e2): dlog|beta_N|/dt", rate_null))
    steps.append(Step("dlog|beta|/dt", rate_norm))
    steps.append(Step("their ratio dlog|beta_N| / dlog|beta|", exponent_null))
    if exponent_null.free_symbols != {L}:
        raise ArithmeticError("the null-space exponent depends on more than the depth")
    extras = {
        "null_space_exponent": exponent_null,
        "vector_field": field,
        "layer_scale": scale,
        "coefficient_g": coefficient_g,
        "coefficient_projection": coefficient_projection,
    }
    return Derivation(exponent_null, steps=steps, extras=extras)


# -- dln.mode_dynamics --------------------------------------------------------------------------
@memo
def _mode_ode() -> tuple[sp.Expr, list[Step]]:
    """``tau du/dt`` for one mode, from the balanced vector field.

    Population loss ``(1/2)|beta - s e|^2`` in whitened coordinates: ``g = beta - s e``;
    on ``beta = u e`` (``u > 0``) the vector field is along ``e``.
    """
    field = registry.get("dln.balanced_flow").derivation
    a_g, a_p = field.extras["coefficient_g"], field.extras["coefficient_projection"]
    norm = sp.Symbol("|beta|", positive=True)
    e = sp.Matrix([1, 0])
    beta = u * e
    g = beta - s * e
    projection = beta * beta.T / (beta.T * beta)[0, 0]
    rate = (a_g * g + a_p * projection * g).subs(norm, u)
    rhs = sp.factor(sp.powsimp(sp.simplify((e.T * rate)[0, 0]), force=True))
    if not is_zero((sp.Matrix([0, 1]).T * rate)[0, 0]):
        raise ArithmeticError("the mode leaves its direction")
    steps = [
        Step("one mode: beta = u e, g = beta - s e (population loss with a 1/2)", g),
        Step("e . dbeta/dt from the balanced vector field; learning rate 1/tau gives tau du/dt", rhs),
    ]
    return rhs, steps


@register(
    "dln.mode_dynamics",
    title="Learning curve of one mode (Saxe et al.), depth 2",
    family=_FAMILY,
    params=[
        parameters.s,
        parameters.u0,
        parameters.t,
        parameters.tau,
    ],
    regime="balanced gradient flow, single output, population loss (1/2)|beta - s e|^2 "
    "restricted to the mode e; depth L = 2",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_SAXE_REFERENCE,
    notes="The mode ODE tau du/dt = L u^(2-2/L) (s - u) is derived by restricting the balanced "
    "vector field (dln.balanced_flow) to beta = u e; the expression is its L = 2 solution from "
    "sp.dsolve. The authors' loss has no 1/2, which halves tau. For u0 > s the same formula "
    "decays to s.",
    special_cases=[
        SpecialCase("t = 0 gives the initial strength", u0, subs={t: 0}),
        SpecialCase("t -> oo learns the mode", s, limit=(t, sp.oo, "+")),
        SpecialCase("starting at s it stays there", s, subs={u0: s}),
    ],
)
def mode_dynamics() -> Derivation:
    rhs, steps = _mode_ode()
    fn = sp.Function("u")
    ode = sp.Eq(tau * fn(t).diff(t), rhs.subs({L: 2, u: fn(t)}))
    # the logistic equation is of Bernoulli type: dsolve returns 1/u explicitly
    solution = sp.dsolve(ode, fn(t), hint="Bernoulli", ics={fn(0): u0}, simplify=False)
    (explicit,) = sp.solve(solution, fn(t))
    # write it in y = exp(-2 s t/tau), which neither overflows nor cancels at large times
    y = sp.Symbol("y", positive=True)
    decay = sp.exp(-2 * s * t / tau)
    inverse = sp.expand(1 / explicit).subs(decay, y)
    numerator, denominator = sp.fraction(sp.together(inverse))
    decaying = (denominator / sp.collect(sp.expand(numerator), y)).subs(y, decay)
    if not is_zero(tau * decaying.diff(t) - rhs.subs({L: 2, u: decaying})) or not is_zero(decaying.subs(t, 0) - u0):
        raise ArithmeticError("rewritten logistic does not solve the mode ODE")
    ode1 = sp.Eq(tau * fn(t).diff(t), rhs.subs({L: 1, u: fn(t)}))
    solution1 = sp.dsolve(ode1, fn(t), hint="1st_linear", ics={fn(0): u0})
    steps += [
        Step("L = 2", ode),
        Step("sp.dsolve (Bernoulli) with u(0) = u0", solution),
        Step("the same in exp(-2 s t/tau)", sp.Eq(fn(t), decaying)),
        Step("L = 1 for comparison (linear regression, exponential approach)", solution1),
    ]
    # for the evaluators: the denominator as s y + u0 (1 - y), with 1 - y = -expm1(-2st/tau),
    # so that u0 >> s or 2st/tau << 1 lose no digits to u0 - u0 y
    den_y = sp.expand(sp.simplify(s * u0 / decaying).subs(decay, y))
    if sp.expand(den_y - s * y - u0 * (1 - y)) != 0:
        raise ArithmeticError("the denominator is not s y + u0 (1 - y)")
    stable = s * u0 / (s * decay - u0 * expm1(-2 * s * t / tau))
    if not is_zero(stable.rewrite(sp.exp) - decaying):
        raise ArithmeticError("the expm1 form differs from the solution")
    steps.append(Step("for evaluation: denominator s e^(-2st/tau) - u0 expm1(-2st/tau) (no "
                      "cancellation of u0 - u0 e^(-2st/tau))", stable))
    extras = {"ode_rhs": rhs, "solution_L1": solution1.rhs}
    return Derivation(decaying, steps=steps, extras=extras, numeric=NumericForm(stable))


# -- dln.time_to_learn --------------------------------------------------------------------------
@memo
def _lerch_relation():
    """``lerchphi(zz, 1, aa)`` in terms of ``F = 2F1(1, aa; aa+1; zz)``, solved from SymPy's
    own ``hyperexpand(2F1(1, aa; aa+1; zz))`` (once: every antiderivative uses it)."""
    zz, aa, phi, big_f = sp.symbols("zz aa phi F")
    hyper = sp.hyper([1, aa], [aa + 1], zz)
    expanded = sp.hyperexpand(hyper).subs(sp.lerchphi(zz, 1, aa), phi)
    # solve F = expanded for phi with F a plain symbol (solve would expand hyper back)
    (phi_of_f,) = sp.solve(sp.Eq(big_f, expanded), phi)
    return zz, aa, big_f, hyper, phi_of_f


def _lerch_to_hyper(expr: sp.Expr) -> sp.Expr:
    """Replace ``lerchphi(z, 1, a)`` by ``2F1(1, a; a+1; z)/a``.

    The relation is solved from SymPy's own ``hyperexpand(2F1(1, a; a+1; z))``.
    """
    zz, aa, big_f, hyper, phi_of_f = _lerch_relation()
    return expr.replace(
        lambda e: isinstance(e, sp.lerchphi) and e.args[1] == 1,
        lambda e: phi_of_f.subs({big_f: hyper, zz: e.args[0], aa: e.args[2]}),
    )


def _antiderivative(integrand: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """``sp.integrate``, on the principal branch, with Lerch functions as ``2F1``.

    Not simplified afterwards: ``simplify`` would expand the hypergeometric back.
    """
    # heurisch=False: the heuristic Risch-Norman search finds no antiderivative of
    # u^(-p)/(s - u) and only costs time; SymPy then integrates through Meijer
    # G-functions (the Lerch transcendent below) or, at a fixed depth, by partial
    # fractions, the same results.  With the depth a symbol the power u^(-p) is not
    # elementary over Q(u), outside the Risch algorithm, and the Meijer G route is the
    # one that succeeds: meijerg=True goes there directly (the same antiderivative),
    # skipping the Risch, manual and rational attempts
    if integrand.has(L):
        # what integrate(meijerg=True) does, without its preliminaries: the factor free of
        # var pulled out, the rest integrated by meijerint_indefinite (the same result)
        coefficient, rest = integrand.as_independent(var, as_Add=False)
        out = meijerint_indefinite(rest, var)
        out = sp.integrate(integrand, var, meijerg=True) if out is None else coefficient * out
    else:
        out = sp.integrate(integrand, var, heurisch=False)
    # exp_polar(2 i pi) marks a winding around 0; the arguments used here lie in (0, 1),
    # inside the disc where lerchphi(., 1, a) is single-valued, so it is 1
    out = out.replace(sp.exp_polar, sp.exp)
    return _lerch_to_hyper(sp.simplify(out))


def _span(antiderivative: sp.Expr, side: str) -> sp.Expr:
    """``F(uf) - F(u0)`` for an antiderivative valid below (``side="below"``) or above ``s``.

    SymPy's logarithmic antiderivatives contain ``log(u - s)``; writing ``u = s -+ w``
    with ``w > 0`` and splitting the logarithms (``expand_log``) moves the sign into a
    constant ``i pi`` that cancels in the difference, leaving real logarithms.
    """
    w = sp.Symbol("w", positive=True)
    shift, back = (s - w, s - u) if side == "below" else (s + w, u - s)
    at_w = antiderivative.subs(u, shift)
    at_w = at_w.replace(
        lambda e: isinstance(e, sp.log),
        lambda e: sp.expand_log(sp.log(sp.factor(sp.together(e.args[0]))), force=True),
    )
    at_u = at_w.subs(w, back)
    difference = at_u.subs(u, uf) - at_u.subs(u, u0)
    if difference.has(sp.hyper):
        return sp.factor_terms(difference)
    return sp.factor_terms(sp.expand(difference))


@register(
    "dln.time_to_learn",
    title="Time for one mode to grow from u0 to uf (depth L)",
    family=_FAMILY,
    params=[
        parameters.s,
        parameters.u0,
        parameters.uf,
        parameters.tau,
        parameters.L,
    ],
    regime="balanced gradient flow of one mode, tau du/dt = L u^(2-2/L) (s - u) (dln.mode_dynamics)",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_SAXE_REFERENCE,
    notes="t = (tau/L) int_{u0}^{uf} du / (u^p (s - u)), p = 2 - 2/L. sp.integrate returns a Lerch "
    "transcendent, rewritten as the Gauss function 2F1(1, a; a+1; z) with SymPy's hyperexpand. "
    "Below s (u0 <= uf < s) z = u/s; above s (s < uf <= u0; the mode decays to s) the substitution "
    "u = s/x gives z = s/u. Logarithmic branches: L = 2 below s, L = 1 above s. Where the flow never "
    "reaches uf (uf beyond s, or on the far side of u0) the time is infinite. The float64 evaluator "
    "needs scipy.special.hyp2f1 for 'hyper'. Plateau: ~ tau u0^(-(L-2)/L)/((L-2) s) for L >= 3, "
    "~ (tau/(2 s)) log(1/u0) for L = 2.",
    special_cases=[
        SpecialCase("no time to stay put", sp.Integer(0), subs={uf: u0}),
    ],
    singular="uf = s or uf beyond s from u0 < s (and vice versa): the flow never gets there (oo)",
)
def time_to_learn() -> Derivation:
    rhs, steps = _mode_ode()
    integrand = sp.simplify(tau / rhs)
    steps.append(Step("dt/du = tau / (L u^p (s - u)), p = 2 - 2/L", integrand))
    # below s: u in (0, s)
    below = _antiderivative(integrand, u)
    steps.append(Step("antiderivative (sp.integrate, lerchphi -> hyper by hyperexpand), u < s", below))
    below_2 = _antiderivative(integrand.subs(L, 2), u)
    steps.append(Step("L = 2 separately (2F1 parameter a = 0)", below_2))
    # above s: u = s/x, x in (0, 1)
    x = sp.Symbol("x", positive=True)
    pulled = sp.simplify((integrand.subs(u, s / x) * sp.diff(s / x, x)))
    above_x = _antiderivative(pulled, x)
    above = above_x.subs(x, s / u)
    above_1 = _antiderivative(pulled.subs(L, 1), x).subs(x, s / u)
    steps.append(Step("u > s: u = s/x, integrand in x", pulled))
    steps.append(Step("antiderivative, back in u (z = s/u)", above))
    steps.append(Step("L = 1 separately above s (2F1 parameter p = 0)", above_1))

    time = sp.Piecewise(
        (sp.Integer(0), sp.Eq(u0, uf)),
        (_span(below_2, "below"), (uf < s) & (u0 < uf) & sp.Eq(L, 2)),
        (_span(below, "below"), (uf < s) & (u0 < uf)),
        (_span(above_1, "above"), (s < uf) & (uf < u0) & sp.Eq(L, 1)),
        (_span(above, "above"), (s < uf) & (uf < u0)),
        (sp.oo, True),
    )
    if time.has(sp.I, sp.lerchphi, sp.exp_polar):
        raise ArithmeticError(f"time to learn is not in real form: {time}")
    steps.append(Step("time from u0 to uf; infinite where the flow never reaches uf", time))
    return Derivation(time, steps=steps, extras={"antiderivative_below": below,
                                                 "antiderivative_above": above})
