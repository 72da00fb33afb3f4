"""Gaussian mixtures: data whose noised density, score and ideal denoiser are closed forms.

If x_0 ~ sum_k w_k N(mu_k, Sigma_k), then x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps (Ho et al.
2020, Eq. 4) is again a mixture, with the same weights, means sqrt(ab) mu_k and covariances
ab Sigma_k + (1 - ab) I (a linear map of a Gaussian plus an independent Gaussian). Its score
is grad log p_t(x) = sum_k r_k(x) C_k^{-1} (m_k - x), r_k the posterior responsibilities,
and the ideal eps-prediction E[eps | x_t] = -sqrt(1 - ab) grad log p_t(x_t) (Vincent 2011;
Song et al. 2021, Eq. 13's score). These are the references the samplers, the likelihood
and the score figure are tested against. Float64 throughout; only torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ddpmlab.diffusion import Denoiser


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """weights (K,), means (K, D), covs (K, D, D), float64."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    @classmethod
    def isotropic(cls, means: Any, std: Any,
                  weights: Any = None) -> GaussianMixture:
        """Components N(means[k], diag(std^2)), equal weights unless given; std a scalar or
        one per dimension."""
        m = torch.as_tensor(means, dtype=torch.float64)
        m = m[None] if m.ndim == 1 else m
        s = torch.as_tensor(std, dtype=torch.float64).expand(m.shape[1])
        w = (torch.full((len(m),), 1.0 / len(m), dtype=torch.float64) if weights is None
             else torch.as_tensor(weights, dtype=torch.float64))
        return cls(w / w.sum(), m, torch.diag_embed(s.square()).expand(len(m), -1, -1).clone())

    @property
    def dims(self) -> int:
        return int(self.means.shape[1])

    def affine(self, shift: Any, scale: Any) -> GaussianMixture:
        """The law of (x - shift) / scale (per coordinate), e.g. the standardised data."""
        a = torch.as_tensor(shift, dtype=torch.float64)
        s = torch.as_tensor(scale, dtype=torch.float64)
        return GaussianMixture(self.weights, (self.means - a) / s,
                               self.covs / (s[:, None] * s[None, :]))

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """The law of x_t for this x_0: means sqrt(ab) mu_k, covariances ab Sigma_k + (1 - ab)
        I (Ho et al. 2020, Eq. 4 applied to each component)."""
        eye = torch.eye(self.dims, dtype=torch.float64)
        return GaussianMixture(self.weights, math.sqrt(alpha_bar) * self.means,
                               alpha_bar * self.covs + (1.0 - alpha_bar) * eye)

    def _components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w_k N(x; mu_k, Sigma_k): (B, K), C_k^{-1}(mu_k - x): (B, K, D))."""
        x = x.double().reshape(len(x), self.dims)
        chol = torch.linalg.cholesky(self.covs)  # (K, D, D)
        diff = self.means[None] - x[:, None]  # (B, K, D)
        sol = torch.cholesky_solve(diff.permute(1, 2, 0), chol).permute(2, 0, 1)  # (B, K, D)
        maha = (diff * sol).sum(-1)  # (B, K)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        log_n = -0.5 * (self.dims * math.log(2 * math.pi) + log_det + maha)
        return self.weights.log() + log_n, sol

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), (B,) float64, for x (B, D)."""
        return torch.logsumexp(self._components(x)[0], dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) = sum_k r_k(x) Sigma_k^{-1} (mu_k - x), (B, D) float64."""
        log_joint, sol = self._components(x)
        r = torch.softmax(log_joint, dim=1)  # responsibilities r_k(x)
        return (r[..., None] * sol).sum(1)

    def eps(self, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """The ideal eps-prediction E[eps | x_t] = -sqrt(1 - ab) grad log p_t(x_t), (B, D)."""
        return -math.sqrt(1.0 - alpha_bar) * self.noised(alpha_bar).score(x_t)

    def denoiser(self, alpha_bar: torch.Tensor) -> Denoiser:
        """The ideal eps-prediction as a denoiser ``(x_t (B, D), t (B,) int64) -> eps`` on the
        timesteps of ``alpha_bar`` (T,) (a schedule's), computed in float64, returned in x_t's
        dtype and device."""
        ab = alpha_bar.double().cpu()

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = torch.empty(x_t.shape, dtype=torch.float64)
            for step in t.unique().tolist():
                rows = (t == step).cpu()
                out[rows] = self.eps(x_t[rows].cpu(), float(ab[step]))
            return out.to(x_t.dtype).to(x_t.device)

        return eps

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws, (n, D) float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dims, generator=generator, dtype=torch.float64)
        return self.means[k] + (torch.linalg.cholesky(self.covs)[k] @ z[..., None])[..., 0]
