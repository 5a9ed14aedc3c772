"""Linear transfer: refit the readout on frozen pretrained features, in closed form.

Problem (SPEC section 1, paper Thm 3.7 and 3.8): with the feature map
``F_map = W_1 ... W_{L-1}`` (``d x m``; the identity when ``L = 1``) frozen, minimise
``(1/n)|y - X F_map w|^2 + lam |w|^2`` over the readout ``w``; the end-to-end vector is
``beta = F_map w``.

Order of limits.  The theory takes the initialisation scale ``alpha -> 0`` *before*
anything else: the pretrained feature map is then exactly rank one, ``beta_s v^T``.  At
finite ``alpha`` it is rank one plus residue of size ``O(alpha)`` (singular values about
``1, 2 alpha, 2 alpha, ...``), and at ``lam = 0`` an exact pseudo-inverse uses those
residual directions, each rescaled by ``1/alpha``, to fit the label noise: the naive
solution is the minimum-norm interpolator on a nearly isotropic, badly scaled feature
set, not the theory's one-feature fit.

Rank rule.  Keep the singular directions of ``F_map`` with singular value
``s_i > rank_tol * s_1``, with ``rank_tol = sqrt(alpha)`` by default.  A direction the
pretraining learned grows from ``O(alpha)`` to ``O(|beta_s|^((L-1)/L)) = O(1)``; a
direction it did not learn stays ``O(alpha)`` (small-initialisation gradient flow on a
rank-one teacher grows one direction; the rest of the weights move by ``O(alpha)``).
The geometric mean ``sqrt(alpha)`` sits a factor ``1/sqrt(alpha)`` (about 300 at
``alpha = 1e-5``) away from both groups, so the rule is insensitive to the O(1) factors
in either; it gives rank one for the pretrained networks of the paper and full rank for
``L = 1`` (identity features).  The problem is then solved exactly (``lam = 0`` is a true
least-squares fit, not a tiny ridge) in the coordinates ``c = V_r^T w`` of the kept
subspace, where the Gram matrix ``S_r U_r^T Sxx U_r S_r`` has singular values bounded
below by the kept ``s_i``; the minimum-norm solution is taken if it is singular.

``k`` source tasks.  A network pretrained on ``k`` sources at once
(:mod:`featfate_sym.simulation.multi_output`) has a trunk of rank ``k`` (``span B_s``)
plus the same ``O(alpha)`` residue; the rule keeps the ``k`` learned directions (their
singular values are ``sigma_i(B_s)^((L-1)/L)``, ``sigma_min(B_s) = sin theta`` for sources
at angle ``theta`` to the target), so the fit is least squares on the ``k`` features
``X Q`` (``Q`` an orthonormal basis of ``span B_s``), and ``rank`` reports ``k``.  With
anisotropic inputs nothing changes: ``Sxx`` is the empirical second moment of the
anisotropic design.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from featfate_sym.simulation.tasks import RegressionData

__all__ = ["ReadoutFit", "leading_singular", "naive_is_least_squares", "refit_readout"]


@dataclass
class ReadoutFit:
    """Linear-transfer solutions per replicate (float64, CPU).

    ``beta``: end-to-end vector with the rank rule (the theory's ``alpha -> 0`` first);
    ``beta_naive``: with every singular direction kept (plain pseudo-inverse / ridge);
    ``rank``: the number of kept feature directions.
    """

    beta: torch.Tensor
    beta_naive: torch.Tensor
    rank: torch.Tensor


def leading_singular(
    matrix: torch.Tensor, rank_tol: float, *, tol: float = 1e-13, max_iter: int = 50
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left singular vectors and values of a batch ``(R, d, m)`` of matrices, as many as
    the rank rule needs: every ``s_i > rank_tol * s_1`` and at least one below it.

    Subspace iteration on ``M M^T`` from a fixed start (a private generator, so neither the
    global random state nor the result depends on anything else), with a Rayleigh-Ritz
    step each round.  It stops when every kept triplet has residual
    ``|M v_i - s_i u_i| <= tol * s_1``; by the gap theorem its directions are then within
    ``tol * s_1 / (s_i - s_(q+1))`` of the exact ones, about ``tol`` for the rank-k-plus-
    ``O(alpha)`` feature maps of small-initialisation pretraining, whose gap is the whole
    ``s_k``.  The directions left out are certified below the threshold by the Frobenius
    norm of the deflated matrix, ``s_(k+1) <= |M - U_k U_k^T M|_F <= rank_tol s_1`` (for
    those feature maps about ``alpha sqrt(m)`` against ``sqrt(alpha)``).  If ``q`` columns
    do not reach below the threshold, or the certificate fails, ``q`` doubles; past half
    the rank, or without convergence in ``max_iter`` rounds, it is the full SVD.
    Returns ``(u, s)`` with ``u`` of shape ``(R, d, q)`` and ``s`` ``(R, q)``, descending.
    """
    replicates, dim, width = matrix.shape
    full = min(dim, width)
    total_sq = (matrix * matrix).sum((-2, -1))
    q = min(8, full)
    start = torch.Generator().manual_seed(0)
    while 2 * q <= full:
        omega = torch.randn(width, q, generator=start, dtype=matrix.dtype)
        basis = torch.linalg.qr(matrix @ omega).Q
        for _ in range(max_iter):
            basis = torch.linalg.qr(matrix @ (matrix.transpose(-1, -2) @ basis)).Q
            small_u, svals, vh = torch.linalg.svd(basis.transpose(-1, -2) @ matrix, full_matrices=False)
            u = basis @ small_u
            keep = svals > rank_tol * svals[:, :1]
            residual = (matrix @ vh.transpose(-1, -2) - u * svals.unsqueeze(1)).norm(dim=1)
            if bool((residual[keep] <= tol * svals[:, :1].expand_as(svals)[keep]).all()):
                break
        else:
            break  # no convergence: the full SVD below
        # certificate for the directions left out: s_(k+1)(M) <= |M - U_k U_k^T M|_2 <=
        # |M - U_k U_k^T M|_F = sqrt(|M|_F^2 - sum_(i <= k) s_i^2) (U_k^T M = S_k V_k^T
        # exactly), so below the threshold no true singular value there is kept by the rule
        # (a Ritz value below it would not prove that: Ritz values under-estimate)
        kept_sq = torch.where(keep, svals * svals, torch.zeros_like(svals)).sum(-1)
        left_out = (total_sq - kept_sq).clamp_min(0).sqrt()
        if not bool(keep[:, -1].any()) and bool((left_out <= rank_tol * svals[:, 0]).all()):
            return u, svals
        q *= 2
    u, svals, _ = torch.linalg.svd(matrix, full_matrices=False)
    return u, svals


def naive_is_least_squares(feature_map: torch.Tensor, data: RegressionData) -> torch.Tensor:
    """Per replicate, whether the plain pseudo-inverse readout is certified to be the
    least-squares fit in input space, ``F_map (X F_map)^+ y = X^+ y`` (``data.minimiser``).

    The reverse-order law ``(A B)^+ = B^+ A^+`` holds for ``A`` of full column rank and
    ``B`` of full row rank; with ``n >= d`` and a square feature map (``m = d``) both hold
    when ``X F_map`` has full column rank, and then ``F_map (X F_map)^+ y = F_map F_map^(-1)
    X^+ y = X^+ y``.  gelsd keeps every direction of ``X F_map`` with singular value above
    its cutoff ``max(n, m) eps s_max``; this returns ``True`` where every singular value is
    certified above twice that cutoff by ``s_min(X F) >= sqrt(n lambda_min(Sxx)) /
    |F_map^(-1)|_F`` and ``s_max(X F) <= sqrt(n lambda_max(Sxx)) |F_map|_F`` (the factor 2
    covers the rounding of the computed inverse, relative ``kappa eps``), so gelsd's
    solution is the least-squares one.  Small-initialisation feature maps (singular values
    ``1`` and ``O(alpha)``) pass with orders of magnitude to spare; anything else
    (``n < d``, a non-square or singular map) returns ``False`` and is solved by gelsd.
    """
    replicates, dim = data.sxy.shape
    if feature_map.shape[-1] != dim or data.bottom_eigenvalue is None or data.n_samples < dim:
        return torch.zeros(replicates, dtype=torch.bool)
    n = data.n_samples
    inverse, info = torch.linalg.inv_ex(feature_map)
    inv_norm = torch.where(info == 0, inverse.flatten(1).norm(dim=-1), torch.inf)
    low = (n * data.bottom_eigenvalue.clamp_min(0.0)).sqrt() / inv_norm
    high = (n * data.top_eigenvalue).sqrt() * feature_map.flatten(1).norm(dim=-1)
    cutoff = max(n, dim) * torch.finfo(torch.float64).eps * high
    return torch.isfinite(low) & (low > 2 * cutoff)


def refit_readout(
    feature_map: torch.Tensor | None,
    data: RegressionData,
    lam: float,
    *,
    rank_tol: float,
) -> ReadoutFit:
    """Closed-form ridge readout on frozen features (see the module docstring).

    ``feature_map`` is ``(R, d, m)`` or ``None`` for the identity (``L = 1``); ``data``
    must be float64 and carry the design matrix (``sample_regression(...,
    keep_design=True)``).
    """
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0 (got {lam})")
    if not 0 < rank_tol < 1:
        raise ValueError(f"rank_tol must be in (0, 1) (got {rank_tol})")
    if data.design is None or data.sxx is None:
        raise ValueError("linear transfer needs a finite data set with its design matrix")
    sxx, sxy = data.sxx, data.sxy
    replicates, dim = sxy.shape
    if feature_map is None:
        # identity features (L = 1): every direction is kept, no decomposition needed
        u = torch.eye(dim, dtype=torch.float64).expand(replicates, dim, dim)
        svals = torch.ones(replicates, dim, dtype=torch.float64)
        feature_map = u
    else:
        feature_map = feature_map.to(torch.float64).cpu()
        u, svals = leading_singular(feature_map, rank_tol)
    eye = torch.eye(dim, dtype=torch.float64)

    betas, ranks = [], []
    for r in range(replicates):
        keep = int((svals[r] > rank_tol * svals[r, 0]).sum())
        ur = u[r, :, :keep] * svals[r, :keep]  # U_r S_r, d x r
        gram = ur.T @ sxx[r] @ ur
        rhs = ur.T @ sxy[r]
        if lam > 0:
            c = torch.linalg.solve(gram + lam * eye[:keep, :keep], rhs)
        else:
            c = torch.linalg.pinv(gram, hermitian=True) @ rhs
        betas.append(ur @ c)
        ranks.append(keep)

    # naive: all directions of F = X F_map (the minimum-norm least-squares fit at lam = 0 by
    # LAPACK's SVD solver gelsd, with the pseudo-inverse's cutoff max(n, m) eps: the
    # pseudo-inverse's solution without forming it; the faster QR solvers are either
    # unsafe for rank-deficient F (gels) or not bit-for-bit reproducible (gelsy), except
    # where the reverse-order law certifies that it is X^+ y (naive_is_least_squares)
    if lam > 0:
        feats = data.design @ feature_map
        n, m = data.n_samples, feats.shape[-1]
        gram = feats.transpose(-1, -2) @ feats / n + lam * torch.eye(m, dtype=torch.float64)
        w = torch.linalg.solve(gram, feats.transpose(-1, -2) @ data.labels.unsqueeze(-1) / n)
        naives = (feature_map @ w).squeeze(-1)
    else:
        naives = data.minimiser.clone()
        rest = ~naive_is_least_squares(feature_map, data)
        if bool(rest.any()):
            feats = data.design[rest] @ feature_map[rest]
            w = torch.linalg.lstsq(feats, data.labels[rest].unsqueeze(-1), driver="gelsd").solution
            naives[rest] = (feature_map[rest] @ w).squeeze(-1)
    return ReadoutFit(
        beta=torch.stack(betas),
        beta_naive=naives,
        rank=torch.tensor(ranks, dtype=torch.int64),
    )
