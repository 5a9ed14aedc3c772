"""Teachers, target data and their sufficient statistics, batched over replicates.

Model (SPEC section 1; Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Sec. 2): inputs
``x ~ N(0, I_d)``; unit teachers ``beta_s`` and ``beta_t = cos(theta) beta_s +
sin(theta) nu`` with ``nu`` a unit vector orthogonal to ``beta_s``; labels
``y = beta . x + noise_std * eps``.  Every tensor carries the independent replicates on
a leading axis of size ``R``.

Gradient descent on the empirical loss ``(1/n)|y - X beta|^2`` needs the data only
through ``Sxx = X^T X / n``, ``Sxy = X^T y / n`` and ``(1/n)|y|^2``, so a training step
costs the same whatever ``n``.  The least-squares minimiser (minimum norm) and the top
eigenvalue of ``Sxx`` are computed once per data set, in float64, from an
eigendecomposition: they give the convergence criterion and the curvature scale of the
adaptive step (see :mod:`featfate_sym.simulation.training`).  The same decomposition
gives the projector onto the row space of ``X``, from which :func:`whitened` forms the
whitened loss ``|P beta - beta*|^2`` (the loss of the ``whitened`` solver, see
:mod:`featfate_sym.simulation.deep_linear`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "Teachers",
    "RegressionData",
    "make_teachers",
    "sample_regression",
    "population_data",
    "whitened",
    "risk",
]


@dataclass(frozen=True)
class Teachers:
    """Source and target teachers, each of shape ``(R, d)``, unit norm."""

    source: torch.Tensor
    target: torch.Tensor


@dataclass(frozen=True)
class RegressionData:
    """Sufficient statistics of one regression data set per replicate.

    ``design`` keeps ``X`` itself (shape ``(R, n, d)``) for procedures that need the raw
    feature matrix (the naive pseudo-inverse of linear transfer); ``None`` for the
    population loss.  ``sxx is None`` means the identity (population loss, unit input
    covariance), which the training loop uses to skip a matrix-vector product.
    ``projector`` is the orthogonal projector onto the row space of ``X`` (the range of
    ``Sxx``), ``None`` where that is the whole space (``n >= d``, or the population loss).
    """

    sxx: torch.Tensor | None  # (R, d, d) or None = identity
    sxy: torch.Tensor  # (R, d)
    yy: torch.Tensor  # (R,)  (1/n)|y|^2
    minimiser: torch.Tensor  # (R, d) minimum-norm least-squares solution
    min_loss: torch.Tensor  # (R,) least-squares minimum of the loss
    top_eigenvalue: torch.Tensor  # (R,) largest eigenvalue of Sxx
    n_samples: int
    design: torch.Tensor | None = None  # (R, n, d)
    labels: torch.Tensor | None = None  # (R, n)
    projector: torch.Tensor | None = None  # (R, d, d) or None = identity


def make_teachers(
    replicates: int, dim: int, theta: float, generator: torch.Generator
) -> Teachers:
    """Random unit teachers at angle ``theta`` (float64, CPU).

    ``beta_s`` is uniform on the sphere; ``nu`` is a Gaussian vector with its
    ``beta_s`` component removed, normalised (Gram-Schmidt), so ``beta_s . beta_t =
    cos(theta)`` exactly up to rounding.
    """
    if dim < 2:
        raise ValueError(f"d must be an integer >= 2 (got {dim})")
    source = torch.randn(replicates, dim, generator=generator, dtype=torch.float64)
    source = source / source.norm(dim=-1, keepdim=True)
    nu = torch.randn(replicates, dim, generator=generator, dtype=torch.float64)
    nu = nu - (nu * source).sum(-1, keepdim=True) * source
    nu = nu / nu.norm(dim=-1, keepdim=True)
    target = math.cos(theta) * source + math.sin(theta) * nu
    return Teachers(source=source, target=target)


def _statistics(design: torch.Tensor, labels: torch.Tensor, keep_design: bool) -> RegressionData:
    """Sufficient statistics, minimum-norm minimiser and top curvature (float64)."""
    n = design.shape[-2]
    dim = design.shape[-1]
    sxx = design.mT @ design / n
    sxy = (design.mT @ labels.unsqueeze(-1)).squeeze(-1) / n
    yy = (labels * labels).sum(-1) / n
    evals, evecs = torch.linalg.eigh(sxx)
    top = evals[..., -1]
    # Numerical rank of X^T X / n: eigenvalues below the rounding level of the largest
    # one are zero (numpy.linalg.matrix_rank's rule); the null space holds no signal.
    cutoff = top.unsqueeze(-1) * max(n, dim) * torch.finfo(torch.float64).eps
    kept = evals > cutoff
    inv = torch.where(kept, 1.0 / evals.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    coeff = (evecs.mT @ sxy.unsqueeze(-1)).squeeze(-1) * inv
    minimiser = (evecs @ coeff.unsqueeze(-1)).squeeze(-1)
    min_loss = (yy - (minimiser * sxy).sum(-1)).clamp_min(0.0)
    projector = None
    if not bool(kept.all()):
        basis = evecs * kept.unsqueeze(-2)
        projector = basis @ basis.mT
    return RegressionData(
        sxx=sxx,
        sxy=sxy,
        yy=yy,
        minimiser=minimiser,
        min_loss=min_loss,
        top_eigenvalue=top,
        n_samples=n,
        design=design if keep_design else None,
        labels=labels if keep_design else None,
        projector=projector,
    )


def sample_regression(
    teacher: torch.Tensor,
    n_samples: int,
    noise_std: float,
    generator: torch.Generator,
    *,
    keep_design: bool = True,
) -> RegressionData:
    """Gaussian design ``X`` (``n_samples x d`` per replicate), ``y = X beta + noise``.

    Drawn in float64 on the CPU so the numbers do not depend on the device.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1 (got {n_samples})")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0 (got {noise_std})")
    replicates, dim = teacher.shape
    design = torch.randn(replicates, n_samples, dim, generator=generator, dtype=torch.float64)
    noise = torch.randn(replicates, n_samples, generator=generator, dtype=torch.float64)
    labels = (design @ teacher.unsqueeze(-1)).squeeze(-1) + noise_std * noise
    return _statistics(design, labels, keep_design)


