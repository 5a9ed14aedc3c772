"""Gaussian expectations of ReLU features: the arc-cosine kernel for general norms.

Model (SPEC section 3): inputs ``x ~ N(0, I_d)``, hidden features ``relu(w.x)``.  Every
inner product in ``L2(N(0, I_d))`` between such features (and between a feature and a
linear function) depends on the two weight vectors only through their norms ``r1, r2``
and the cosine ``rho`` of their angle, because ``(w.x, w'.x)`` is the projection of
``x`` onto the plane of ``w, w'``, a standard Gaussian in two dimensions.  These are the
ingredients of the exact, sampling-free feature-overlap measure ``|P_perp f_t|^2``
(:mod:`featfate_sym.studies.relu_overlap`) and of the population loss used to pretrain the
two-layer student (:mod:`featfate_sym.simulation.relu`).

Results registered (family ``relu``, all exact for the stated model):

- ``relu.arccos_kernel`` -- ``E[relu(w.x) relu(w'.x)]`` as a function of ``r1 = |w|``,
  ``r2 = |w'|``, ``rho = cos angle(w, w')``.  Derived by writing the plane's Gaussian in
  polar coordinates ``(R, t)`` with ``w`` along ``t = 0`` and ``w'`` at ``t = phi``
  (``phi = arccos rho`` in ``[0, pi]``), finding the wedge where both features are
  positive as the intersection of the two half-planes' angle intervals, integrating the
  radial part ``int_0^oo R^3 exp(-R^2/2) dR`` and the angular part over the wedge with
  ``sp.integrate``, and substituting ``phi = acos(rho)``.  ``extras``: ``angular``
  (the kernel divided by ``r1 r2``, a function of ``rho`` alone), ``d_angular_drho`` (its
  derivative, from ``sp.diff``: finite on all of ``[-1, 1]`` although the two terms of the
  kernel each have an infinite derivative at ``rho = +-1``), ``wedge_lower``,
  ``wedge_upper``, ``radial_integral``.  Reference: Cho & Saul (2009), arc-cosine kernel
  of degree 1, here with general norms.
- ``relu.linear_cross`` -- ``E[relu(w.x) (v.x)]`` with ``r1 = |w|``, ``r2 = |v|``,
  ``rho = cos angle(w, v)``: the same polar integral with the linear factor integrated
  over the half-plane ``w.x > 0``.
- ``relu.second_moment`` -- ``E[relu(w.x)^2]`` from the one-dimensional Gaussian
  integral over ``w.x > 0``; the kernel's special case ``rho = 1, r2 = r1`` must agree.
- ``relu.mean`` -- ``E[relu(w.x)]`` from the one-dimensional integral; features are not
  centred, so the constant function is part of their span's geometry.
"""

from __future__ import annotations

import sympy as sp

from featfate_sym import parameters
from featfate_sym.registry import Derivation, NumericForm, SpecialCase, Exactness, Source, Status, Step, register
from featfate_sym.symbols import r1, r2, rho
from featfate_sym.theory.zero import is_zero

_FAMILY = "relu"
_PAPER = "Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Sec. 4"
_CHO_SAUL = "Cho & Saul (2009), 'Kernel methods for deep learning' (arc-cosine kernel, degree 1); "
_REGIME = (
    "x ~ N(0, I_d), any d >= 2 (d = 1 allows only rho = +-1); nonzero weight vectors; "
    "expectation over x, no sampling"
)

# scratch symbols of the polar integral (local: they never leave a builder)
_R = sp.Symbol("R", nonnegative=True)  # radius in the plane of the two weight vectors
_t = sp.Symbol("t", real=True)  # polar angle, w along t = 0
_phi = sp.Symbol("phi", nonnegative=True)  # angle between w and w', in [0, pi]
_z = sp.Symbol("z", real=True)  # the scalar w.x / |w|


def _plane_density() -> sp.Expr:
    """Standard Gaussian density on the plane, times the polar Jacobian ``R``."""
    return sp.exp(-(_R**2) / 2) / (2 * sp.pi) * _R


def _positive_interval(center: sp.Expr) -> sp.Interval:
    """Angles ``t`` with ``cos(t - center) >= 0``: a half-plane is a half-turn of angles."""
    return sp.Interval(center - sp.pi / 2, center + sp.pi / 2)


def _polar(integrand_angular: sp.Expr, radial_power: int, lower, upper) -> tuple[sp.Expr, sp.Expr]:
    """``int_0^oo R^p g(R) dR * int_lower^upper integrand dt``, ``g`` the polar density (with its ``R``)."""
    radial = sp.integrate(_R**radial_power * _plane_density(), (_R, 0, sp.oo))
    angular = sp.integrate(integrand_angular, (_t, lower, upper))
    return radial, angular


