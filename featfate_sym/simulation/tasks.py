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

Anisotropic inputs (optional; SPEC section 5, "Anisotropic inputs").  ``x ~ N(0,
Sigma)`` with ``Sigma = diag(lambda)`` (without loss of generality: a rotation of the
inputs rotates the teachers with them), drawn as ``X = Z diag(sqrt(lambda))``.  The
teachers are then drawn with an energy profile ``p`` over the eigendirections
(:func:`make_profiled_teachers`), the population loss is ``(beta - beta_s)^T Sigma (beta -
beta_s)`` and the risk the excess test error ``(beta - beta_t)^T Sigma (beta - beta_t)``.
Several source tasks (:func:`make_multi_source_teachers`): ``k`` source teachers at the
same angle ``theta`` to the target.  Without these options every draw is the isotropic
one above, number for number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

__all__ = [
    "Teachers",
    "RegressionData",
    "make_teachers",
    "make_profiled_teachers",
    "make_multi_source_teachers",
    "check_covariance",
    "check_profile",
    "sample_regression",
    "population_data",
    "whitened",
    "in_row_space",
    "risk",
]


@dataclass(frozen=True)
class Teachers:
    """Source and target teachers, unit norm: ``target`` of shape ``(R, d)``, ``source``
    ``(R, d)`` for one source task, or ``(R, d, k)`` (one column per source task) for
    ``k > 1`` (:func:`make_multi_source_teachers`)."""

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
    ``Sxx``), ``None`` where that is the whole space (``n >= d``, or the population loss);
    ``basis`` then holds its orthonormal basis ``Q`` (``(R, d, n)``, ``projector = Q Q^T``;
    a column is zero where ``X`` has fewer than ``n`` independent rows) and
    ``basis_eigenvalues`` the eigenvalues of ``Sxx`` along it (``Q`` are the right
    singular vectors of ``X``, so ``Q^T Sxx Q`` is diagonal), which lets the
    training loop descend in the ``n`` coordinates the loss depends on
    (:func:`in_row_space`).
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
    basis: torch.Tensor | None = None  # (R, d, n) with projector = basis basis^T
    basis_eigenvalues: torch.Tensor | None = None  # (R, n): basis^T Sxx basis = diag(these)
    #: (R,) smallest eigenvalue of ``Sxx`` for a sample with ``n >= d`` (else ``None``)
    bottom_eigenvalue: torch.Tensor | None = None


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


def check_covariance(covariance, dim: int) -> torch.Tensor:
    """The eigenvalues ``lambda`` of the input covariance ``diag(lambda)`` as a float64
    tensor of shape ``(d,)``; ``ValueError`` unless ``covariance`` is a one-dimensional
    array of ``d`` finite positive numbers."""
    values = np.asarray(covariance, dtype=np.float64) if not isinstance(covariance, torch.Tensor) \
        else covariance.detach().to(torch.float64).cpu().numpy()
    if values.ndim != 1 or values.shape[0] != dim:
        raise ValueError(f"covariance must be the {dim} eigenvalues lambda_i of the input covariance "
                         f"(a one-dimensional array of length d = {dim}; got shape {values.shape})")
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"covariance eigenvalues must be finite and > 0 (got min {values.min()!r}, "
                         f"max {values.max()!r})")
    return torch.from_numpy(values.copy())


def check_profile(profile, dim: int, *, support: int = 2) -> torch.Tensor:
    """The teachers' energy profile ``p`` as a float64 tensor of shape ``(d,)``;
    ``ValueError`` unless it has ``d`` finite entries ``>= 0`` summing to 1 (within
    ``1e-9``, rounding of a profile written in decimals) with at least ``support`` of
    them positive (the teachers need that many orthogonal directions)."""
    values = np.asarray(profile, dtype=np.float64) if not isinstance(profile, torch.Tensor) \
        else profile.detach().to(torch.float64).cpu().numpy()
    if values.ndim != 1 or values.shape[0] != dim:
        raise ValueError(f"profile must be the teachers' energy fraction p_i along each of the d = {dim} "
                         f"eigendirections (a one-dimensional array of length d; got shape {values.shape})")
    if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
        raise ValueError("profile entries must be finite and >= 0")
    if abs(values.sum() - 1.0) > 1e-9:
        raise ValueError(f"profile entries must sum to 1 (got sum {values.sum()!r})")
    if int((values > 0).sum()) < support:
        raise ValueError(f"profile must be positive on at least {support} directions (the teachers need "
                         f"{support} orthogonal directions in its support; got {int((values > 0).sum())})")
    return torch.from_numpy(values.copy())


