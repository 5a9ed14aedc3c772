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

__all__ = ["ReadoutFit", "refit_readout"]


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
        feature_map = torch.eye(dim, dtype=torch.float64).expand(replicates, dim, dim)
    feature_map = feature_map.to(torch.float64).cpu()
    u, svals, _ = torch.linalg.svd(feature_map, full_matrices=False)
    n = data.n_samples

    betas, naives, ranks = [], [], []
    for r in range(replicates):
        keep = int((svals[r] > rank_tol * svals[r, 0]).sum())
        ur = u[r, :, :keep] * svals[r, :keep]  # U_r S_r, d x r
        gram = ur.T @ sxx[r] @ ur
        rhs = ur.T @ sxy[r]
        if lam > 0:
            c = torch.linalg.solve(gram + lam * torch.eye(keep, dtype=torch.float64), rhs)
        else:
            c = torch.linalg.pinv(gram, hermitian=True) @ rhs
        betas.append(ur @ c)
        ranks.append(keep)

        # naive: all directions of F = X F_map (the pseudo-inverse at lam = 0)
        feats = data.design[r] @ feature_map[r]
        y = data.labels[r]
        if lam > 0:
            m = feats.shape[1]
            w = torch.linalg.solve(feats.T @ feats / n + lam * torch.eye(m, dtype=torch.float64), feats.T @ y / n)
        else:
            w = torch.linalg.pinv(feats) @ y
        naives.append(feature_map[r] @ w)
    return ReadoutFit(
        beta=torch.stack(betas),
        beta_naive=torch.stack(naives),
        rank=torch.tensor(ranks, dtype=torch.int64),
    )
