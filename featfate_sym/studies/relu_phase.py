"""Two-layer ReLU transfer over a grid of removed fractions ``mu`` and sample sizes ``n``.

Each cell is :func:`featfate_sym.simulation.relu.simulate_relu_transfer` (SPEC section 3):
the population risks of linear transfer (readout refitted on the frozen pretrained
features), fine-tuning and training from scratch on the same ``n`` target samples, and
the exact ``|P_perp f_t|^2`` of the target outside the pretrained features' span.

Seeds.  Replicate ``r`` uses sample seed ``seed + r`` (target samples and scratch
initialisation) and teacher seed ``seed + r`` (``vary_teacher=True``: a fresh target
teacher, removal and pretraining per replicate) or ``seed`` for all replicates
(``vary_teacher=False``: one teacher, as in ``numerics/bench_relu.py``).  The target
teacher does not depend on ``mu`` (the removal is drawn after it), and the target samples
and scratch initialisation depend only on the sample seed, so scratch runs once per
``(n, r)`` and its risk is shared by every ``mu``: each difference
``R_scratch - R_method`` is paired on the same target samples.  A pretrained student is
computed once per ``(mu, teacher)`` and reused for every ``n``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from featfate_sym.simulation.relu import MeanFieldStudent, TrainingOptions, simulate_relu_transfer

__all__ = ["SCALES", "ReluPhaseGrid", "simulate_relu_phase"]

#: network shapes by name: input dimension ``d``, teacher width ``m*``, student width ``m``
SCALES = {
    "tiny": dict(input_dim=8, teacher_width=4, student_width=16),
    "small": dict(input_dim=20, teacher_width=8, student_width=48),
    "default": dict(input_dim=50, teacher_width=20, student_width=200),
    "paper": dict(input_dim=100, teacher_width=100, student_width=1000),
}

#: transfer procedures and the attribute holding their risks
METHODS = {"lt": "risk_linear_transfer", "ft": "risk_fine_tune"}


@dataclass
class ReluPhaseGrid:
    """Results over ``mus x n_values x replicates``.

    Risks are population risks against the noise-free target.  Arrays are indexed
    ``[mu, n, replicate]`` (``risk_scratch``, ``scratch_*``: ``[n, replicate]``;
    overlap, pretraining and the pretrained weights: ``[mu, replicate]``;
    ``target_norm``: ``[replicate]``).  ``*_converged``: the run reached the training-loss
    tolerance (else it stopped at its step budget); ``*_steps``: steps attempted.
    """

    mus: np.ndarray
    n_values: np.ndarray
    replicates: int
    risk_linear_transfer: np.ndarray
    risk_fine_tune: np.ndarray
    risk_scratch: np.ndarray
    lt_rank: np.ndarray
    fine_tune_converged: np.ndarray
    fine_tune_steps: np.ndarray
    scratch_converged: np.ndarray
    scratch_steps: np.ndarray
    overlap: np.ndarray
    overlap_rank: np.ndarray
    source_risk: np.ndarray
    pretrain_converged: np.ndarray
    pretrain_steps: np.ndarray
    pretrain_rejected: np.ndarray
    pretrain_final_loss: np.ndarray
    pretrain_seconds: np.ndarray
    target_norm: np.ndarray
    pretrained_weights: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)

    def transferability(self, method: str) -> np.ndarray:
        """Paired ``T = R_scratch - R_method`` per ``[mu, n, replicate]``; ``method``
        is ``"lt"`` (linear transfer) or ``"ft"`` (fine-tuning)."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)} (got {method!r})")
        return self.risk_scratch[None, :, :] - getattr(self, METHODS[method])

    def dataset(self):
        """The labelled form (``xarray.Dataset``, dimensions ``mu``, ``n``, ``replicate``),
        with the variable names of the deep-linear simulations: ``risk_sc``, ``risk_lt``,
        ``risk_ft`` and the paired ``T_lt``, ``T_ft``; the run diagnostics beside them;
        ``settings`` as attributes."""
        import xarray as xr

        mu, n, rep = "mu", "n", "replicate"
        variables = {
            "risk_sc": ((n, rep), self.risk_scratch),
            "risk_lt": ((mu, n, rep), self.risk_linear_transfer),
            "risk_ft": ((mu, n, rep), self.risk_fine_tune),
            "T_lt": ((mu, n, rep), self.transferability("lt")),
            "T_ft": ((mu, n, rep), self.transferability("ft")),
            "rank_lt": ((mu, n, rep), self.lt_rank),
            "converged_ft": ((mu, n, rep), self.fine_tune_converged),
            "steps_ft": ((mu, n, rep), self.fine_tune_steps),
            "converged_sc": ((n, rep), self.scratch_converged),
            "steps_sc": ((n, rep), self.scratch_steps),
            "overlap": ((mu, rep), self.overlap),
            "source_risk": ((mu, rep), self.source_risk),
            "converged_pre": ((mu, rep), self.pretrain_converged),
            "steps_pre": ((mu, rep), self.pretrain_steps),
            "target_norm": ((rep,), self.target_norm),
        }
        attrs = {key: value for key, value in self.settings.items() if isinstance(value, (int, float, str))}
        return xr.Dataset(
            {name: (dims, np.asarray(values)) for name, (dims, values) in variables.items()},
            coords={mu: np.asarray(self.mus), n: np.asarray(self.n_values), rep: np.arange(self.replicates)},
            attrs={**attrs, "seconds": float(self.seconds)},
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric fields (all but ``settings``), for saving."""
        return {k: np.asarray(v) for k, v in vars(self).items() if k != "settings"}


def _increasing(name: str, values, lower: float, upper: float, integer: bool) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence (got shape {arr.shape})")
    if not (np.all(np.isfinite(arr)) and np.all(arr >= lower) and np.all(arr <= upper)):
        raise ValueError(f"{name} must lie in [{lower:g}, {upper:g}] (got {arr.tolist()})")
    if integer and np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be integers (got {arr.tolist()})")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing (got {arr.tolist()})")
    return arr.astype(int) if integer else arr


def simulate_relu_phase(
    mus,
    n_values,
    replicates: int,
    *,
    input_dim: int,
    teacher_width: int,
    student_width: int,
    seed: int = 0,
    vary_teacher: bool = True,
    init_scale: float = 1e-3,
    ridge: float = 0.0,
    rank_tol: float = 1e-10,
    noise_std: float = 0.0,
    pretrain: TrainingOptions = TrainingOptions(),
    target_training: TrainingOptions = TrainingOptions(),
    device: str | torch.device = "cpu",
    progress: Callable[[str], None] | None = None,
) -> ReluPhaseGrid:
    """Run the grid (see the module docstring for the seeds and the pairing).

    ``mus``: strictly increasing removed fractions in ``[0, 1]``; ``n_values``: strictly
    increasing sample sizes ``>= 1``; ``replicates >= 1``; ``seed >= 0``.  ``progress``,
    if given, receives one line per pretraining and per cell (the library prints
    nothing itself).
    """
    mu_arr = _increasing("mus", mus, 0.0, 1.0, integer=False)
    n_arr = _increasing("n_values", n_values, 1, np.inf, integer=True)
    if int(replicates) != replicates or replicates < 1:
        raise ValueError(f"replicates must be an integer >= 1 (got {replicates!r})")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 (got {seed!r})")
    replicates, seed = int(replicates), int(seed)
    shape = dict(input_dim=input_dim, teacher_width=teacher_width, student_width=student_width)
    M, N, R = mu_arr.size, n_arr.size, replicates
    say = progress or (lambda message: None)
    start = time.perf_counter()

    def full(shape_, value, dtype=float):
        return np.full(shape_, value, dtype=dtype)

    r_lt, r_ft = full((M, N, R), np.nan), full((M, N, R), np.nan)
    lt_rank, ft_steps = full((M, N, R), -1, int), full((M, N, R), -1, int)
    ft_conv = full((M, N, R), False, bool)
    r_sc, sc_steps, sc_conv = full((N, R), np.nan), full((N, R), -1, int), full((N, R), False, bool)
    overlap, overlap_rank, source_risk = full((M, R), np.nan), full((M, R), -1, int), full((M, R), np.nan)
    pre_conv, pre_steps, pre_rejected = full((M, R), False, bool), full((M, R), -1, int), full((M, R), -1, int)
    pre_loss, pre_seconds, target_norm = full((M, R), np.nan), full((M, R), np.nan), full(R, np.nan)
    weights = full((M, R, student_width, input_dim), np.nan)

    cells, done = M * N * R, 0
    for i, mu in enumerate(mu_arr):
        pretrained: dict[int, tuple[MeanFieldStudent, object]] = {}
        for r in range(R):
            task_seed = seed + r if vary_teacher else seed
            sample_seed = seed + r
            for j, n in enumerate(n_arr):
                need_scratch = not np.isfinite(r_sc[j, r])
                pre, pre_record = pretrained.get(task_seed, (None, None))
                out, pre = simulate_relu_transfer(
                    **shape, removed_fraction=float(mu), n_samples=int(n), noise_std=noise_std,
                    init_scale=init_scale, ridge=ridge, rank_tol=rank_tol, pretrain=pretrain,
                    target_training=target_training, pretrained=pre, task_seed=task_seed,
                    seed=sample_seed, device=device,
                    procedures=("linear_transfer", "fine_tune") + (("scratch",) if need_scratch else ()),
                )
                if pre_record is None:
                    pre_record = out.records["pretrain"]
                    pretrained[task_seed] = (pre, pre_record)
                    say(f"pretrained mu={mu:g} teacher seed {task_seed}: {pre_record.steps} steps "
                        f"({pre_record.rejected_steps} rejected), {pre_record.reason}, "
                        f"source loss {pre_record.final_loss:.1e}, {pre_record.seconds:.1f} s")
                if need_scratch:
                    rec = out.records["scratch"]
                    r_sc[j, r], sc_steps[j, r], sc_conv[j, r] = out.risk_scratch, rec.steps, rec.converged
                rec = out.records["fine_tune"]
                r_lt[i, j, r], r_ft[i, j, r] = out.risk_linear_transfer, out.risk_fine_tune
                lt_rank[i, j, r], ft_steps[i, j, r], ft_conv[i, j, r] = out.lt_rank, rec.steps, rec.converged
                overlap[i, r], overlap_rank[i, r] = out.overlap, out.overlap_rank
                source_risk[i, r], target_norm[r] = out.source_risk_after_pretraining, out.target_norm
                pre_conv[i, r], pre_steps[i, r] = pre_record.converged, pre_record.steps
                pre_rejected[i, r], pre_loss[i, r] = pre_record.rejected_steps, pre_record.final_loss
                pre_seconds[i, r] = pre_record.seconds
                weights[i, r] = pre.weights.detach().cpu().numpy()
                done += 1
                say(f"[{done}/{cells}] mu={mu:g} n={n} replicate {r}: R_lt {out.risk_linear_transfer:.4g}, "
                    f"R_ft {out.risk_fine_tune:.4g}, R_sc {r_sc[j, r]:.4g}; "
                    f"{time.perf_counter() - start:.0f} s elapsed")
    settings = dict(
        **shape, seed=seed, vary_teacher=bool(vary_teacher), init_scale=init_scale, ridge=ridge,
        rank_tol=rank_tol, noise_std=noise_std, device=str(device),
        pretrain=dataclasses.asdict(pretrain), target_training=dataclasses.asdict(target_training),
    )
    return ReluPhaseGrid(
        mus=mu_arr, n_values=n_arr, replicates=R, risk_linear_transfer=r_lt, risk_fine_tune=r_ft,
        risk_scratch=r_sc, lt_rank=lt_rank, fine_tune_converged=ft_conv, fine_tune_steps=ft_steps,
        scratch_converged=sc_conv, scratch_steps=sc_steps, overlap=overlap, overlap_rank=overlap_rank,
        source_risk=source_risk, pretrain_converged=pre_conv, pretrain_steps=pre_steps,
        pretrain_rejected=pre_rejected, pretrain_final_loss=pre_loss, pretrain_seconds=pre_seconds,
        target_norm=target_norm, pretrained_weights=weights, seconds=time.perf_counter() - start,
        settings=settings,
    )


def overlap_checks(grid: ReluPhaseGrid, *, n_samples: int, seed: int) -> list:
    """Per ``mu`` of ``grid``: the least-squares Monte Carlo check
    (:func:`featfate_sym.studies.relu_overlap.overlap_monte_carlo`, ``n_samples`` draws,
    seed ``seed``) of the exact overlap ``grid.overlap[i, 0]``: replicate 0's pretrained
    features against its target teacher (teacher seed ``grid.settings["seed"]``, the
    same tasks as the grid's)."""
    from featfate_sym.simulation.relu import make_relu_tasks
    from featfate_sym.studies.relu_overlap import overlap_monte_carlo

    settings = grid.settings
    checks = []
    for i, mu in enumerate(grid.mus):
        target = make_relu_tasks(settings["input_dim"], settings["teacher_width"], float(mu),
                                 seed=settings["seed"]).target
        checks.append(overlap_monte_carlo(grid.pretrained_weights[i, 0], target.weights.numpy(),
                                          target.readout.numpy(), n_samples=n_samples, seed=seed))
    return checks


def relu_step_times(*, input_dim: int, teacher_width: int, student_width: int, lr: float, steps: int,
                    n_samples: int, device: str | torch.device = "cpu") -> tuple[float, float]:
    """``(seconds per pretraining step, seconds per target-training step)`` of the
    mean-field engine: ``steps`` steps of each (no tolerance) at removed fraction 0.25,
    target training (fine-tuning) on ``n_samples`` target samples.  A one-step warm-up
    first (the first call derives and compiles the kernel)."""
    from featfate_sym.simulation.relu import fine_tune_relu, make_relu_tasks, pretrain_student, sample_relu_data

    tasks = make_relu_tasks(input_dim, teacher_width, 0.25, seed=0, device=device)
    student = MeanFieldStudent.small_init(student_width, input_dim, init_scale=1e-3, seed=1, device=device)
    opts = TrainingOptions(lr=lr, max_steps=steps, tol=0.0)
    pretrain_student(student.clone(), tasks.source, TrainingOptions(lr=lr, max_steps=1, tol=0.0))
    rec = pretrain_student(student, tasks.source, opts)
    x, y = sample_relu_data(tasks.target, n_samples, seed=2)
    rec_t = fine_tune_relu(student, x, y, opts)
    return rec.seconds / max(rec.steps, 1), rec_t.seconds / max(rec_t.steps, 1)
