"""Two-layer ReLU student-teacher transfer, simulated with Torch (SPEC section 3).

Tasks.  Inputs ``x ~ N(0, I_d)``.  The target teacher is
``f_t(x) = sum_k a_k relu(w*_k.x)`` with ``m*`` unit-norm neurons ``w*_k`` drawn uniformly
on the sphere and fixed readout weights ``a_k = 1/sqrt(m*)`` (all positive: ``|f_t|^2``
stays of order ``1 + m*/(2 pi)`` and every removed neuron carries the same weight).  The
source teacher is the target with a fraction ``mu`` of its neurons removed (the first
``round(mu m*)`` of a seeded permutation), or, in the ``replace`` variant, with those
neurons replaced by fresh random unit neurons of the same readout.  Labels may carry
Gaussian noise ``noise_std`` (default 0).

Student.  ``f(x) = (1/m) sum_i c_i relu(w_i.x)`` (mean-field scaling), initialised small
and balanced: ``w_i = init_scale * u_i`` with ``u_i`` uniform on the sphere,
``c_i = init_scale * s_i`` with random signs ``s_i`` -- the rich regime, where neurons
condense onto teacher directions (the analogue of the deep-linear ``alpha -> 0``).

Training.  Full-batch gradient descent with the mean-field step: every parameter moves
by ``-lr * m * dLoss/dparam``, so that each neuron's motion is ``O(lr)`` whatever ``m``.
Losses are mean squared errors without a 1/2.

- Pretraining minimises the *population* source loss ``E[(f - f_s)^2]`` (an unlimited
  source), evaluated exactly from the arc-cosine kernel (``relu.arccos_kernel``,
  lambdified to Torch, with the backward pass from its SymPy derivative
  ``d_angular_drho``) -- no sampling noise and no batch size to choose.
- On ``n`` target samples: scratch (fresh small initialisation, empirical loss), linear
  transfer (the readout refitted in closed form on the frozen pretrained features, least
  squares with an eigenvalue rank rule or ridge), fine-tuning (all parameters from the
  pretrained ones, empirical loss).

Stopping rule: stop when the training loss is below ``tol`` (``converged``), or at
``max_steps``.  An optional plateau rule (stop when the loss has decreased by less than a
relative ``plateau_rtol`` over ``plateau_window`` steps) is off by default: from a small
initialisation the loss sits on long plateaus near saddles before each new teacher
direction is picked up, and a plateau rule stops there.  The reason is recorded.  Risks
are population risks ``E[(f - f_t)^2]`` against the noise-free target, exact from the
kernel.  Float64 throughout; CPU by default, any Torch ``device``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch

from featfate_sym import registry
from featfate_sym.symbols import rho

__all__ = [
    "ReluTeacher",
    "ReluTasks",
    "MeanFieldStudent",
    "TrainingOptions",
    "TrainingRecord",
    "ReluTransferOutcome",
    "make_relu_tasks",
    "arccos_gram",
    "population_risk",
    "sample_relu_data",
    "pretrain_student",
    "train_scratch_relu",
    "fine_tune_relu",
    "linear_transfer_relu",
    "simulate_relu_transfer",
]

_DTYPE = torch.float64


# -- the kernel in Torch ---------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _angular_functions():
    """``J(rho) = K / (r1 r2)`` and ``J'(rho)`` from the registered derivation, for Torch."""
    extras = registry.get("relu.arccos_kernel").extras
    j = sp.lambdify(rho, extras["angular"], modules="torch")
    dj = sp.lambdify(rho, extras["d_angular_drho"], modules="torch")
    return j, dj


