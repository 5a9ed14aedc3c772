"""Fine-tuning from rank-k features (k source tasks): the protocol of
:func:`featfate_sym.simulation.multi_output.fine_tune_from_trunk` against its L = 2 theory.

Independent expectations: the structure of two-layer gradient flow (the null-space part of the
end point lies in ``(I-P) span(trunk)``, exactly for any loss metric); the conservation law
``W_1^T W_1 - w w^T`` (one scalar equation ``b = omega^T M omega + |omega|^4`` on the end
point); for ``k = 1`` the quadratic in ``omega^2`` it gives, which with the balanced start
(readout = the pretrained one, ``|F_0| = 1``) is the ``L = 2`` root equation of
``ft.transferability_exact``; for ``k > 1`` under the whitened loss the ``(k+1) x k`` flow
integrated by :func:`~featfate_sym.simulation.multi_output.trunk_end_point`.

Tolerances.  These are per-replicate identities of the flow, not statistical tests: the
engine takes discrete steps, whose drift of the conserved quantity moves the end point by
``0.6e-3 - 1.0e-3`` (measured, d = 60, k = 1, 3; 0.6e-3 - 0.8e-3 at step_scale 0.25, 5e-3 -
9e-3 with the plain step rule), so the end point is asserted to ``3e-3`` while fine-tuning
moves it by ``0.4 - 0.6`` from linear transfer and the ODE's end point is ``> 1e-2`` away from
the start's readout (``beta_sc + N omega_0``); the structural identities hold to ``1e-8``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featfate_sym.simulation import multi_output as mo
from featfate_sym.simulation import tasks
from featfate_sym.simulation.deep_linear import EngineOptions

D, THETA, SIGMA = 60, 0.8, 0.3
WHITENED = EngineOptions(solver="whitened")


def _run(k, replicates, seed, options=WHITENED, depth=2, dim=D):
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_multi_source_teachers(replicates, dim, THETA, k, gen)
    target = tasks.sample_regression(teachers.target, dim // 2, SIGMA, gen)
    pre, pre_run = mo.pretrain(mo.population(teachers.source), depth, gen, options)
    assert pre_run.converged.all()
    weights, run, start = mo.fine_tune_from_trunk(pre, target, options)
    assert run.converged.all() and (start.rank == k).all()
    beta = weights[-1].to(torch.float64).cpu()
    for w in reversed(weights[:-1]):
        beta = (w.to(torch.float64).cpu() @ beta.unsqueeze(-1)).squeeze(-1)
    return teachers, target, start, beta


@pytest.mark.parametrize("k", [1, 3])
def test_two_layer_end_point_matches_the_trunk_flow(k, seed, one_thread):
    teachers, target, start, beta = _run(k, 3, seed + 31 + k)
    for r in range(beta.shape[0]):
        pred = mo.trunk_end_point(start.weights[0][r], start.weights[1][r], target.projector[r],
                                  target.minimiser[r], k)
        b_ft = beta[r].numpy()
        proj = target.projector[r].numpy()
        # the start is linear transfer's end point; fine-tuning moves it by O(1)
        assert np.allclose(start.weights[0][r].numpy() @ start.weights[1][r].numpy(), start.beta0[r].numpy())
        assert np.linalg.norm(b_ft - start.beta0[r].numpy()) > 0.1
        # row space: the min-norm interpolator
        assert np.linalg.norm(proj @ b_ft - target.minimiser[r].numpy()) < 1e-4
        # null space: in (I - P) span(trunk), for any loss metric
        null_ft = b_ft - proj @ b_ft
        omega = np.linalg.lstsq(pred["null"], null_ft, rcond=None)[0]
        assert np.linalg.norm(pred["null"] @ omega - null_ft) < 1e-8
        # the conservation law: one scalar equation, on the flow's and on the engine's end point
        assert abs(pred["constraint"]) < 1e-8
        engine = omega @ pred["conserved"] @ omega + (omega @ omega) ** 2 - pred["b"]
        # (the discrete steps' drift of W_1^T W_1 - w w^T: measured 3e-3 b - 5e-3 b)
        assert abs(engine) < 1e-2 * pred["b"], engine
        # the end point of the (k+1) x k flow, and not the start's readout
        assert np.linalg.norm(b_ft - pred["beta"]) < 3e-3
        omega0 = np.linalg.svd(start.weights[0][r].numpy(), full_matrices=False)[2][:k] @ start.weights[1][r].numpy()
        assert np.linalg.norm(pred["beta"] - (target.minimiser[r].numpy() + pred["null"] @ omega0)) > 1e-2
        if k == 1:
            assert pred["omega_closed"] == pytest.approx(pred["omega"][0], rel=1e-7)
            assert omega[0] == pytest.approx(pred["omega_closed"], rel=3e-3)


def test_k_1_balanced_start_is_the_root_equation_of_ft_exact():
    """With the pretrained readout (balanced, |F_0| = 1, omega_0 = 1) the k = 1 quadratic in
    x = omega^2 is x^2 - a x - b = 0, the L = 2 root equation c^4 - a c^2 - b = 0 of
    ft.transferability_exact in x = c^2: checked on a synthetic balanced two-layer start."""
    rng = np.random.default_rng(0)
    d, n = 40, 20
    x = rng.standard_normal((n, d))
    proj = np.linalg.pinv(x) @ x
    beta_s = rng.standard_normal(d)
    beta_s /= np.linalg.norm(beta_s)
    beta_sc = np.linalg.pinv(x) @ (x @ rng.standard_normal(d) / np.sqrt(d) + 0.3 * rng.standard_normal(n))
    w1 = beta_s[:, None] * np.eye(1, 5)  # d x m, rank one, |F_0| = 1, readout e_1: balanced
    out = mo.trunk_end_point(torch.as_tensor(w1), torch.as_tensor(np.eye(1, 5)[0]), torch.as_tensor(proj),
                             torch.as_tensor(beta_sc), 1)
    a = float(beta_s @ (np.eye(d) - proj) @ beta_s)
    b = float(beta_sc @ beta_sc)
    c2 = (a + np.sqrt(a * a + 4 * b)) / 2  # positive root of c^4 - a c^2 - b in c^2
    assert out["omega_closed"] ** 2 == pytest.approx(c2, rel=1e-12)
    assert out["omega"][0] ** 2 == pytest.approx(c2, rel=1e-7)


def test_deeper_trunk_fine_tunes_and_keeps_the_null_space_structure(seed, one_thread):
    """L = 3 (simulation only): the end point interpolates and its null-space part stays in
    (I - P) span B_s (the first layer's gradient lies in the row space of X)."""
    opts = EngineOptions(solver="whitened", init_scale=1e-2)
    teachers, target, start, beta = _run(2, 2, seed + 41, options=opts, depth=3, dim=40)
    for r in range(beta.shape[0]):
        proj = target.projector[r].numpy()
        b_ft = beta[r].numpy()
        assert np.linalg.norm(proj @ b_ft - target.minimiser[r].numpy()) < 1e-4
        src = teachers.source[r].numpy()  # d x k
        null_basis = src - proj @ src
        null_ft = b_ft - proj @ b_ft
        coef = np.linalg.lstsq(null_basis, null_ft, rcond=None)[0]
        # the trunk is span B_s up to its O(init_scale) residue
        assert np.linalg.norm(null_basis @ coef - null_ft) < 0.05 * np.linalg.norm(null_ft)


def test_bad_input_is_named():
    w = [torch.zeros(2, 5, 3)]
    with pytest.raises(ValueError, match="L must be"):
        mo.trunk_start(w, None, WHITENED)
    with pytest.raises(ValueError, match="rank"):
        mo.trunk_end_point(torch.eye(4, 3), torch.ones(3), torch.eye(4), torch.ones(4), 0)