@register(
    "relu.second_moment",
    title="Second moment of a ReLU feature, E[relu(w.x)^2]",
    family=_FAMILY,
    params=[parameters.r1],
    regime=_REGIME,
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
)
def _second_moment() -> Derivation:
    gauss = sp.exp(-(_z**2) / 2) / sp.sqrt(2 * sp.pi)
    # w.x = r1 z with z ~ N(0, 1); relu(w.x)^2 = r1^2 z^2 on z > 0 and 0 elsewhere
    integral = sp.integrate(r1**2 * _z**2 * gauss, (_z, 0, sp.oo))
    expr = sp.simplify(integral)
    return Derivation(
        expr,
        steps=[
            Step("w.x = r1 z with z ~ N(0, 1); relu(w.x)^2 = r1^2 z^2 on z > 0", r1**2 * _z**2 * gauss),
            Step("integrate over z > 0", expr),
        ],
    )


@register(
    "relu.mean",
    title="Mean of a ReLU feature, E[relu(w.x)]",
    family=_FAMILY,
    params=[parameters.r1],
    regime=_REGIME,
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
)
def _mean() -> Derivation:
    gauss = sp.exp(-(_z**2) / 2) / sp.sqrt(2 * sp.pi)
    expr = sp.simplify(sp.integrate(r1 * _z * gauss, (_z, 0, sp.oo)))
    return Derivation(
        expr,
        steps=[
            Step("w.x = r1 z with z ~ N(0, 1); relu(w.x) = r1 z on z > 0", r1 * _z * gauss),
            Step("integrate over z > 0", expr),
        ],
    )


_KERNEL_PARAMS = [
    parameters.r1,
    parameters.r2,
    parameters.rho,
]


@register(
    "relu.arccos_kernel",
    title="Arc-cosine kernel for general norms, E[relu(w.x) relu(w'.x)]",
    family=_FAMILY,
    params=_KERNEL_PARAMS,
    regime=_REGIME,
    status=Status(Source.CITED, Exactness.EXACT),
    reference=_CHO_SAUL + _PAPER,
    special_cases=[
        SpecialCase("same vector: the second moment", "relu.second_moment", subs={rho: 1, r2: r1}),
        SpecialCase("opposite vectors never both fire", sp.Integer(0), subs={rho: -1}),
        SpecialCase(
            "orthogonal vectors: independent features, product of the means",
            r1 * r2 / (2 * sp.pi),
            subs={rho: 0},
        ),
    ],
    notes=(
        "Valid on the closed interval rho in [-1, 1]; the derivative in rho is finite there "
        "(extras['d_angular_drho']), which the Torch pretraining uses for exact gradients."
    ),
)
def _arccos_kernel() -> Derivation:
    # The pair (w.x, w'.x) is the projection of x onto span(w, w'), a standard Gaussian
    # in the plane.  Polar coordinates (R, t) with w along t = 0 and w' along t = phi:
    # w.x = r1 R cos t, w'.x = r2 R cos(t - phi).
    integrand = r1 * _R * sp.cos(_t) * r2 * _R * sp.cos(_t - _phi)
    # Both features fire where both half-planes hold: intersect their angle intervals.
    # phi >= 0 decides the Max/Min ends; phi <= pi keeps the wedge non-empty, and the
    # part of w''s half-turn past t = pi (at most up to 3 pi / 2, i.e. -pi/2 after
    # wrapping) meets w's half-turn only at its end point, so no wrap-around is lost.
    wedge = sp.Intersection(_positive_interval(0), _positive_interval(_phi))
    lower = sp.Max(-sp.pi / 2, _phi - sp.pi / 2)
    upper = sp.Min(sp.pi / 2, _phi + sp.pi / 2)
    radial, angular = _polar(sp.cos(_t) * sp.cos(_t - _phi), 2, lower, upper)
    in_phi = sp.factor_terms(sp.cancel(r1 * r2 * radial * angular))  # simplify's form, without its search
    expr = sp.simplify(in_phi.subs(_phi, sp.acos(rho)))
    per_norms = sp.simplify(expr / (r1 * r2))
    slope = sp.simplify(sp.diff(per_norms, rho))
    numeric, numeric_steps = _kernel_numeric_form(in_phi)
    return Derivation(
        expr,
        numeric=numeric,
        steps=[
            Step(
                "(w.x, w'.x) depends on x only through its projection on span(w, w'), a "
                "standard 2-D Gaussian; polar coordinates with w at t = 0, w' at t = phi = acos(rho)",
                integrand * _plane_density(),
            ),
            Step("both features positive on the intersection of two half-turns of angles", wedge),
            Step("the wedge for 0 <= phi <= pi: from lower to upper", sp.Tuple(lower, upper)),
            Step("radial integral int_0^oo R^2 exp(-R^2/2) R dR / (2 pi)", radial),
            Step("angular integral of cos(t) cos(t - phi) over the wedge", angular),
            Step("kernel in terms of phi", in_phi),
            Step("substitute phi = acos(rho)", expr),
            *numeric_steps,
        ],
        extras={
            "angular": per_norms,
            "d_angular_drho": slope,
            "wedge_lower": lower,
            "wedge_upper": upper,
            "radial_integral": radial,
        },
    )


