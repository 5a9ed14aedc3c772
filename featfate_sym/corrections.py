"""Where the paper (Tahir, Ganguli & Rotskoff, arXiv 2410.08194) or the authors' experiment
scripts are wrong or approximate, each with a command that shows it.

:data:`CORRECTIONS` is the source of truth; :func:`document` renders it to
``derivations/corrections.md`` (written by ``python -m featfate_sym.derive --write-docs
derivations``).  Every :class:`Check` records a shell command of one of two forms --
``python -m featfate_sym.derive ...`` or ``python -c "..."`` -- the output it printed
(``output``) and a regular expression the output must match in full (``pattern``, which
tolerates the last digits of floating-point output); ``tests/test_corrections.py`` runs
each command and checks both, so the document cannot go stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "Correction", "CORRECTIONS", "document", "write_document"]

#: a value that is zero up to float64 rounding, as ``derive --eval`` prints it
_ZERO = r"-?(\d(\.\d+)?e-1[5-7]|0(\.0+)?)"


@dataclass(frozen=True)
class Check:
    """One command, the output it printed, and the pattern its output must match in full."""

    command: str
    output: str
    pattern: str


@dataclass(frozen=True)
class Correction:
    """One statement of the paper (or of the authors' code) and what is right instead."""

    title: str
    where: str
    stated: str
    right: str
    keys: tuple[str, ...]
    checks: tuple[Check, ...]


CORRECTIONS: tuple[Correction, ...] = (
    Correction(
        title="Fine-tuning ignores the null-space scale c",
        where="paper Thm 3.9 (fine-tuning)",
        stated="After fine-tuning the null-space part of beta is the pretrained one, beta_ft = "
        "(I - P) beta_s + beta_sc (c = 1), so T_ft = (1 - gamma)(2 cos theta - 1) for gamma < 1, "
        "independent of the noise and of the depth, with the boundary theta* = pi/3.",
        right="Balanced gradient flow rescales the null-space part: (I - P) beta_ft = c^(L-1) "
        "(I - P) beta_s, with c > 0 the root of c^(2L) - a c^(2L-2) - b = 0, a = 1 - gamma, "
        "b = gamma + gamma sigma^2/(1 - gamma). c^(L-1) = 1 only for sigma = 0 or L = 1; with "
        "noise T_ft depends on sigma and L, and theta = pi/3 is no longer neutral "
        "(cos theta* = c^(L-1)/2). Below, the first two outputs are 0 up to rounding.",
        keys=("ft.transferability", "ft.transferability_exact"),
        checks=(
            Check("python -m featfate_sym.derive ft.transferability --eval gamma=0.5 theta=pi/3",
                  "-1.1102230246251565e-16", _ZERO),
            Check("python -m featfate_sym.derive ft.transferability_exact --eval gamma=0.5 theta=pi/3 "
                  "sigma=0 L=3", "-1.1102230246251565e-16", _ZERO),
            Check("python -m featfate_sym.derive ft.transferability_exact --eval gamma=0.5 theta=pi/3 "
                  "sigma=1 L=2", "-0.13762756430420553", r"-0\.1376275643\d*"),
            Check("python -m featfate_sym.derive ft.transferability_exact --eval gamma=0.5 theta=pi/3 "
                  "sigma=1 L=3", "-0.22607535410027113", r"-0\.2260753541\d*"),
        ),
    ),
    Correction(
        title="Fine-tuning from a finite source ignores the null-space scale",
        where="paper v2 appendix (finite source data)",
        stated="With c = 1: T_ft = -(1 - gamma)_+ t, t = gamma_s (1 - 2 cos theta) + "
        "sigma_s^2 gamma_s/(1 - gamma_s) (gamma_s < 1) or (1 - 2 cos theta) + "
        "sigma_s^2/(gamma_s - 1) (gamma_s > 1).",
        right="The network starts fine-tuning at beta_s_hat with |beta_s_hat|^2 = B != 1, so "
        "balanced flow rescales the null-space part even without any noise: (I - P) beta_ft = "
        "u^((L-1)/(2L)) (I - P) beta_s_hat, u the positive root of "
        "u - (1 - gamma) u^((L-1)/L) - b/B = 0. The c = 1 form is exact only where the scale is 1: "
        "for L = 1, or where b = gamma B (for example a noiseless source with gamma_s > 1 and a "
        "noiseless target); at gamma_s = 0.5 it is off even without noise.",
        keys=("ft.transferability_finite_source", "ft.transferability_finite_source_exact"),
        checks=(
            Check("python -m featfate_sym.derive ft.transferability_finite_source --eval gamma=0.5 "
                  "theta=pi/4 gamma_s=0.5 sigma_s=0", "0.10355339059327379", r"0\.1035533905\d*"),
            Check("python -m featfate_sym.derive ft.transferability_finite_source_exact --eval "
                  "gamma=0.5 theta=pi/4 sigma=0 gamma_s=0.5 sigma_s=0 L=1",
                  "0.10355339059327379", r"0\.1035533905\d*"),
            Check("python -m featfate_sym.derive ft.transferability_finite_source_exact --eval "
                  "gamma=0.5 theta=pi/4 sigma=0 gamma_s=0.5 sigma_s=0 L=2",
                  "0.07992719350895644", r"0\.0799271935\d*"),
        ),
    ),
    Correction(
        title="The Dudley half of Theorem 2.2 holds only below 2",
        where="paper v1 Thm 2.2 (data-centric distances do not predict transfer)",
        stated="Inside one feature space there are tasks arbitrarily far from the source in the "
        "Dudley (bounded-Lipschitz) metric that transfer perfectly.",
        right="The Dudley distance is at most 2 for any two laws (|E_P f - E_Q f| <= 2 |f|_inf "
        "<= 2), so the statement holds only for thresholds below 2. For the linear tasks at "
        "opposite teachers the best lower bound of metrics.bl_lower stays near 0.36 as the "
        "noise shrinks, while KL grows like 2/sigma^2.",
        keys=("metrics.bl_lower", "metrics.kl"),
        checks=(
            Check("python -c \"import math, featfate_sym as ff; "
                  "from featfate_sym.studies.distances_vs_transfer import bl_lower_bound; "
                  "print(ff.get('metrics.bl_lower').extras['upper_bound'], "
                  "[round(float(bl_lower_bound(math.pi, s)), 3) for s in (1.0, 0.1, 0.01)], "
                  "[round(float(ff.get('metrics.kl').evaluate(theta=math.pi, sigma=s)), 1) "
                  "for s in (1.0, 0.1, 0.01)])\"",
                  "2 [0.257, 0.356, 0.358] [2.0, 200.0, 20000.0]",
                  r"2 \[0\.25\d, 0\.35\d, 0\.35\d\] \[2\.0, 200\.0, 20000\.0\]"),
        ),
    ),
    Correction(
        title="The KL half of Theorem 2.2 needs a large enough scale a",
        where="paper v1 Thm 2.2 (counterexample g = -a f)",
        stated="For the task g = -a f, in the feature space of f, KL(p_f || p_g) exceeds any "
        "threshold delta while linear transfer stays perfect.",
        right="KL(p_f || p_{-af}) = (1 + a)^2 |f|^2 / (2 sigma^2) (the conditional KL of "
        "metrics.kl averaged over x, |f| the L2 norm): it exceeds delta iff a > sigma "
        "sqrt(2 delta)/|f| - 1, so a > sigma sqrt(2 delta)/|f| suffices. The construction needs "
        "f != 0 and a fixed noise sigma > 0 (at sigma = 0 the laws are mutually singular and KL "
        "is infinite).",
        keys=("metrics.kl",),
        checks=(
            Check("python -c \"import sympy as sp, featfate_sym as ff; "
                  "k = ff.get('metrics.kl').extras['conditional_kl']; "
                  "dl, sy = sorted(k.free_symbols, key=str); "
                  "a, f, D = sp.symbols('a f Delta', positive=True); "
                  "kl = sp.factor(k.subs(dl, f + a*f)); print(kl, '|', sp.solve(sp.Eq(kl, D), a))\"",
                  "f**2*(a + 1)**2/(2*sigma_y**2) | [(sqrt(2)*sqrt(Delta)*sigma_y - f)/f]",
                  r"f\*\*2\*\(a \+ 1\)\*\*2/\(2\*sigma_y\*\*2\) \| "
                  r"\[\(sqrt\(2\)\*sqrt\(Delta\)\*sigma_y - f\)/f\]"),
        ),
    ),
    Correction(
        title="The negative-transfer interval below gamma = 1 is printed with its ends swapped",
        where="paper, phase diagram of T_lt (Thm 3.8 and the transferability equation)",
        stated="The interval of negative linear transfer below gamma = 1 is written with the "
        "larger root of gamma^2 - (1 + k_lam cos^2 theta - sigma^2) gamma + k_lam cos^2 theta = 0 "
        "first.",
        right="Negative transfer holds on (gamma_-, gamma_+) with gamma_- < gamma_+ the two roots "
        "(and beyond gamma_above_one > 1); at theta = pi/4, sigma = 0.2, lam = 0: "
        "(0.549, 0.911), where T_lt is negative inside and positive outside.",
        keys=("lt.boundary", "lt.transferability"),
        checks=(
            Check("python -m featfate_sym.derive lt.boundary --eval theta=pi/4 sigma=0.2 lam=0",
                  "gamma_minus = 0.5486164285278295\ngamma_plus = 0.9113835714721705\n"
                  "gamma_above_one = 1.08",
                  r"gamma_minus = 0\.5486164285\d*\ngamma_plus = 0\.9113835714\d*\n"
                  r"gamma_above_one = 1\.08\d*"),
            Check("python -c \"import math, featfate_sym as ff; t = ff.get('lt.transferability'); "
                  "print([round(float(t.evaluate(gamma=g, theta=math.pi/4, sigma=0.2, lam=0.0)), 3) "
                  "for g in (0.25, 0.73, 0.95)])\"",
                  "[0.263, -0.122, 0.31]", r"\[0\.263, -0\.122, 0\.31\]"),
        ),
    ),
    Correction(
        title="Ridge-regularised runs plotted against the unregularised theory",
        where="authors' experiment scripts (linear-transfer figures)",
        stated="The 'unregularised' linear-transfer simulations are compared with the lam = 0 "
        "theory, but were run with a readout ridge lam = 0.1.",
        right="In the limit R_lt(lam) - R_lt(0) = lam^2 cos^2 theta/(1 + lam)^2 (from lt.risk), "
        "0.00826 cos^2 theta at lam = 0.1: a visible bias at small theta (at the figure's point "
        "theta = pi/8: 0.1535 against 0.1464). A ridge as small as lam = 1e-5 standing in for "
        "lam = 0 shifts it by 1e-10 cos^2 theta only.",
        keys=("lt.risk",),
        checks=(
            Check("python -c \"import sympy as sp, featfate_sym as ff; "
                  "from featfate_sym.symbols import lam, theta; r = ff.get('lt.risk').expr; "
                  "g = sp.factor(sp.simplify(r - r.subs(lam, 0))); "
                  "print(g, '|', g.subs(lam, sp.Rational(1, 10)), '=', "
                  "sp.N(g.subs({lam: sp.Rational(1, 10), theta: 0}), 3), '|', "
                  "sp.N(g.subs({lam: sp.Rational(1, 10**5), theta: 0}), 3))\"",
                  "lam**2*cos(theta)**2/(lam + 1)**2 | cos(theta)**2/121 = 0.00826 | 1.00e-10",
                  r"lam\*\*2\*cos\(theta\)\*\*2/\(lam \+ 1\)\*\*2 \| cos\(theta\)\*\*2/121 = "
                  r"0\.00826 \| 1\.00e-10"),
            Check("python -m featfate_sym.derive lt.risk --eval theta=pi/8 lam=0.1",
                  "0.15350076965956322", r"0\.1535007696\d*"),
            Check("python -m featfate_sym.derive lt.risk --eval theta=pi/8 lam=0",
                  "0.14644660940672624", r"0\.1464466094\d*"),
        ),
    ),
)


def document() -> str:
    """``derivations/corrections.md``: every entry of :data:`CORRECTIONS` in Markdown."""
    lines = [
        "# Corrections to the paper and the authors' code",
        "",
        "Generated by `python -m featfate_sym.derive --write-docs derivations` from",
        "`featfate_sym/corrections.py`; do not edit by hand. `tests/test_corrections.py` runs",
        "every command below and checks that its output matches the one shown.",
        "",
    ]
    for number, entry in enumerate(CORRECTIONS, start=1):
        lines += [
            f"## {number}. {entry.title}",
            "",
            f"- **Where:** {entry.where}",
            f"- **Stated:** {entry.stated}",
            f"- **Right:** {entry.right}",
            "- **Registry keys:** " + ", ".join(f"`{key}`" for key in entry.keys),
            "",
            "```console",
        ]
        for check in entry.checks:
            lines += [f"$ {check.command}", check.output]
        lines += ["```", ""]
    return "\n".join(lines)


def write_document(directory) -> Path:
    """Write :func:`document` to ``directory/corrections.md`` atomically; return the path."""
    from featfate_sym.sweeps.storage import atomic_write  # netCDF stack: only when writing

    path = Path(directory) / "corrections.md"
    atomic_write(path, document().encode())
    return path
