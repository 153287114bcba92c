"""The per-layer Gaussian target N(mu, Sigma), fitted on pooled features of average faces.

Sigma is estimated with Ledoit-Wolf shrinkage (scikit-learn): M averages drawn from one pool
of faces are strongly correlated, and d (channels) can approach M, so the sample covariance
is near-singular. The Cholesky factor L is computed once and stored; its inverse is derived
from it in float64 whenever the factor is set or loaded, so scoring a batch is one float32
matmul — no inverse or solve per batch, and a graph ONNX can export (it has no triangular solve).
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
        self.register_buffer("chol_inv", torch.eye(dim), persistent=False)  # derived, never saved

    def refresh(self) -> None:
        """Recompute L^-1 from L (float64, then float32)."""
        inv = torch.linalg.solve_triangular(self.chol.double(), torch.eye(self.dim, dtype=torch.float64, device=self.chol.device), upper=False)
        self.chol_inv.copy_(inv.to(self.chol_inv.dtype))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.refresh()

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
        target.refresh()
        return target

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    def mahalanobis2(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each row of (B, d) ``x``."""
        white = (x - self.mu) @ self.chol_inv.T  # rows of L^-1 (x - mu)
        return (white * white).sum(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        half_logdet = torch.log(torch.diagonal(self.chol)).sum()
        return -0.5 * self.mahalanobis2(x) - half_logdet - 0.5 * self.dim * math.log(2 * math.pi)