def _profiled_direction(replicates, dim, generator, scale, against=()):
    """``sqrt(p) * g`` (``g`` standard Gaussian), orthogonalised (Euclidean Gram-Schmidt,
    twice for rounding) against the unit vectors ``against`` and normalised."""
    v = torch.randn(replicates, dim, generator=generator, dtype=torch.float64)
    if scale is not None:
        v = scale * v
    for _ in range(2 if against else 0):
        for u in against:
            v = v - (v * u).sum(-1, keepdim=True) * u
    return v / v.norm(dim=-1, keepdim=True)


def make_profiled_teachers(
    replicates: int, dim: int, theta: float, generator: torch.Generator, profile=None
) -> Teachers:
    """Unit teachers at angle ``theta`` with the energy profile ``p`` over the input
    eigendirections (float64, CPU): ``beta_s = sqrt(p) g / |sqrt(p) g|``, ``beta_t =
    cos(theta) beta_s + sin(theta) nu`` with ``nu`` from an independent ``sqrt(p) g'``
    orthogonalised against ``beta_s`` (Euclidean) and normalised.

    ``E beta_i^2`` is proportional to ``p_i`` only approximately at finite ``d`` (the
    normalisation couples the entries); ``p`` uniform (``profile=None``) is the isotropic
    draw of :func:`make_teachers`, the same numbers for the same generator state.
    """
    if dim < 2:
        raise ValueError(f"d must be an integer >= 2 (got {dim})")
    scale = None if profile is None else check_profile(profile, dim).sqrt()
    source = _profiled_direction(replicates, dim, generator, scale)
    nu = torch.randn(replicates, dim, generator=generator, dtype=torch.float64)
    if scale is not None:
        nu = scale * nu
    nu = nu - (nu * source).sum(-1, keepdim=True) * source
    if scale is not None:
        # a second pass: a concentrated profile can leave an O(eps |nu . beta_s|) overlap
        nu = nu - (nu * source).sum(-1, keepdim=True) * source
    nu = nu / nu.norm(dim=-1, keepdim=True)
    target = math.cos(theta) * source + math.sin(theta) * nu
    return Teachers(source=source, target=target)


def make_multi_source_teachers(
    replicates: int, dim: int, theta: float, tasks: int, generator: torch.Generator, profile=None
) -> Teachers:
    """A unit target teacher and ``k = tasks`` unit source teachers, each at angle
    ``theta`` to it and otherwise independent (float64, CPU).

    ``beta_t = sqrt(p) g / |sqrt(p) g|`` is drawn first; then ``xi_1, ..., xi_k`` from
    independent ``sqrt(p) g_j`` by Gram-Schmidt against ``beta_t`` and the previous
    ``xi`` (orthonormal, orthogonal to ``beta_t``); ``beta_s^(j) = cos(theta) beta_t +
    sin(theta) xi_j``.  So ``beta_s^(i) . beta_s^(j) = cos^2 theta`` for ``i != j``, and
    the part of ``beta_t`` outside ``span B_s`` has squared norm ``sin^2 theta / (sin^2
    theta + k cos^2 theta)`` (the Gram matrix of the sources is ``cos^2 theta 1 1^T +
    sin^2 theta I``).  ``source`` has shape ``(R, d, k)``.  ``profile=None``: isotropic.
    """
    if isinstance(tasks, bool) or int(tasks) != tasks or tasks < 1:
        raise ValueError(f"k must be an integer >= 1 (got k = {tasks!r})")
    tasks = int(tasks)
    if dim < tasks + 1:
        raise ValueError(f"k must be <= d - 1 = {dim - 1} (k source directions orthogonal to the target; "
                         f"got k = {tasks})")
    scale = None if profile is None else check_profile(profile, dim, support=tasks + 1).sqrt()
    target = _profiled_direction(replicates, dim, generator, scale)
    basis = [target]
    for _ in range(tasks):
        basis.append(_profiled_direction(replicates, dim, generator, scale, against=tuple(basis)))
    xi = torch.stack(basis[1:], dim=-1)  # (R, d, k)
    source = math.cos(theta) * target.unsqueeze(-1) + math.sin(theta) * xi
    return Teachers(source=source, target=target)


