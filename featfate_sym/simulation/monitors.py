"""Monitors of deep linear training: conserved quantities and pretrained features.

Conserved quantities (SPEC section 2; Arora et al. 2018, Du et al. 2018): for any loss of
``beta = W_1 ... W_L`` alone, gradient flow conserves ``D_l = W_l^T W_l - W_{l+1}
W_{l+1}^T`` (``l = 1..L-1``; for the readout vector ``W_L W_L^T`` is an outer product).
Gradient descent with step ``eta`` breaks it by exactly

    ``D_l(k+1) - D_l(k) = eta^2 (G_l^T G_l - G_{l+1} G_{l+1}^T)``

because the first-order terms cancel (``W_l^T G_l = G_{l+1} W_{l+1}^T``).
:class:`DriftMonitor` sums the right-hand side over the steps of a run so that it can be
compared with the measured ``D_l(end) - D_l(0)``.

Pretrained features (paper Thm 3.4): ``W_1 ... W_{L-1} -> beta_s v^T``, rank one with
scale ``|beta_s|^((L-1)/L)``; :func:`feature_spectrum` returns the singular values and
the alignment ``|u_1 . beta_s|`` of the top left singular vector.
"""

from __future__ import annotations

import torch

__all__ = ["conserved_quantities", "feature_map", "feature_spectrum", "DriftMonitor"]


def _outer_or_gram(w: torch.Tensor, side: str) -> torch.Tensor:
    if w.dim() == 2:  # readout vector (R, m): W_L W_L^T
        return w.unsqueeze(-1) * w.unsqueeze(-2)
    return w.mT @ w if side == "left" else w @ w.mT


def conserved_quantities(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[D_1, ..., D_{L-1}]``, each ``(R, d_l, d_l)``."""
    out = []
    for l in range(len(weights) - 1):
        out.append(_outer_or_gram(weights[l], "left") - _outer_or_gram(weights[l + 1], "right"))
    return out


def feature_map(weights: list[torch.Tensor]) -> torch.Tensor | None:
    """``W_1 ... W_{L-1}`` per replicate (``None`` for ``L = 1``: identity features)."""
    if len(weights) == 1:
        return None
    out = weights[0]
    for w in weights[1:-1]:
        out = out @ w
    return out


def feature_spectrum(weights: list[torch.Tensor], source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values of the feature map (``(R, k)``, descending) and ``|u_1 . beta_s|``."""
    fmap = feature_map(weights)
    if fmap is None:
        raise ValueError("L must be >= 2 for a feature map (got L = 1)")
    u, svals, _ = torch.linalg.svd(fmap.to(torch.float64), full_matrices=False)
    src = source.to(torch.float64).to(u.device)
    src = src / src.norm(dim=-1, keepdim=True)
    align = (u[..., :, 0] * src).sum(-1).abs()
    return svals.cpu(), align.cpu()


class DriftMonitor:
    """Accumulates the predicted drift ``sum_k eta_k^2 (G_l^T G_l - G_{l+1} G_{l+1}^T)``.

    Pass it as ``monitor=`` to :func:`~featfate_sym.simulation.training.gradient_descent`
    (it receives the per-replicate step and the dense layer gradients of each step), then
    compare :attr:`predicted` with ``conserved_quantities(final) - initial``.
    """

    def __init__(self, weights: list[torch.Tensor]):
        self.initial = [d.clone() for d in conserved_quantities(weights)]
        self.predicted = [torch.zeros_like(d) for d in self.initial]
        self.steps = 0

    def __call__(self, eta: torch.Tensor, grads: list[torch.Tensor]) -> None:
        e2 = (eta * eta).view(-1, 1, 1)
        for l in range(len(grads) - 1):
            term = _outer_or_gram(grads[l], "left") - _outer_or_gram(grads[l + 1], "right")
            self.predicted[l] += e2 * term
        self.steps += 1

    def measured(self, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """``D_l(now) - D_l(start)``."""
        return [d - d0 for d, d0 in zip(conserved_quantities(weights), self.initial)]
