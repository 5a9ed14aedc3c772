"""Data-centric distances between the source and target tasks.

Model (SPEC section 1): both tasks draw ``x ~ N(0, I_d)`` and label it with
``y | x ~ N(beta . x, sigma^2)``, ``beta = beta_s`` or ``beta_t``, unit teachers at angle
``theta``.  The paper's point (v1 Thm 2.2) is that distances between the two data
distributions do not predict transferability: the KL divergence grows without bound
inside a single feature space, where linear transfer is perfect.

Results registered (family ``distances``):

- ``metrics.kl`` -- ``KL(p_s || p_t)`` between the joint laws of ``(x, y)``: SymPy
  integrates the Gaussian log-likelihood ratio over ``y``, then averages the squared
  difference of the regression functions over ``x`` in the plane of the teachers;
- ``metrics.w2`` -- the Wasserstein-2 distance between the same joint laws, which are
  Gaussian: the Bures formula (a cited lemma) reduced to the 3 x 3 block of the plane of
  the teachers and the label; a reflection that swaps the teachers reduces the trace of the
  matrix square root to the negative eigenvalue of a 3 x 3 matrix; it is computed from the
  largest eigenvalue (a simple root of a cubic, solved numerically in a derived bracket)
  and Vieta's relations;
- ``metrics.bl_lower`` -- a computable lower bound on Dudley's bounded-Lipschitz distance
  between the same joint laws (which is itself at most 2): the gap in expectation of one
  admissible test function ``cos(omega e . z) / (1 + omega)``, integrated by SymPy
  against the Gaussian law of ``e . z``; maximised over ``(omega, phi)`` numerically by
  :func:`featfate_sym.studies.distances_vs_transfer.bl_lower_bound`.
"""

from __future__ import annotations

import functools

import sympy as sp

from featfate_sym import parameters
from featfate_sym.registry import Derivation, ImplicitRoot, SpecialCase, Exactness, Source, Status, Step, register
from featfate_sym.symbols import omega, phi, sigma, theta
from featfate_sym.theory.zero import is_zero

_FAMILY = "distances"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194"
_BURES_REFERENCE = (
    "Dowson & Landau (1982); Olkin & Pukelsheim (1982); Givens & Shortt (1984): "
    "W2^2(N(m1, S1), N(m2, S2)) = |m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S1^(1/2) S2 S1^(1/2))^(1/2)"
)

_THETA, _SIGMA = parameters.theta, parameters.sigma
_SIGMA_POSITIVE = parameters.sigma.restricted(lower_open=True)

#: the largest eigenvalue of ``D S_s`` minus ``tr(D S_s) = 1 + sigma^2`` (see ``metrics.w2``),
#: an implicit root; the offset form keeps its digits when sigma is large
_NU = sp.Symbol("nu_w", real=True)