def population_data(teacher: torch.Tensor) -> RegressionData:
    """The population loss ``|beta - teacher|^2`` (unit input covariance, noise dropped).

    Label noise only adds the constant ``sigma^2`` to the population loss, which
    changes no gradient, so it is left out.
    """
    replicates = teacher.shape[0]
    return RegressionData(
        sxx=None,
        sxy=teacher,
        yy=(teacher * teacher).sum(-1),
        minimiser=teacher,
        min_loss=torch.zeros(replicates, dtype=teacher.dtype),
        top_eigenvalue=torch.ones(replicates, dtype=teacher.dtype),
        n_samples=0,
    )


def whitened(data: RegressionData) -> RegressionData:
    """The whitened problem of ``data``: the loss ``|P beta - beta*|^2`` (``P`` the
    projector onto the row space, ``beta*`` the minimum-norm minimiser), written as
    regression statistics ``Sxx = P``, ``Sxy = beta*``, ``(1/n)|y|^2 = |beta*|^2``.

    Its gradient is ``Sxx^+`` times the gradient of the original loss (``2 (Sxx beta -
    Sxy) = 2 Sxx (beta - beta*)`` and ``Sxx^+ Sxx = P``); it has the same minimisers
    (``P beta = beta*``), and every nonzero curvature is 1.  ``min_loss`` is 0 and
    ``top_eigenvalue`` 1.  The population loss is already whitened and is returned as is.
    """
    if data.sxx is None:
        return data
    beta = data.minimiser
    return RegressionData(
        sxx=data.projector,
        sxy=beta,
        yy=(beta * beta).sum(-1),
        minimiser=beta,
        min_loss=torch.zeros_like(data.min_loss),
        top_eigenvalue=torch.ones_like(data.top_eigenvalue),
        n_samples=data.n_samples,
    )


def to_device(data: RegressionData, device: torch.device | str, dtype: torch.dtype) -> RegressionData:
    """A copy of ``data`` on ``device`` in ``dtype`` (the design stays float64 on the CPU)."""

    def move(x):
        return None if x is None else x.to(device=device, dtype=dtype)

    return RegressionData(
        sxx=move(data.sxx),
        sxy=move(data.sxy),
        yy=move(data.yy),
        minimiser=move(data.minimiser),
        min_loss=move(data.min_loss),
        top_eigenvalue=move(data.top_eigenvalue),
        n_samples=data.n_samples,
        design=data.design,
        labels=data.labels,
        projector=move(data.projector),
    )


def risk(beta: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Noise-free generalisation error ``|beta - beta_t|^2`` per replicate (exact, since
    ``x ~ N(0, I)``: ``E (beta.x - beta_t.x)^2 = |beta - beta_t|^2``)."""
    diff = beta.to(torch.float64).cpu() - teacher.to(torch.float64).cpu()
    return (diff * diff).sum(-1)
