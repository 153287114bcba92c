"""The per-layer Gaussian target N(mu, Sigma), fitted on pooled features of average faces.

Sigma is estimated with Ledoit-Wolf shrinkage (scikit-learn): M averages drawn from one pool
of faces are strongly correlated, and d (channels) can approach M, so the sample covariance
is near-singular. The Cholesky factor is computed once, stored, and used by triangular
solves in float32 at scoring time — no matrix inverse per batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class GaussianTarget(nn.Module):
    """N(mu, L L^T) with ``log_prob`` for batches of d-vectors."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("chol", torch.eye(dim))
        self.register_buffer("shrinkage", torch.zeros(()))

    @classmethod
    def fit(cls, vectors: np.ndarray) -> "GaussianTarget":
        """Ledoit-Wolf fit on (n, d) vectors."""
        from sklearn.covariance import LedoitWolf

        x = np.asarray(vectors, dtype=np.float64)
        lw = LedoitWolf().fit(x)
        cov = lw.covariance_
        # Ledoit-Wolf is positive definite unless every vector is identical; guard that case.
        cov = cov + np.eye(cov.shape[0]) * max(1e-10, 1e-8 * np.trace(cov) / cov.shape[0])
        target = cls(x.shape[1])
        target.mu.copy_(torch.from_numpy(lw.location_).float())
        target.chol.copy_(torch.from_numpy(np.linalg.cholesky(cov)).float())
        target.shrinkage.fill_(float(lw.shrinkage_))
        return target

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    def mahalanobis2(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each row of (B, d) ``x``."""
        diff = (x - self.mu).T  # (d, B)
        sol = torch.linalg.solve_triangular(self.chol, diff, upper=False)
        return (sol * sol).sum(0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        half_logdet = torch.log(torch.diagonal(self.chol)).sum()
        return -0.5 * self.mahalanobis2(x) - half_logdet - 0.5 * self.dim * math.log(2 * math.pi)
