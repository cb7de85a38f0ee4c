"""Isotropic Gaussian mixtures in the k-diffusion (VE) frame, with exact scores and posteriors.

Data ``x0 ~ sum_k w_k N(mu_k, v_k I)``; noised ``x = x0 + sigma eps`` has the exact marginal
``sum_k w_k N(mu_k, (v_k + sigma^2) I)`` (DNG paper, App. B, written for VE). Everything a guidance rule or a
tracker needs is closed-form: denoisers ``D = E[x0 | x]`` of the full, to-forget and to-remember mixtures,
the class posterior ``p(forbidden | x)``, and the divergence of ``D`` (via ``div D = tr Cov[x0|x] / sigma^2``).
Computation is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = 1.8378770664093453


class _ExactMixture:
    """What every mixture derives from its per-component log densities (``_log_comp``), posterior means
    (``_component_means``) and posterior covariance traces (``_within_trace``) at noise level sigma
    (x: [N, d], sigma: float or [N]). Subclasses hold ``weights`` [K], ``means`` [K, d] and ``forbidden`` [K]."""

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def prior_forbidden(self) -> float:
        return float(self.weights[self.forbidden].sum())

    def remembered(self):
        return self.subset(~self.forbidden)

    def to_forget(self):
        return self.subset(self.forbidden)

    def log_density(self, x, sigma) -> torch.Tensor:
        return torch.logsumexp(self._log_comp(x, sigma), dim=1)

    def responsibilities(self, x, sigma) -> torch.Tensor:
        return torch.softmax(self._log_comp(x, sigma), dim=1)

    def posterior_forbidden(self, x, sigma) -> torch.Tensor:
        """Exact ``p(forbidden | x_sigma)``, by log-sum-exp."""
        log_comp = self._log_comp(x, sigma)
        return (torch.logsumexp(log_comp[:, self.forbidden], 1) - torch.logsumexp(log_comp, 1)).exp()

    def log_odds_forbidden(self, x, sigma) -> torch.Tensor:
        """Exact ``log p / (1 - p)``, finite even where p rounds to 1 in floating point."""
        log_comp = self._log_comp(x, sigma)
        return torch.logsumexp(log_comp[:, self.forbidden], 1) - torch.logsumexp(log_comp[:, ~self.forbidden], 1)

    def denoise(self, x, sigma) -> torch.Tensor:
        """``E[x0 | x_sigma]`` of this mixture."""
        r = self.responsibilities(x, sigma)
        return (r[:, :, None] * self._component_means(x, sigma)).sum(1)

    def divergence_of_denoiser(self, x, sigma) -> torch.Tensor:
        """``div_x E[x0 | x] = tr Cov[x0 | x] / sigma^2``, per sample (law of total covariance over classes)."""
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1) ** 2
        r = self.responsibilities(x, sigma)
        m_k = self._component_means(x, sigma)
        m = (r[:, :, None] * m_k).sum(1)
        second = (r * (self._within_trace(s2) + (m_k**2).sum(-1))).sum(1)
        return (second - (m**2).sum(1)) / s2


@dataclass(frozen=True)
class GaussianMixture(_ExactMixture):
    weights: torch.Tensor  # [K], sums to 1
    means: torch.Tensor  # [K, d]
    variances: torch.Tensor  # [K], isotropic per component
    forbidden: torch.Tensor  # [K] bool, the components of the concept to remove

    def subset(self, mask: torch.Tensor) -> GaussianMixture:
        w = self.weights[mask]
        return GaussianMixture(w / w.sum(), self.means[mask], self.variances[mask], self.forbidden[mask])

    def _log_comp(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2
        var = self.variances[None, :] + s2  # [N or 1, K]
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # [N, K]
        return self.weights.log()[None] - 0.5 * (sq / var + self.dim * (var.log() + LOG_2PI))

    def _component_means(self, x, sigma):
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1) ** 2
        shrink = self.variances[None, :, None] / (self.variances[None, :, None] + s2)  # [N or 1, K, 1]
        return self.means[None] + shrink * (x[:, None, :] - self.means[None])  # E[x0 | x, k]

    def _within_trace(self, s2: torch.Tensor) -> torch.Tensor:
        """``tr Cov[x0 | x, k]`` [N or 1, K] at squared noise ``s2`` [N or 1]."""
        return self.dim * self.variances[None] * s2[:, None] / (self.variances[None] + s2[:, None])

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` data samples and their component index."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[k] + self.variances[k].sqrt()[:, None] * eps, k

    def cdf_1d(self, grid: torch.Tensor) -> torch.Tensor:
        """CDF of a 1-D mixture at the data level (sigma = 0)."""
        z = (grid[:, None] - self.means[None, :, 0]) / self.variances.sqrt()[None]
        return (self.weights[None] * 0.5 * (1 + torch.erf(z / 2**0.5))).sum(1)


def three_modes_1d() -> GaussianMixture:
    """The DNG paper's 1-D example shape: three modes, the rightmost (distinct) one forbidden."""
    return GaussianMixture(
        weights=torch.tensor([0.4, 0.35, 0.25], dtype=torch.float64),
        means=torch.tensor([[-2.0], [0.5], [3.0]], dtype=torch.float64),
        variances=torch.tensor([0.25, 0.2, 0.15], dtype=torch.float64) ** 2 * 4,
        forbidden=torch.tensor([False, False, True]),
    )