def _statistics(design: torch.Tensor, labels: torch.Tensor, keep_design: bool) -> RegressionData:
    """Sufficient statistics, minimum-norm minimiser and top curvature (float64).

    The numerical rank of ``X^T X / n`` follows numpy.linalg.matrix_rank's rule:
    eigenvalues below ``lambda_max max(n, d) eps`` are zero, and the null space holds no
    signal.  ``n < d``: the nonzero spectrum and the row space come from the ``n x n``
    Gram matrix ``X X^T / n = U diag(lambda) U^T`` (row-space basis ``Q = X^T U
    diag(lambda n)^(-1/2)``), a factor ``(d/n)^3`` cheaper than the ``d x d`` problem.
    ``n >= d``: the eigenvalues alone, and the minimiser by a Cholesky solve when every
    eigenvalue is kept (the generic case); otherwise the full eigendecomposition.
    """
    n = design.shape[-2]
    dim = design.shape[-1]

    def kept_of(evals):  # matrix_rank's rule (ascending eigenvalues: the last is the top)
        return evals > evals[..., -1:] * max(n, dim) * torch.finfo(torch.float64).eps

    sxx = design.mT @ design / n
    sxy = (design.mT @ labels.unsqueeze(-1)).squeeze(-1) / n
    yy = (labels * labels).sum(-1) / n
    projector = basis = bottom = None
    if n < dim:
        evals, u = torch.linalg.eigh(design @ design.mT / n)
        top = evals[..., -1]
        kept = kept_of(evals)
        scale = torch.where(kept, (evals.clamp_min(torch.finfo(torch.float64).tiny) * n).rsqrt(), 0.0)
        basis = design.mT @ (u * scale.unsqueeze(-2))  # (R, d, n), zero columns where not kept
        projector = basis @ basis.mT
        inv = torch.where(kept, 1.0 / evals.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        minimiser = (basis @ ((basis.mT @ sxy.unsqueeze(-1)).squeeze(-1) * inv).unsqueeze(-1)).squeeze(-1)
    else:
        evals = torch.linalg.eigvalsh(sxx)
        top = evals[..., -1]
        kept = kept_of(evals)
        chol, info = torch.linalg.cholesky_ex(sxx)
        if bool(kept.all()) and not bool(info.any()):
            minimiser = torch.cholesky_solve(sxy.unsqueeze(-1), chol).squeeze(-1)
        else:
            evals, evecs = torch.linalg.eigh(sxx)
            kept = kept_of(evals)
            inv = torch.where(kept, 1.0 / evals.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
            coeff = (evecs.mT @ sxy.unsqueeze(-1)).squeeze(-1) * inv
            minimiser = (evecs @ coeff.unsqueeze(-1)).squeeze(-1)
            if not bool(kept.all()):
                kept_basis = evecs * kept.unsqueeze(-2)
                projector = kept_basis @ kept_basis.mT
        bottom = evals[..., 0]
    min_loss = (yy - (minimiser * sxy).sum(-1)).clamp_min(0.0)
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
        basis=basis,
        basis_eigenvalues=None if basis is None else torch.where(kept, evals, 0.0),
        bottom_eigenvalue=bottom,
    )


def in_row_space(data: RegressionData) -> RegressionData:
    """``data`` in the coordinates of its row-space basis ``Q`` (``n < d``): ``Sxx ->
    Q^T Sxx Q``, ``Sxy -> Q^T Sxy``, minimiser ``-> Q^T beta*``, the rest unchanged.

    The loss depends on ``beta`` only through ``Q^T beta`` (``X = X Q Q^T``) and every
    gradient with respect to ``beta`` lies in ``span Q``, so gradient descent on the first
    layer ``W_1`` moves only ``Q^T W_1``: descending ``[Q^T W_1, W_2, ...]`` on these
    statistics and adding ``Q (Q^T W_1)_end - Q (Q^T W_1)_start`` back is the same descent
    on ``n x m`` instead of ``d x m`` (every curvature and gradient norm is the same).
    """
    if data.basis is None or data.basis_eigenvalues is None:
        raise ValueError("in_row_space needs data with a row-space basis (n < d)")
    q = data.basis

    def reduce(v):
        return (v.unsqueeze(-2) @ q).squeeze(-2)

    live = data.basis_eigenvalues > 0  # a zero basis column is a dead coordinate
    return RegressionData(
        sxx=torch.diag_embed(data.basis_eigenvalues),
        sxy=reduce(data.sxy),
        yy=data.yy,
        minimiser=reduce(data.minimiser),
        min_loss=data.min_loss,
        top_eigenvalue=data.top_eigenvalue,
        n_samples=data.n_samples,
        projector=None if bool(live.all()) else torch.diag_embed(live.to(q.dtype)),
    )


def sample_regression(
    teacher: torch.Tensor,
    n_samples: int,
    noise_std: float,
    generator: torch.Generator,
    *,
    keep_design: bool = True,
    covariance=None,
) -> RegressionData:
    """Gaussian design ``X`` (``n_samples x d`` per replicate), ``y = X beta + noise``.

    Drawn in float64 on the CPU so the numbers do not depend on the device.
    ``covariance``: the eigenvalues ``lambda`` of the input covariance ``diag(lambda)``
    (``None``: the identity); the design is ``X = Z diag(sqrt(lambda))`` with ``Z`` the
    standard Gaussian matrix drawn as for the identity (the same draws, in the same order).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1 (got {n_samples})")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0 (got {noise_std})")
    replicates, dim = teacher.shape
    design = torch.randn(replicates, n_samples, dim, generator=generator, dtype=torch.float64)
    if covariance is not None:
        design = design * check_covariance(covariance, dim).sqrt()
    noise = torch.randn(replicates, n_samples, generator=generator, dtype=torch.float64)
    labels = (design @ teacher.unsqueeze(-1)).squeeze(-1) + noise_std * noise
    return _statistics(design, labels, keep_design)


def population_data(teacher: torch.Tensor, covariance=None) -> RegressionData:
    """The population loss ``|beta - teacher|^2`` (unit input covariance, noise dropped),
    or ``(beta - teacher)^T Sigma (beta - teacher)`` for ``covariance = lambda``
    (``Sigma = diag(lambda)``).

    Label noise only adds the constant ``sigma^2`` to the population loss, which
    changes no gradient, so it is left out.  With a covariance the statistics are
    ``Sxx = Sigma`` (dense, one copy per replicate), ``Sxy = Sigma teacher``, minimiser
    ``teacher`` (``Sigma`` is positive definite: the minimiser is unique, so no
    projector), top eigenvalue ``max lambda``; both solvers then apply unchanged (the
    whitened problem of a full-rank ``Sxx`` is ``|beta - teacher|^2``).
    """
    replicates = teacher.shape[0]
    if covariance is not None:
        lam = check_covariance(covariance, teacher.shape[-1]).to(teacher.dtype)
        sxy = lam * teacher
        return RegressionData(
            sxx=torch.diag(lam).expand(replicates, -1, -1).clone(),
            sxy=sxy,
            yy=(teacher * sxy).sum(-1),
            minimiser=teacher,
            min_loss=torch.zeros(replicates, dtype=teacher.dtype),
            top_eigenvalue=torch.full((replicates,), float(lam.max()), dtype=teacher.dtype),
            n_samples=0,
        )
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
        basis=data.basis,
        basis_eigenvalues=None if data.basis is None else (data.basis_eigenvalues > 0).to(beta.dtype),
    )


def select(data: RegressionData, replicates: slice) -> RegressionData:
    """The replicates ``replicates`` of ``data`` (views, no copy)."""
    return replace(data, **{f.name: getattr(data, f.name)[replicates] for f in fields(data)
                            if isinstance(getattr(data, f.name), torch.Tensor)})


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
        basis=move(data.basis),
        basis_eigenvalues=move(data.basis_eigenvalues),
        bottom_eigenvalue=move(data.bottom_eigenvalue),
    )


def risk(beta: torch.Tensor, teacher: torch.Tensor, covariance=None) -> torch.Tensor:
    """Noise-free generalisation error ``|beta - beta_t|^2`` per replicate (exact, since
    ``x ~ N(0, I)``: ``E (beta.x - beta_t.x)^2 = |beta - beta_t|^2``); with
    ``covariance = lambda`` the excess test error ``(beta - beta_t)^T Sigma (beta -
    beta_t)``, ``Sigma = diag(lambda)`` (``E (beta.x - beta_t.x)^2`` for ``x ~ N(0,
    Sigma)``)."""
    diff = beta.to(torch.float64).cpu() - teacher.to(torch.float64).cpu()
    if covariance is None:
        return (diff * diff).sum(-1)
    return (diff * diff * check_covariance(covariance, diff.shape[-1])).sum(-1)