@functools.lru_cache(maxsize=16)
def _standard_normal_moment(k: int) -> sp.Expr:
    """``E u^k`` for ``u ~ N(0, 1)``, integrated by SymPy against the density."""
    u = sp.Symbol("u", real=True)
    return sp.integrate(u**k * sp.exp(-(u**2) / 2), (u, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)


def _gaussian_mean(polynomial: sp.Expr, laws: dict) -> sp.Expr:
    """``E polynomial`` over independent Gaussians ``laws = {variable: (mean, sd)}``, expanded.

    Each variable is written ``mean + sd u`` with ``u ~ N(0, 1)``; the expectation of the
    polynomial in the ``u`` is the sum of its coefficients times products of the standard
    moments (:func:`_standard_normal_moment`).  The same value, and after ``expand`` the
    same form, as ``sp.integrate`` against the Gaussian density over the real line, which
    goes through Meijer G-functions and takes a second where this takes milliseconds.
    """
    standard = [sp.Dummy(f"u_{v}") for v in laws]
    shifted = {v: mean + sd * u for (v, (mean, sd)), u in zip(laws.items(), standard)}
    poly = sp.Poly(sp.expand(polynomial.xreplace(shifted)), *standard)
    moments = {}
    terms = []
    for powers, coeff in poly.terms():
        for k in powers:
            if k not in moments:
                moments[k] = _standard_normal_moment(k)
        terms.append(coeff * sp.Mul(*[moments[k] for k in powers]))
    return sp.expand(sp.Add(*terms))


def _teachers() -> tuple[sp.Matrix, sp.Matrix]:
    """Unit teachers in coordinates of their plane: beta_s = (1, 0), beta_t = (cos, sin)."""
    return sp.Matrix([1, 0]), sp.Matrix([sp.cos(theta), sp.sin(theta)])


@register(
    "metrics.kl",
    title="KL divergence between the source and target data distributions",
    family=_FAMILY,
    params=[_THETA, _SIGMA_POSITIVE],
    regime="exact for the linear-Gaussian tasks, any d: x ~ N(0, I_d), y | x ~ N(beta . x, sigma^2)",
    status=Status(Source.PAPER, Exactness.EXACT),
    reference=_PAPER + ", v1 Thm 2.2 (data-centric distances do not predict transfer)",
    notes=(
        "KL(p_s || p_t) of the joint laws of (x, y); the x-marginals agree, so it is the "
        "average over x of the KL between the conditional Gaussians (chain rule). SymPy "
        "integrates the log-likelihood ratio against N(f, sigma^2) over y, giving "
        "(f - g)^2/(2 sigma^2), then integrates ((beta_s - beta_t) . x)^2 against the "
        "Gaussian density in the plane of the teachers: |beta_s - beta_t|^2 = 2 - 2 cos theta. "
        "Symmetric in the two tasks. Diverges as sigma -> 0 for distinct tasks."
    ),
    special_cases=[
        SpecialCase("same task: 0", sp.Integer(0), {theta: 0}),
        SpecialCase("orthogonal tasks, sigma = 1: |beta_s - beta_t|^2 / 2 = 1", sp.Integer(1),
                    {theta: sp.pi / 2, sigma: 1}),
        SpecialCase("opposite teachers: 2/sigma^2", 2 / sigma**2, {theta: sp.pi}),
        SpecialCase("sigma -> oo: the tasks become indistinguishable", sp.Integer(0),
                    {theta: sp.pi / 3}, (sigma, sp.oo, "-")),
    ],
    singular="sigma = 0 with theta > 0: infinite (the laws are mutually singular); outside the domain",
)
def kl() -> Derivation:
    y = sp.Symbol("y", real=True)
    f, g, delta = sp.symbols("f g delta", real=True)
    noise = sp.Symbol("sigma_y", positive=True)

    def log_density(mean):
        return -((y - mean) ** 2) / (2 * noise**2) - sp.log(2 * sp.pi * noise**2) / 2

    ratio = sp.expand(log_density(f) - log_density(g))
    # the log-ratio is a polynomial in y: its mean under N(f, sigma^2) from the Gaussian
    # moments (the same expanded form as integrating against the density)
    conditional = _gaussian_mean(ratio, {y: (f, noise)})
    # written in the difference of the regression functions, g = f - delta
    conditional_delta = sp.factor(conditional.subs(g, f - delta))
    beta_s, beta_t = _teachers()
    x1, x2 = sp.symbols("x_1 x_2", real=True)
    difference = ((beta_s - beta_t).T * sp.Matrix([x1, x2]))[0]
    # x_1, x_2 ~ N(0, 1) independent: the average of a polynomial, from the moments
    averaged = _gaussian_mean(sp.expand(conditional_delta.subs(delta, difference)), {x1: (0, 1), x2: (0, 1)})
    expr = sp.trigsimp(averaged.subs(noise, sigma))
    steps = [
        Step("log-likelihood ratio log p(y|x) - log q(y|x) for y|x ~ N(f, sigma^2) vs N(g, sigma^2)", ratio),
        Step("integrated over y ~ N(f, sigma^2) (sp.integrate)", conditional),
        Step("in the difference delta = f - g of the regression functions", conditional_delta),
        Step("f - g = (beta_s - beta_t) . x; only the plane of the teachers matters "
             "(coordinates x_1, x_2 ~ N(0, 1))", difference),
        Step("average over x (sp.integrate against the Gaussian density), simplified", expr),
    ]
    extras = {
        "conditional_kl": conditional_delta,
        "teacher_distance_squared": sp.simplify(((beta_s - beta_t).T * (beta_s - beta_t))[0]),
    }
    return Derivation(expr, steps=steps, extras=extras)


@register(
    "metrics.w2",
    title="Squared Wasserstein-2 distance W2^2 between the source and target data distributions",
    family=_FAMILY,
    params=[_THETA, _SIGMA],
    regime="exact for the linear-Gaussian tasks, any d: the joint laws of (x, y) are centred Gaussians",
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_PAPER + ", v2 appendix (distances vs transfer); " + _BURES_REFERENCE,
    notes=(
        "The expression is W2^2 (not W2). Bures formula for centred Gaussians (cited lemma) "
        "with covariances S = [[I, beta], [beta^T, 1 + sigma^2]]; directions of x orthogonal "
        "to both teachers give identical identity blocks that cancel, so the 3 x 3 block "
        "(plane of the teachers, label) carries the distance. In the basis "
        "u ~ beta_s + beta_t, v ~ beta_s - beta_t the reflection D = diag(1, -1, 1) swaps the "
        "teachers: S_t = D S_s D, so S_s^(1/2) S_t S_s^(1/2) = X^2 with the symmetric "
        "X = S_s^(1/2) D S_s^(1/2), and tr (S_s^(1/2) S_t S_s^(1/2))^(1/2) = sum |eig X|. "
        "X is similar to D S_s and congruent to D (Sylvester's law of inertia: two positive "
        "eigenvalues, one negative lambda_-), so the sum is tr(D S_s) - 2 lambda_- and "
        "W2^2 = 4 (1 + lambda_-). The largest eigenvalue lambda_+ = 1 + sigma^2 + nu_w is a "
        "simple root of the cubic det(ell I - D S_s) in [l**, 3 + sigma^2] (l** its local "
        "minimum, where it is increasing); the offset nu_w is evaluated by bracketed Newton "
        "iteration (implicit root nu_w). Vieta's relations give the other two as the roots of "
        "ell^2 + nu_w ell - sigma^2/lambda_+, whose discriminant is a sum of squares: "
        "lambda_- is accurate to rounding even where it nearly meets the middle eigenvalue "
        "(theta near pi, small sigma). Absolute accuracy about 1e-15 in float64 (W2^2 <= 4)."
    ),
    singular="none: finite for every theta and sigma >= 0 (bounded by 4)",
)
def w2() -> Derivation:
    half_c, half_s = sp.cos(theta / 2), sp.sin(theta / 2)
    # teachers in the basis (u, v) of their bisector and difference directions
    beta_s_uv = sp.Matrix([half_c, half_s])
    beta_t_uv = sp.Matrix([half_c, -half_s])

    def covariance(beta):
        return sp.Matrix(sp.BlockMatrix([[sp.eye(2), beta], [beta.T, sp.Matrix([[1 + sigma**2]])]]))

    cov_s, cov_t = covariance(beta_s_uv), covariance(beta_t_uv)
    reflection = sp.diag(1, -1, 1)
    if sp.simplify(reflection * cov_s * reflection - cov_t) != sp.zeros(3, 3):  # pragma: no cover
        raise RuntimeError("the reflection does not swap the tasks")
    # the (u, v) coordinates are a rotation of beta_s = (1, 0), beta_t = (cos, sin)
    beta_s, beta_t = _teachers()
    if not is_zero((beta_s_uv.T * beta_t_uv)[0] - (beta_s.T * beta_t)[0]):  # pragma: no cover
        raise RuntimeError("teacher coordinates disagree")
    ell = sp.Symbol("ell", real=True)
    cubic = sp.expand(sp.trigsimp(-(reflection * cov_s - ell * sp.eye(3)).det()))
    cubic = sp.expand(cubic.subs(sp.cos(theta / 2) ** 2, (1 + sp.cos(theta)) / 2))
    poly = sp.Poly(cubic, ell)
    one, c2, c1, c0 = poly.all_coeffs()
    root_sum, root_product = -c2 / one, -c0 / one  # Vieta
    trace_d = (reflection * cov_s).trace()
    if not is_zero(root_sum - trace_d):  # pragma: no cover
        raise RuntimeError("trace and Vieta disagree")
    # bracket of the largest root: right of the local minimum l**, where the cubic increases
    critical = sp.solve(sp.diff(cubic, ell), ell, simplify=False)  # simplifying the roots leaves them as they are
    probe = {theta: sp.Rational(1, 2), sigma: sp.Rational(1, 2)}
    l_min = max(critical, key=lambda r: float(r.subs(probe)))
    upper = 3 + sigma**2
    upper_value = sp.factor(cubic.subs(ell, upper))
    # the largest eigenvalue written as its offset from the trace
    largest = trace_d + _NU
    # the other two eigenvalues: sum root_sum - largest = -nu_w, product root_product / largest
    rest_sum = root_sum - largest
    rest_product = root_product / largest
    y = sp.Symbol("y_ev", real=True)
    quadratic = y**2 - rest_sum * y + rest_product
    pair = sp.solve(quadratic, y)
    probe_pair = {sigma: sp.Rational(1, 2), _NU: sp.Rational(3, 4)}
    solved_neg = min(pair, key=lambda r: float(r.subs(probe_pair)))
    # the same root with its discriminant kept as nu_w^2 + 4 sigma^2/lambda_+ (a sum of
    # squares, since det = -sigma^2): sp.solve expands it into a polynomial that cancels
    discriminant = rest_sum**2 - 4 * rest_product
    lambda_neg = (rest_sum - sp.sqrt(discriminant)) / 2
    if not is_zero(sp.expand(quadratic.subs(y, lambda_neg))) or abs(
        sp.N((lambda_neg - solved_neg).subs({**probe_pair, theta: 1}), 30)
    ) > 1e-25:  # pragma: no cover
        raise RuntimeError("negative eigenvalue does not match sp.solve")
    fidelity = trace_d - 2 * lambda_neg
    trace_sum = sp.simplify(cov_s.trace() + cov_t.trace())
    expr = trace_sum - 2 * fidelity
    steps = [
        Step("covariance of (x, y) in the basis (u, v, y), u ~ beta_s + beta_t, v ~ beta_s - beta_t; "
             "source task", cov_s),
        Step("target task = D S_s D with the reflection D = diag(1, -1, 1) (checked)", cov_t),
        Step("Bures fidelity: S_s^(1/2) S_t S_s^(1/2) = X^2, X = S_s^(1/2) D S_s^(1/2) symmetric, so "
             "tr (.)^(1/2) = sum |eig X|; X ~ D S_s (similar) and X congruent to D (two positive "
             "eigenvalues, one negative lambda_-): fidelity = tr(D S_s) - 2 lambda_-", trace_d),
        Step("the eigenvalues are the roots of det(ell I - D S_s)", cubic),
        Step("critical points of the cubic (sp.solve); the largest root lies right of the larger one, "
             "where the cubic increases", sp.Tuple(*critical)),
        Step("value at ell = 3 + sigma^2 (positive): upper end of the bracket", upper_value),
        Step("largest root lambda_+ = tr(D S_s) + nu_w; Vieta: the other two roots solve "
             "y^2 - (tr - lambda_+) y + det/lambda_+ = 0; "
             "the negative one (sp.solve)", solved_neg),
        Step("the same root with the discriminant written as a sum of squares (det = -sigma^2; "
             "checked: it solves the quadratic and equals the sp.solve root)", lambda_neg),
        Step("Bures formula (cited lemma: " + _BURES_REFERENCE + "), means zero: W2^2 = "
             "tr S_s + tr S_t - 2 fidelity", expr),
    ]
    # the cubic at the largest root as largest^2 (largest + c2) + c1 largest + c0: with
    # largest + c2 = nu_w it evaluates without the O(sigma^6) cancellation of the expanded form
    equation = largest**2 * (largest + c2 / one) + (c1 / one) * largest + c0 / one
    if sp.expand(equation - cubic.subs(ell, largest) / one) != 0:  # pragma: no cover
        raise RuntimeError("nested form of the cubic disagrees")
    implicit = [
        ImplicitRoot(
            _NU,
            equation,
            (l_min - trace_d, upper - trace_d),
            "largest eigenvalue of D S_s minus its trace 1 + sigma^2 (a simple root of the cubic)",
        )
    ]
    extras = {
        "covariance_source": cov_s,
        "covariance_target": cov_t,
        "cubic": cubic,
        "negative_eigenvalue": lambda_neg,
        "bracket": sp.Tuple(l_min, upper),
    }
    return Derivation(expr, steps=steps, extras=extras, implicit=implicit)


_DUDLEY_REFERENCE = (
    "Dudley, Real Analysis and Probability (2002), sec. 11.3: "
    "beta(P, Q) = sup {|E_P f - E_Q f| : |f|_inf + Lip(f) <= 1}"
)


def _joint_covariance_uv(sign) -> sp.Matrix:
    """Covariance of (u, v, y): u ~ beta_s + beta_t, v ~ beta_s - beta_t, the label y;
    ``sign = +1`` for the source teacher (cos, sin)(theta/2), ``-1`` for the target."""
    beta = sp.Matrix([sp.cos(theta / 2), sign * sp.sin(theta / 2)])
    return sp.Matrix(sp.BlockMatrix([[sp.eye(2), beta], [beta.T, sp.Matrix([[1 + sigma**2]])]]))


@register(
    "metrics.bl_lower",
    title="Lower bound on the bounded-Lipschitz (Dudley) distance between the source and target data "
    "distributions, from one test function",
    family=_FAMILY,
    params=[
        _THETA,
        _SIGMA,
        parameters.omega,
        parameters.phi,
    ],
    regime="exact for the linear-Gaussian tasks, any d (unit teachers at angle theta); a lower bound "
    "on beta(p_s, p_t) for every omega, phi; the bound itself is maximised numerically",
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER + ", v2 appendix (distances vs transfer); " + _DUDLEY_REFERENCE,
    notes=(
        "Dudley's bounded-Lipschitz distance beta(P, Q) = sup |E_P f - E_Q f| over f with "
        "|f|_inf + Lip(f) <= 1 is at most 2 (|E_P f - E_Q f| <= 2 |f|_inf <= 2) and at most "
        "W1 <= W2 (Lip(f) <= 1), so unlike KL it cannot grow with the task distance. The "
        "test function f(z) = cos(omega e.z)/(1 + omega), e a unit vector, has |f|_inf = "
        "1/(1 + omega) and Lip(f) = omega/(1 + omega): admissible. With e = (0, cos phi, "
        "sin phi) in the coordinates (u, v, y) of metrics.w2, e.z is N(0, q) with q = e^T S e "
        "under each task; SymPy integrates cos(omega x) against that density (the Gaussian "
        "characteristic function exp(-q omega^2/2)). q_s - q_t = 4 sin(theta/2) sin(phi) cos(phi) "
        ">= 0 on the domain, so the expression is the gap itself, not its absolute value. "
        "The sup over (omega, phi) has no closed form; "
        "featfate_sym.studies.distances_vs_transfer.bl_lower_bound maximises it numerically."
    ),
    special_cases=[
        SpecialCase("same task: 0", sp.Integer(0), {theta: 0}),
        SpecialCase("direction along v (phi = 0 gives e = (0, 1, 0), law N(0, 1) under both): 0",
                    sp.Integer(0), {phi: 0}),
        SpecialCase("omega -> 0: the test function tends to a constant, 0", sp.Integer(0),
                    {theta: sp.pi / 2, sigma: 1, phi: sp.pi / 4}, (omega, 0, "+")),
        SpecialCase("omega -> oo: its amplitude 1/(1 + omega) vanishes, 0", sp.Integer(0),
                    {theta: sp.pi / 2, sigma: 1, phi: sp.pi / 4}, (omega, sp.oo, "-")),
    ],
    singular="none: finite everywhere on the domain, between 0 and 1/(1 + omega)",
)
def bl_lower() -> Derivation:
    x, f_z = sp.symbols("x f_z", real=True)
    variance = sp.Symbol("q", positive=True)
    z = sp.Matrix(sp.symbols("z_u z_v z_y", real=True))
    direction = sp.Matrix([0, sp.cos(phi), sp.sin(phi)])
    test = sp.cos(omega * (direction.T * z)[0]) / (1 + omega)
    gradient = sp.Matrix([sp.diff(test, zi) for zi in z])
    # |grad f| = omega |sin(.)| |e| / (1 + omega); |e| = 1 and sup |sin| = 1
    lipschitz = sp.trigsimp(sp.factor(sp.sqrt(sp.trigsimp(sp.factor((gradient.T * gradient)[0]))).subs(
        sp.sin(omega * (direction.T * z)[0]), 1)))
    sup_norm = test.subs({zi: 0 for zi in z})
    bl_norm = sp.simplify(lipschitz + sup_norm)
    if bl_norm != 1:  # pragma: no cover
        raise RuntimeError("the test function is not admissible")
    density = sp.exp(-(x**2) / (2 * variance)) / sp.sqrt(2 * sp.pi * variance)
    characteristic = sp.simplify(sp.integrate(sp.cos(omega * x) * density, (x, -sp.oo, sp.oo)))
    def quadratic_form(sign):  # e^T S e, with cos^2 phi + sin^2 phi = 1
        q = sp.expand((direction.T * _joint_covariance_uv(sign) * direction)[0])
        return sp.expand(q.subs(sp.cos(phi) ** 2, 1 - sp.sin(phi) ** 2))

    q_s, q_t = quadratic_form(1), quadratic_form(-1)
    gap = sp.factor(q_s - q_t)
    difference = (characteristic.subs(variance, q_t) - characteristic.subs(variance, q_s)) / (1 + omega)
    # the same as the common factor times (1 - characteristic of the gap): for nearby
    # tasks the two exponentials agree to many digits, and 1 - exp(-x) compiles to -expm1
    expr = characteristic.subs(variance, q_t) * (1 - characteristic.subs(variance, gap)) / (1 + omega)
    if not is_zero(sp.expand(expr - difference)):  # pragma: no cover
        raise RuntimeError("factored form disagrees")
    steps = [
        Step("test function f(z) = cos(omega e.z)/(1 + omega), e = (0, cos phi, sin phi) in the "
             "coordinates (u, v, y) of metrics.w2", test),
        Step("Lipschitz constant: sup |grad f| (sup |sin| = 1, |e| = 1)", lipschitz),
        Step("sup |f| at z = 0; |f|_inf + Lip(f) = 1, so f is admissible for Dudley's metric, and "
             "|E_P f - E_Q f| <= 2 |f|_inf <= 2 for every admissible f", sup_norm),
        Step("e.z ~ N(0, q): E cos(omega e.z) by sp.integrate against the Gaussian density",
             characteristic),
        Step("q = e^T S e under the source task", q_s),
        Step("q under the target task", q_t),
        Step("q_s - q_t (nonnegative for theta in [0, pi], phi in [0, pi/2])", gap),
        Step("the gap in expectation of f: a lower bound on beta(p_s, p_t) for every (omega, phi)",
             difference),
        Step("factored by the exponential law (checked), so that nearby tasks lose no digits", expr),
    ]
    extras = {"test_function": test, "characteristic_function": characteristic, "variance_gap": gap,
              "upper_bound": sp.Integer(2)}
    return Derivation(expr, steps=steps, extras=extras)