def three_modes_2d() -> GaussianMixture:
    """DNG paper App. A: three modes, two upper ones to keep, the bottom one forbidden."""
    return GaussianMixture(
        weights=torch.tensor([1 / 3, 1 / 3, 1 / 3], dtype=torch.float64),
        means=torch.tensor([[-1.5, 1.0], [1.5, 1.0], [0.0, -1.6]], dtype=torch.float64),
        variances=torch.tensor([0.08, 0.08, 0.08], dtype=torch.float64),
        forbidden=torch.tensor([False, False, True]),
    )


def four_modes_2d() -> GaussianMixture:
    """Four modes of unequal spread (variances 0.03 to 0.25), two of them forbidden, on opposite corners: the two
    classes' means nearly coincide, so at large sigma the evidence is in their different spreads (the within-class
    part of the divergence), which the moment closure drops."""
    return GaussianMixture(
        weights=torch.full((4,), 0.25, dtype=torch.float64),
        means=torch.tensor([[-1.5, 1.0], [1.5, 1.0], [-1.2, -1.4], [1.3, -1.2]], dtype=torch.float64),
        variances=torch.tensor([0.03, 0.2, 0.25, 0.04], dtype=torch.float64),
        forbidden=torch.tensor([False, True, True, False]),
    )


def low_dimensional_like(dim: int = 2, modes: int = 4, forbidden: int = 2, seed: int = 0) -> GaussianMixture:
    """``modes`` equally likely isotropic modes in ``dim`` dimensions, the first ``forbidden`` of them the concept:
    random means of scale 1.5 per coordinate, variances log-uniform over a 10x range around 0.1."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(modes, dim, dtype=torch.float64, generator=g) * 1.5
    variances = 0.1 * torch.exp(math.log(10.0) * (torch.rand(modes, dtype=torch.float64, generator=g) - 0.5))
    concept = torch.arange(modes) < forbidden
    return GaussianMixture(torch.full((modes,), 1 / modes, dtype=torch.float64), means, variances, concept)


def latent_like(dim: int = 64, classes: int = 10, seed: int = 0) -> GaussianMixture:
    """A high-dimensional stand-in for a latent: ``classes`` equally likely Gaussian classes, class 0
    forbidden, random means of unit scale per coordinate and unequal within-class spreads."""
    g = torch.Generator().manual_seed(seed)
    weights, means, forbidden = _equal_classes(classes, dim, g)
    variances = 0.15 + 0.35 * torch.rand(classes, dtype=torch.float64, generator=g)
    return GaussianMixture(weights, means, variances, forbidden)


def _equal_classes(classes: int, dim: int, g: torch.Generator):
    """Equal weights, random means of scale 0.6 per coordinate (the generator's first draw), class 0 forbidden."""
    means = torch.randn(classes, dim, dtype=torch.float64, generator=g) * 0.6
    forbidden = torch.zeros(classes, dtype=torch.bool)
    forbidden[0] = True
    return torch.full((classes,), 1 / classes, dtype=torch.float64), means, forbidden


@dataclass(frozen=True)
class AnisotropicMixture(_ExactMixture):
    """Gaussian mixture with a full covariance per component, ``Sigma_k = U_k diag(lam_k) U_k^T``: correlated,
    anisotropic classes, as a real model's classes are (a probe on a settled image then still has variance).

    Same interface as :class:`GaussianMixture` where the tracking study needs it; all quantities are exact:
    at noise sigma the class covariance is ``Sigma_k + sigma^2 I`` (eigenvalues ``lam + sigma^2`` in the
    class's own basis), ``E[x0 | x, k] = m_k + U_k diag(lam / (lam + sigma^2)) U_k^T (x - m_k)`` and
    ``tr Cov[x0 | x, k] = sum lam sigma^2 / (lam + sigma^2)``.
    """

    weights: torch.Tensor  # [K]
    means: torch.Tensor  # [K, d]
    bases: torch.Tensor  # [K, d, d], orthonormal columns
    eigenvalues: torch.Tensor  # [K, d]
    forbidden: torch.Tensor  # [K] bool

    def subset(self, mask: torch.Tensor) -> AnisotropicMixture:
        w = self.weights[mask]
        return AnisotropicMixture(w / w.sum(), self.means[mask], self.bases[mask], self.eigenvalues[mask],
                                  self.forbidden[mask])

    def _projected(self, x, sigma):
        """``z = U_k^T (x - m_k)`` [N, K, d] and the noised eigenvalues ``lam + sigma^2`` [N or 1, K, d]."""
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1) ** 2
        z = torch.einsum("kij,nki->nkj", self.bases, x[:, None, :] - self.means[None])
        return z, self.eigenvalues[None] + s2

    def _log_comp(self, x, sigma):
        z, var = self._projected(x, sigma)
        return self.weights.log()[None] - 0.5 * ((z * z / var).sum(-1) + var.log().sum(-1) + self.dim * LOG_2PI)

    def _component_means(self, x, sigma):
        z, var = self._projected(x, sigma)
        shrunk = z * (self.eigenvalues[None] / var)
        return self.means[None] + torch.einsum("kij,nkj->nki", self.bases, shrunk)  # [N, K, d]

    def _within_trace(self, s2: torch.Tensor) -> torch.Tensor:
        lam = self.eigenvalues[None]
        return (lam * s2[:, None, None] / (lam + s2[:, None, None])).sum(-1)  # [N or 1, K]

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, dtype=torch.float64, generator=generator) * self.eigenvalues[k].sqrt()
        return self.means[k] + torch.einsum("nij,nj->ni", self.bases[k], eps), k


def anisotropic_latent_like(dim: int = 64, classes: int = 10, seed: int = 0) -> AnisotropicMixture:
    """:func:`latent_like` with correlated, anisotropic classes of unequal spreads: each class has a random
    orthonormal basis and eigenvalues log-uniform over a 30x range around a class-specific scale."""
    g = torch.Generator().manual_seed(seed)
    weights, means, forbidden = _equal_classes(classes, dim, g)
    bases = torch.linalg.qr(torch.randn(classes, dim, dim, dtype=torch.float64, generator=g)).Q
    scale = 0.15 + 0.35 * torch.rand(classes, 1, dtype=torch.float64, generator=g)
    spread = torch.exp(math.log(30.0) * (torch.rand(classes, dim, dtype=torch.float64, generator=g) - 0.5))
    eigenvalues = scale * spread / spread.mean(1, keepdim=True)  # mean eigenvalue = the class's scale
    return AnisotropicMixture(weights, means, bases, eigenvalues, forbidden)
