"""The engine's cheaper linear algebra is the same algebra: data statistics from the
``n x n`` Gram matrix, descent in the row space of the design, and the readout's leading
singular directions.

Each check compares with the direct dense computation (pseudo-inverse, full SVD, descent
of the full ``d x m`` layer at the same fixed steps) on the same draws; the tolerances
are rounding levels (a few hundred ulps of the quantities compared), far below any
statistical effect and far above what a wrong formula would give (O(1)).
"""

from __future__ import annotations

import math

import pytest
import torch

from featfate_sym.simulation import tasks
from featfate_sym.simulation.readout import leading_singular, refit_readout
from featfate_sym.simulation.training import gradient_descent, small_init


def _data(n, d, replicates=3, seed=5, noise=0.3):
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(replicates, d, generator=gen, dtype=torch.float64)
    teacher = teacher / teacher.norm(dim=-1, keepdim=True)
    return tasks.sample_regression(teacher, n, noise, gen), gen


@pytest.mark.parametrize("n, d", [(7, 12), (12, 12), (20, 12)])
def test_statistics_match_the_pseudo_inverse(n, d):
    data, _ = _data(n, d)
    for r in range(3):
        x, y = data.design[r], data.labels[r]
        pinv = torch.linalg.pinv(x)
        torch.testing.assert_close(data.minimiser[r], pinv @ y, rtol=0, atol=1e-10)
        top = torch.linalg.eigvalsh(x.T @ x / n)[-1]
        torch.testing.assert_close(data.top_eigenvalue[r], top, rtol=1e-12, atol=0)
        if n < d:
            q = data.basis[r]
            torch.testing.assert_close(q.T @ q, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-12)
            torch.testing.assert_close(data.projector[r], pinv @ x, rtol=0, atol=1e-12)
            torch.testing.assert_close(q.T @ data.sxx[r] @ q, torch.diag(data.basis_eigenvalues[r]),
                                       rtol=0, atol=1e-12)
        else:
            assert data.projector is None and data.basis is None


def test_rank_deficient_design_keeps_the_pseudo_inverse():
    """Repeated rows: rank 4 < n = 6 < d = 10; the dead basis columns are zero."""
    data, gen = _data(6, 10, replicates=1)
    design = data.design.clone()
    design[:, 4:] = design[:, :2]
    labels = (design @ torch.randn(1, 10, 1, generator=gen, dtype=torch.float64)).squeeze(-1)
    stats = tasks._statistics(design, labels, keep_design=True)
    torch.testing.assert_close(stats.minimiser[0], torch.linalg.pinv(design[0]) @ labels[0], rtol=0, atol=1e-10)
    assert int((stats.basis[0].abs().amax(0) > 0).sum()) == 4
    reduced = tasks.in_row_space(stats)
    assert reduced.projector is not None and int(reduced.projector[0].diagonal().sum()) == 4


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_descent_in_the_row_space_is_the_full_descent(depth):
    """The same fixed steps from the same start: the reduced first layer mapped back equals
    the full first layer, every other layer equals its full counterpart."""
    n, d = 9, 16
    data, gen = _data(n, d)
    start = small_init(3, d, depth, gen, scale=0.3)
    full = [w.clone() for w in start]
    gradient_descent(full, data, tol=1e-30, max_steps=40, step_size=0.05)

    q = data.basis
    first = start[0] if depth > 1 else start[0].unsqueeze(-1)
    reduced = [(q.mT @ first).squeeze(-1) if depth == 1 else q.mT @ first] + [w.clone() for w in start[1:]]
    begin = reduced[0].clone()
    gradient_descent(reduced, tasks.in_row_space(data), tol=1e-30, max_steps=40, step_size=0.05)
    change = q @ (reduced[0] - begin).unsqueeze(-1) if depth == 1 else q @ (reduced[0] - begin)
    back = start[0] + (change.squeeze(-1) if depth == 1 else change)
    torch.testing.assert_close(back, full[0], rtol=0, atol=1e-12)
    for a, b in zip(reduced[1:], full[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_leading_singular_matches_the_full_svd():
    """Rank-2 plus O(alpha) residue (the pretrained trunk's shape), and a flat spectrum
    that forces the doubling and then the full SVD."""
    gen = torch.Generator().manual_seed(3)
    alpha = 1e-5
    low = torch.randn(4, 30, 2, generator=gen, dtype=torch.float64) @ torch.randn(4, 2, 40, generator=gen,
                                                                                  dtype=torch.float64)
    matrix = low + alpha * torch.randn(4, 30, 40, generator=gen, dtype=torch.float64)
    u, s = leading_singular(matrix, math.sqrt(alpha))
    u_full, s_full, _ = torch.linalg.svd(matrix, full_matrices=False)
    keep = 2
    assert s.shape[-1] == 8  # the subspace iteration's answer, not the full SVD's
    assert bool((s[:, keep:] < math.sqrt(alpha) * s[:, :1]).all())
    torch.testing.assert_close(s[:, :keep], s_full[:, :keep], rtol=1e-12, atol=0)
    overlap = (u[:, :, :keep].mT @ u_full[:, :, :keep]).abs()
    torch.testing.assert_close(overlap, torch.eye(keep, dtype=torch.float64).expand(4, -1, -1), rtol=0, atol=1e-10)

    flat = torch.randn(2, 30, 30, generator=gen, dtype=torch.float64)
    u, s = leading_singular(flat, 0.01)
    torch.testing.assert_close(s, torch.linalg.svdvals(flat), rtol=1e-12, atol=0)

    # a tail of 12 directions just below the threshold: each is left out, and their
    # Frobenius sum exceeds the threshold, so the certificate fails and the full SVD decides
    basis, _ = torch.linalg.qr(torch.randn(1, 40, 40, generator=gen, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([1.0]), torch.full((12,), 0.009), torch.full((27,), 1e-6)]).to(torch.float64)
    tail = (basis * spectrum) @ basis.mT
    u, s = leading_singular(tail, 0.01)
    assert s.shape[-1] == 40 and int((s > 0.01 * s[:, :1]).sum()) == 1


def test_refit_readout_is_deterministic_and_matches_the_pseudo_inverse():
    data, gen = _data(8, 12)
    fmap = (torch.randn(3, 12, 1, generator=gen, dtype=torch.float64) @ torch.randn(3, 1, 12, generator=gen,
                                                                                    dtype=torch.float64)
            + 1e-5 * torch.randn(3, 12, 12, generator=gen, dtype=torch.float64))
    first = refit_readout(fmap, data, 0.0, rank_tol=math.sqrt(1e-5))
    again = refit_readout(fmap.clone(), data, 0.0, rank_tol=math.sqrt(1e-5))
    assert torch.equal(first.beta, again.beta) and torch.equal(first.beta_naive, again.beta_naive)
    assert first.rank.tolist() == [1, 1, 1]
    for r in range(3):
        naive = fmap[r] @ torch.linalg.pinv(data.design[r] @ fmap[r]) @ data.labels[r]
        torch.testing.assert_close(first.beta_naive[r], naive, rtol=1e-8, atol=1e-8)