def _unit_rows(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = a.norm(dim=1)
    # a zero row is an identically zero feature; its direction is irrelevant (set to 0)
    unit = torch.where(r[:, None] > 0, a / torch.where(r > 0, r, 1.0)[:, None], 0.0)
    return r, unit


class _ArcCosGram(torch.autograd.Function):
    """``K_ij = r_i r'_j J(rho_ij)`` with the chain rule written through ``J'``.

    Autograd through ``acos`` and ``sqrt(1 - rho^2)`` separately would give ``inf - inf``
    at ``rho = +-1`` (a neuron paired with itself); their sum ``J'`` is finite there, so
    the backward pass uses it: ``dK_ij/da_i = r'_j [J a_hat_i + J' (b_hat_j - rho a_hat_i)]``.
    """

    @staticmethod
    def forward(ctx, a, b):
        j, _ = _angular_functions()
        ra, ua = _unit_rows(a)
        rb, ub = _unit_rows(b)
        cos = (ua @ ub.T).clamp(-1.0, 1.0)
        jv = j(cos)
        ctx.save_for_backward(ra, ua, rb, ub, cos, jv)
        return ra[:, None] * rb[None, :] * jv

    @staticmethod
    def backward(ctx, grad):
        _, dj = _angular_functions()
        ra, ua, rb, ub, cos, jv = ctx.saved_tensors
        djv = dj(cos)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            g = grad * rb[None, :]
            ga = (g * (jv - cos * djv)).sum(1)[:, None] * ua + (g * djv) @ ub
        if ctx.needs_input_grad[1]:
            g = grad * ra[:, None]
            gb = (g * (jv - cos * djv)).sum(0)[:, None] * ub + (g * djv).T @ ua
        return ga, gb


def arccos_gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``E[relu(a_i.x) relu(b_j.x)]``, differentiable in both arguments."""
    return _ArcCosGram.apply(a, b)


# -- tasks -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReluTeacher:
    """``f(x) = sum_k readout_k relu(weights_k . x)``; ``weights`` is ``(m*, d)``."""

    weights: torch.Tensor
    readout: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.weights.T) @ self.readout


@dataclass(frozen=True)
class ReluTasks:
    """Target and source teachers and which target neurons the source lacks."""

    target: ReluTeacher
    source: ReluTeacher
    removed: np.ndarray
    removed_fraction: float
    replace: bool


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_int(name: str, value, lower: int) -> int:
    if int(value) != value or value < lower:
        raise ValueError(f"{name} must be an integer >= {lower} (got {value})")
    return int(value)


def _sphere(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    g = rng.standard_normal((count, dim))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def make_relu_tasks(
    input_dim: int,
    teacher_width: int,
    removed_fraction: float,
    *,
    seed: int | np.random.Generator,
    replace: bool = False,
    device: str | torch.device = "cpu",
) -> ReluTasks:
    """Target teacher with ``teacher_width`` unit neurons in ``input_dim`` dimensions,
    readout ``1/sqrt(teacher_width)``; source without (or with replaced) a fraction
    ``removed_fraction`` in ``[0, 1]`` of them (``round(mu m*)`` neurons)."""
    d = _check_int("input_dim", input_dim, 1)
    width = _check_int("teacher_width", teacher_width, 1)
    if not 0.0 <= removed_fraction <= 1.0:
        raise ValueError(f"removed_fraction must be in [0, 1] (got {removed_fraction:g})")
    rng = _generator(seed)
    w = _sphere(rng, width, d)
    a = np.full(width, 1.0 / np.sqrt(width))
    removed = np.sort(rng.permutation(width)[: int(round(removed_fraction * width))])
    kept = np.setdiff1d(np.arange(width), removed)
    if replace:
        ws = w.copy()
        ws[removed] = _sphere(rng, removed.size, d)
        as_ = a.copy()
    else:
        ws, as_ = w[kept], a[kept]
    t = functools.partial(torch.as_tensor, dtype=_DTYPE, device=device)
    return ReluTasks(
        target=ReluTeacher(t(w), t(a)),
        source=ReluTeacher(t(ws), t(as_)),
        removed=removed,
        removed_fraction=float(removed_fraction),
        replace=bool(replace),
    )


def sample_relu_data(teacher: ReluTeacher, n_samples: int, *, seed, noise_std: float = 0.0):
    """``n_samples`` pairs ``(x, f(x) + noise_std * eps)`` with ``x ~ N(0, I_d)``."""
    n = _check_int("n_samples", n_samples, 1)
    if not noise_std >= 0.0:
        raise ValueError(f"noise_std must be >= 0 (got {noise_std:g})")
    rng = _generator(seed)
    d = teacher.weights.shape[1]
    dev = teacher.weights.device
    x = torch.as_tensor(rng.standard_normal((n, d)), dtype=_DTYPE, device=dev)
    eps = torch.as_tensor(rng.standard_normal(n), dtype=_DTYPE, device=dev)
    return x, teacher(x) + noise_std * eps


# -- student ---------------------------------------------------------------------------------
@dataclass
class MeanFieldStudent:
    """``f(x) = (1/m) sum_i c_i relu(w_i.x)``; ``weights`` ``(m, d)``, ``readout`` ``(m,)``."""

    weights: torch.Tensor
    readout: torch.Tensor

    @property
    def width(self) -> int:
        return self.weights.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.weights.T) @ self.readout / self.width

    def clone(self) -> "MeanFieldStudent":
        return MeanFieldStudent(self.weights.detach().clone(), self.readout.detach().clone())

    @classmethod
    def small_init(cls, width: int, input_dim: int, *, init_scale: float, seed, device="cpu") -> "MeanFieldStudent":
        """Balanced small initialisation: ``|w_i| = |c_i| = init_scale``, random directions and signs."""
        m = _check_int("width", width, 1)
        if not init_scale > 0.0:
            raise ValueError(f"init_scale must be > 0 (got {init_scale:g})")
        rng = _generator(seed)
        w = init_scale * _sphere(rng, m, input_dim)
        c = init_scale * rng.choice([-1.0, 1.0], size=m)
        t = functools.partial(torch.as_tensor, dtype=_DTYPE, device=device)
        return cls(t(w), t(c))


def population_risk(student: MeanFieldStudent, teacher: ReluTeacher) -> torch.Tensor:
    """``E[(f(x) - f_t(x))^2]`` exactly, from the arc-cosine kernel (differentiable)."""
    m = student.width
    c, a = student.readout, teacher.readout
    w, ws = student.weights, teacher.weights
    return (
        c @ arccos_gram(w, w) @ c / m**2
        - 2 * c @ arccos_gram(w, ws) @ a / m
        + a @ arccos_gram(ws, ws) @ a
    )


@dataclass(frozen=True)
class TrainingOptions:
    """Gradient-descent settings; see the module docstring for the stopping rule.

    ``lr`` is the largest mean-field step (parameters move by ``-lr_k * m * grad``).  The
    step is safeguarded: a step that would raise the loss is rejected and ``lr_k`` halved;
    after each accepted step ``lr_k`` grows by ``lr_growth`` up to ``lr``.  (A fixed step
    that is stable early can oscillate without diverging once neurons have grown, and
    then the loss stalls far from its minimum.)
    """

    lr: float = 1.0
    max_steps: int = 10_000
    tol: float = 1e-6
    lr_growth: float = 1.05
    plateau_window: int | None = None
    plateau_rtol: float = 1e-3

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (got {self.lr:g})")
        _check_int("max_steps", self.max_steps, 1)
        if self.plateau_window is not None:
            _check_int("plateau_window", self.plateau_window, 1)
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0 (got {self.tol:g})")
        if not self.lr_growth >= 1:
            raise ValueError(f"lr_growth must be >= 1 (got {self.lr_growth:g})")
        if not 0 <= self.plateau_rtol < 1:
            raise ValueError(f"plateau_rtol must be in [0, 1) (got {self.plateau_rtol:g})")


@dataclass(frozen=True)
class TrainingRecord:
    """What a training run did: ``steps`` attempted (``rejected_steps`` of them rejected by
    the safeguard), the final training loss, whether it reached ``tol`` and why it
    stopped (``tol``, ``plateau`` or ``max_steps``), the last step size, wall time and
    the options used."""

    steps: int
    rejected_steps: int
    final_loss: float
    converged: bool
    reason: str
    final_lr: float
    seconds: float
    options: TrainingOptions


def _descend(student: MeanFieldStudent, loss_fn, opts: TrainingOptions) -> TrainingRecord:
    start = time.perf_counter()
    m = student.width

    def evaluate(w, c):
        w = w.detach().requires_grad_(True)
        c = c.detach().requires_grad_(True)
        loss = loss_fn(MeanFieldStudent(w, c))
        gw, gc = torch.autograd.grad(loss, (w, c))
        value = float(loss.detach())
        if not np.isfinite(value):
            raise FloatingPointError(f"training loss is not finite (step size {lr:g})")
        return w.detach(), c.detach(), value, gw, gc

    lr = opts.lr
    w, c, value, gw, gc = evaluate(student.weights, student.readout)
    history = [value]
    reason, step, rejected = "max_steps", 0, 0
    while True:
        if value <= opts.tol:
            reason = "tol"
            break
        k = opts.plateau_window
        if k is not None and len(history) > k and history[-k - 1] - value <= opts.plateau_rtol * history[-k - 1]:
            reason = "plateau"
            break
        if step == opts.max_steps:
            break
        step += 1
        # mean-field step: each neuron moves O(lr) per step whatever the width
        trial = evaluate(w - lr * m * gw, c - lr * m * gc)
        if trial[2] > value:
            rejected += 1
            lr /= 2
            continue
        w, c, value, gw, gc = trial
        history.append(value)
        lr = min(lr * opts.lr_growth, opts.lr)
    student.weights = w
    student.readout = c
    return TrainingRecord(
        step, rejected, value, reason == "tol", reason, lr, time.perf_counter() - start, opts
    )


def pretrain_student(student: MeanFieldStudent, source: ReluTeacher, opts: TrainingOptions) -> TrainingRecord:
    """Gradient descent on the population source loss (in place); returns the record."""
    return _descend(student, lambda s: population_risk(s, source), opts)


def _empirical_loss(x, y):
    return lambda s: torch.mean((s(x) - y) ** 2)


def train_scratch_relu(student: MeanFieldStudent, x, y, opts: TrainingOptions) -> TrainingRecord:
    """Gradient descent on the empirical target loss from ``student``'s (small) initialisation."""
    return _descend(student, _empirical_loss(x, y), opts)


def fine_tune_relu(student: MeanFieldStudent, x, y, opts: TrainingOptions) -> TrainingRecord:
    """Gradient descent on the empirical target loss from pretrained parameters."""
    return _descend(student, _empirical_loss(x, y), opts)


def linear_transfer_relu(
    pretrained: MeanFieldStudent, x, y, *, ridge: float = 0.0, rank_tol: float = 1e-10
) -> tuple[MeanFieldStudent, int]:
    """Refit the readout on frozen pretrained features: minimise
    ``(1/n)|y - Phi v|^2 + ridge |v|^2`` over ``v = c/m``, ``Phi = relu(x W^T)``.

    The fit is restricted to the eigen-directions of ``Phi^T Phi / n`` with eigenvalue
    above ``rank_tol`` times the largest (the rule of
    :func:`featfate_sym.studies.relu_overlap.feature_overlap`); with ``ridge = 0`` it is the
    minimum-norm least-squares solution there (no hidden regulariser), with ``ridge > 0``
    the ridge solution there.  Returns the student with the new readout and the number
    of directions used.
    """
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0 (got {ridge:g})")
    if not 0 <= rank_tol < 1:
        raise ValueError(f"rank_tol must be in [0, 1) (got {rank_tol:g})")
    n = x.shape[0]
    phi = torch.relu(x @ pretrained.weights.T)
    gram = phi.T @ phi / n
    cross = phi.T @ y / n
    evals, evecs = torch.linalg.eigh(gram)
    keep = evals > rank_tol * evals[-1]
    proj = evecs[:, keep].T @ cross
    v = evecs[:, keep] @ (proj / (evals[keep] + ridge))
    out = MeanFieldStudent(pretrained.weights.clone(), v * pretrained.width)
    return out, int(keep.sum())


# -- one cell of the experiment --------------------------------------------------------------
@dataclass
class ReluTransferOutcome:
    """Risks of the three procedures on the same target samples, plus the exact overlap.

    ``overlap``: ``|P_perp f_t|^2`` of the target outside the pretrained features' span;
    ``records``: training records by name (``pretrain``, ``scratch``, ``fine_tune``);
    ``settings``: every input of the run, for reproducibility.
    """

    risk_linear_transfer: float
    risk_scratch: float | None
    risk_fine_tune: float | None
    overlap: float
    target_norm: float
    source_risk_after_pretraining: float
    lt_rank: int
    overlap_rank: int
    records: dict[str, TrainingRecord] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def simulate_relu_transfer(
    *,
    input_dim: int = 50,
    teacher_width: int = 20,
    student_width: int = 200,
    removed_fraction: float = 0.25,
    n_samples: int = 1000,
    replace: bool = False,
    noise_std: float = 0.0,
    init_scale: float = 1e-3,
    ridge: float = 0.0,
    rank_tol: float = 1e-10,
    pretrain: TrainingOptions = TrainingOptions(),
    target_training: TrainingOptions = TrainingOptions(),
    procedures: tuple[str, ...] = ("linear_transfer", "scratch", "fine_tune"),
    pretrained: MeanFieldStudent | None = None,
    task_seed: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[ReluTransferOutcome, MeanFieldStudent]:
    """One cell: tasks (``task_seed``), pretraining, ``n_samples`` target samples and the
    procedures named in ``procedures`` (linear transfer always runs).  ``seed`` draws the
    student initialisations and the target samples.  Pass ``pretrained`` (returned by an
    earlier call with the same tasks) to reuse a pretrained student across ``n``.
    Defaults are the small configuration (``d = 50, m* = 20, m = 200``); the paper's is
    ``input_dim=100, teacher_width=100, student_width=1000``.
    """
    from featfate_sym.studies.relu_overlap import feature_overlap

    unknown = set(procedures) - {"linear_transfer", "scratch", "fine_tune"}
    if unknown:
        raise ValueError(f"procedures must be among linear_transfer, scratch, fine_tune (got {sorted(unknown)})")
    tasks = make_relu_tasks(input_dim, teacher_width, removed_fraction, seed=task_seed, replace=replace, device=device)
    rng = np.random.default_rng([seed, 1])
    records: dict[str, TrainingRecord] = {}
    if pretrained is None:
        pretrained = MeanFieldStudent.small_init(
            student_width, input_dim, init_scale=init_scale, seed=np.random.default_rng([task_seed, 2]), device=device
        )
        records["pretrain"] = pretrain_student(pretrained, tasks.source, pretrain)
    with torch.no_grad():
        source_risk = float(population_risk(pretrained, tasks.source))
    ov = feature_overlap(
        pretrained.weights.cpu().numpy(),
        tasks.target.weights.cpu().numpy(),
        tasks.target.readout.cpu().numpy(),
        rank_tol=rank_tol,
    )
    x, y = sample_relu_data(tasks.target, n_samples, seed=rng, noise_std=noise_std)
    lt, lt_rank = linear_transfer_relu(pretrained, x, y, ridge=ridge, rank_tol=rank_tol)
    with torch.no_grad():
        r_lt = float(population_risk(lt, tasks.target))
    r_sc = r_ft = None
    if "scratch" in procedures:
        sc = MeanFieldStudent.small_init(student_width, input_dim, init_scale=init_scale, seed=rng, device=device)
        records["scratch"] = train_scratch_relu(sc, x, y, target_training)
        with torch.no_grad():
            r_sc = float(population_risk(sc, tasks.target))
    if "fine_tune" in procedures:
        ft = pretrained.clone()
        records["fine_tune"] = fine_tune_relu(ft, x, y, target_training)
        with torch.no_grad():
            r_ft = float(population_risk(ft, tasks.target))
    settings = dict(
        input_dim=input_dim, teacher_width=teacher_width, student_width=student_width,
        removed_fraction=removed_fraction, n_samples=n_samples, replace=replace,
        noise_std=noise_std, init_scale=init_scale, ridge=ridge, rank_tol=rank_tol,
        pretrain=dataclasses.asdict(pretrain), target_training=dataclasses.asdict(target_training),
        procedures=tuple(procedures), task_seed=task_seed, seed=seed, device=str(device),
    )
    outcome = ReluTransferOutcome(
        risk_linear_transfer=r_lt,
        risk_scratch=r_sc,
        risk_fine_tune=r_ft,
        overlap=ov.residual,
        target_norm=ov.target_norm,
        source_risk_after_pretraining=source_risk,
        lt_rank=lt_rank,
        overlap_rank=ov.rank,
        records=records,
        settings=settings,
    )
    return outcome, pretrained