#: below this rho the evaluators use the series in psi = pi - phi (psi < acos(0.9) = 0.45)
_SERIES_BELOW = sp.Rational(-9, 10)
#: terms of the series: the first neglected one is below 1e-17 relative at psi = 0.45
_SERIES_ORDER = 24


def _kernel_numeric_form(in_phi):
    """The kernel for the evaluators, without the cancellation next to ``rho = -1``.

    In ``psi = pi - phi = acos(-rho)`` the angular factor is ``sin psi - psi cos psi``,
    of size ``psi^3/3`` while each term is of size ``psi``: near ``rho = -1`` the closed
    form loses ``~2 log10(1/psi)`` digits (6e-8 relative at ``rho = -1 + 1.3e-5``).  There
    the evaluators take its Taylor series (``sp.series``, each term exact), elsewhere the
    closed form in ``acos(-rho)`` and ``sqrt((1 - rho)(1 + rho))``, which keep their digits.
    """
    psi = sp.Symbol("psi", positive=True)
    in_psi = sp.factor_terms(sp.cancel(in_phi.subs(_phi, sp.pi - psi)))  # simplify's form, without its search
    series = sp.series(in_psi, psi, 0, _SERIES_ORDER).removeO()
    # the closed form in psi with sin psi = sqrt((1 - rho)(1 + rho)), cos psi = -rho
    closed = in_psi.subs({sp.sin(psi): sp.sqrt((1 - rho) * (1 + rho)), sp.cos(psi): -rho})
    if closed.has(sp.sin, sp.cos) or not is_zero((closed.subs(psi, sp.acos(-rho)) - in_phi.subs(_phi, sp.acos(rho))).rewrite(sp.asin)):
        raise ArithmeticError("the kernel in psi does not reduce to rho")
    form = sp.Piecewise((series.subs(psi, sp.acos(-rho)), rho < _SERIES_BELOW),
                        (closed.subs(psi, sp.acos(-rho)), True))
    steps = [
        Step("for evaluation, in psi = pi - phi = acos(-rho): the kernel", in_psi),
        Step(f"its Taylor series to O(psi^{_SERIES_ORDER}), used for rho < {_SERIES_BELOW} (the closed "
             "form cancels there)", series),
    ]
    return NumericForm(form, description="series next to rho = -1"), steps


@register(
    "relu.linear_cross",
    title="Cross moment of a ReLU feature and a linear function, E[relu(w.x) (v.x)]",
    family=_FAMILY,
    params=[
        parameters.r1,
        parameters.r2,
        parameters.rho,
    ],
    regime=_REGIME,
    status=Status(Source.DERIVED, Exactness.EXACT),
    reference=_PAPER,
    special_cases=[
        SpecialCase("v = w: the second moment", "relu.second_moment", subs={rho: 1, r2: r1}),
        SpecialCase("v orthogonal to w: zero by symmetry", sp.Integer(0), subs={rho: 0}),
    ],
)
def _linear_cross() -> Derivation:
    integrand = r1 * _R * sp.cos(_t) * r2 * _R * sp.cos(_t - _phi)
    half = _positive_interval(0)  # only the ReLU factor restricts the angles
    radial, angular = _polar(sp.cos(_t) * sp.cos(_t - _phi), 2, half.start, half.end)
    in_phi = sp.simplify(r1 * r2 * radial * angular)
    expr = sp.simplify(in_phi.subs(_phi, sp.acos(rho)))
    return Derivation(
        expr,
        steps=[
            Step("polar coordinates in the plane of w and v, w at t = 0, v at t = phi", integrand * _plane_density()),
            Step("the ReLU factor is positive on a half-turn of angles", half),
            Step("radial integral", radial),
            Step("angular integral", angular),
            Step("in terms of phi", in_phi),
            Step("substitute phi = acos(rho)", expr),
        ],
    )
