"""Flow matching on the conditional optimal-transport path: the path, its velocity, the
training draws and the network's velocity at any time.

Lipman et al. 2023 ("Flow Matching for Generative Modeling"), Eq. 20-23 with sigma_min = 0,
and Liu et al. 2023 ("Flow Straight and Fast", rectified flow), Eq. 1, written in this
project's direction of time (t = 0 the data, t = 1 the noise, as the DDPM's timesteps)::

    x_t = (1 - t) x_0 + t eps,          u = d x_t / d t = eps - x_0

The network u_theta(x_t, t) is trained by least squares towards u (the conditional flow
matching loss, Lipman Eq. 9 and 23); its minimiser is E[eps - x_0 | x_t], the marginal
velocity, and the ODE dx/dt = u_theta(x, t) run from x_1 ~ N(0, I) at t = 1 down to t = 0
carries N(0, I) to the data (Lipman Theorem 1). facebookresearch/flow_matching writes the
same path with the time reversed (their x_0 the noise, t = 1 the data: ``CondOTProbPath``);
tests/data/make_flow_ref.py checks the two against each other.

Glossary (beside ``ddpmlab.diffusion``'s): ``t``: the flow's time in [0, 1] (a float, or
(B,) float32). ``k``: a timestep index 0..T-1, what the networks embed. ``u``: the velocity
eps - x_0; ``u_hat``: the network's. ``x0_hat``, ``eps_hat``: E[x_0 | x_t], E[eps | x_t].

Time grid. The networks embed integer timesteps (``models/embeddings.py``: a table of T rows;
``seed_mlp`` a learned row per step), so the flow is trained at the T times
t_k = (k + 1) / T, k = 0..T-1, drawn uniformly (the Riemann sum of Lipman's t ~ U[0, 1]):
k = T-1 is t = 1, pure noise, and k = 0 one step from the data, as the DDPM's timesteps.
Between two of them the velocity is the linear interpolation in t of the network's at both
(:func:`network_velocity`), so samplers may take any time grid; below t_0 = 1 / T it is
timestep 0's, held.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpmlab.diffusion import Denoiser, sample_timesteps
from ddpmlab.mixture import GaussianMixture

#: (x (B, *D), t) -> u (B, *D): a velocity field at one time t in [0, 1]
VelocityField = Callable[[torch.Tensor, float], torch.Tensor]


def flow_time(k: torch.Tensor, T: int) -> torch.Tensor:
    """t_k = (k + 1) / T of timesteps k (B,) int64 in 0..T-1: (B,) float32 in (0, 1]."""
    return (k.to(torch.float64) + 1.0).div_(T).to(torch.float32)


def _column(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t (B,) shaped to broadcast against x (B, *D)."""
    return t.reshape(len(t), *([1] * (x.ndim - 1))).to(x.dtype)


def path_sample(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps: x0, eps (B, *D), t (B,) float -> (B, *D)."""
    tt = _column(t, x0)
    return (1 - tt) * x0 + tt * eps  # Lipman Eq. 20-22 (sigma_min = 0); Liu Eq. 1


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u = eps - x_0, (B, *D): d x_t / d t of the path (Lipman Eq. 23 with sigma_min = 0)."""
    return eps - x0


def eps_x0_from_velocity(x_t: torch.Tensor, t: torch.Tensor, u: torch.Tensor, *,
                         clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_hat, x0_hat) from a velocity u (B, *D) at x_t (B, *D), t (B,).

    x_t = (1 - t) x_0 + t eps and u = eps - x_0 give x0_hat = x_t - t u and eps_hat = x_t +
    (1 - t) u, no division. ``clip`` (images): x0_hat clamped to [-1, 1] and eps_hat =
    (x_t - (1 - t) x0_hat) / t recomputed from it where the clamp moved it, as the DDPM's
    samplers do (``diffusion.predict_eps_x0``).
    """
    tt = _column(t, x_t)
    x0_hat, eps_hat = x_t - tt * u, x_t + (1 - tt) * u
    if not clip:
        return eps_hat, x0_hat
    clipped = x0_hat.clamp(-1.0, 1.0)
    eps_hat = torch.where(clipped == x0_hat, eps_hat, (x_t - (1 - tt) * clipped) / tt)
    return eps_hat, clipped


def velocity_from(x_t: torch.Tensor, t: torch.Tensor, u: torch.Tensor, *,
                  clip: bool = False) -> torch.Tensor:
    """The velocity eps_hat - x0_hat after :func:`eps_x0_from_velocity`'s clip (images):
    ``u`` itself where nothing was clamped."""
    if not clip:
        return u
    eps_hat, x0_hat = eps_x0_from_velocity(x_t, t, u, clip=True)
    return eps_hat - x0_hat


def draw_flow_inputs(T: int, x0: torch.Tensor, generator: torch.Generator | None = None,
                     antithetic: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k, eps, x_t) for a batch x0 (B, *D): the timestep k as the DDPM draws it (so t_k =
    (k + 1) / T is uniform on the grid), then eps ~ N(0, I), then x_t on the path, in that
    order from ``generator`` (on its device, else x0's)."""
    device = x0.device if generator is None else generator.device
    k = sample_timesteps(x0.shape[0], T, generator, antithetic, device=device)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=device)
    return k, eps, path_sample(x0, eps, flow_time(k, T))


def flow_stable_target(T: int, x0: torch.Tensor, eps: torch.Tensor, x_t: torch.Tensor,
                       k: torch.Tensor, reference: torch.Tensor,
                       allowed: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0~, eps~): the stable target field (Xu, Tong & Jaakkola 2023) on the flow's path,
    as ``diffusion.stable_target`` is on the DDPM's.

    Row i's x0 becomes the posterior mean of x_0 given x_t when x_0 is uniform on {x0_i} and
    the M reference examples r_j (M, *D): weights softmax_j(-||x_t - (1 - t) r_j||^2 /
    (2 t^2)), the own x0_i's exponent being -||eps_i||^2 / 2; eps~ = (x_t - (1 - t) x0~) / t,
    so u~ = eps~ - x0~ is the averaged velocity. Written without dividing by 1 - t, which is 0
    at t = 1 (there every weight is equal: x_t is the noise alone).
    """
    t = flow_time(k, T).to(x0.device)
    a, s = 1 - t, t  # x_t = a x_0 + s eps
    x, ref = x_t.flatten(1), reference.flatten(1)
    # ||x - a r||^2 = ||x||^2 - 2 a x.r + a^2 ||r||^2, row i's a and s for every r_j
    dist = (x.square().sum(1, keepdim=True) - 2 * a[:, None] * (x @ ref.T)
            + a[:, None].square() * ref.square().sum(1)[None])
    logits = dist.clamp_(min=0).div_(-2 * s[:, None].square())
    if allowed is not None:
        logits.masked_fill_(~allowed, -torch.inf)
    own = eps.flatten(1).square().sum(1, keepdim=True).mul_(-0.5)
    w = torch.softmax(torch.cat([own, logits], 1), 1)
    x0_bar = (w[:, :1] * x0.flatten(1) + w[:, 1:] @ ref).view_as(x0)
    return x0_bar, (x_t - _column(a, x0) * x0_bar) / _column(s, x0)


def network_velocity(denoiser: Denoiser, T: int, *, clip: bool = False) -> VelocityField:
    """The network's velocity at any t in [0, 1]: linear in t between the grid's times t_k =
    (k + 1) / T, timestep 0's below t_0 (module docstring). denoiser: ``(x_t, k) -> u_hat``.
    ``clip``: :func:`velocity_from`'s (images)."""

    def at(x: torch.Tensor, k: int) -> torch.Tensor:
        kk = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        u = denoiser(x, kk)
        return velocity_from(x, flow_time(kk, T).to(x.device), u, clip=clip)

    def field(x: torch.Tensor, t: float) -> torch.Tensor:
        pos = min(max(t * T - 1.0, 0.0), T - 1.0)  # t = (k + 1) / T -> k, inside 0..T-1
        k = int(pos)
        w = pos - k
        if w < 1e-9 or k == T - 1:  # on a grid time (every one of a K | T uniform grid)
            return at(x, k)
        return (1.0 - w) * at(x, k) + w * at(x, k + 1)

    return field


def mixture_velocity(mixture: GaussianMixture) -> VelocityField:
    """The exact marginal velocity E[eps - x_0 | x_t] of Gaussian-mixture data, in x's dtype.

    x_t = (1 - t) x_0 + t eps is c x_vp with c = sqrt((1 - t)^2 + t^2) and x_vp the DDPM's
    noised sample at alpha_bar = (1 - t)^2 / c^2, so E[eps | x_t] = ``mixture.eps(x_t / c,
    alpha_bar)`` and x0_hat = (x_t - t eps_hat) / (1 - t) (for t < 1), u = eps_hat - x0_hat.
    At t = 1, x_t is the noise: eps_hat = x_t and x0_hat the mixture's mean.
    """
    def field(x: torch.Tensor, t: float) -> torch.Tensor:
        x64 = x.double().flatten(1).cpu()
        if t >= 1.0:
            x0_hat = (mixture.weights[:, None] * mixture.means).sum(0).expand_as(x64)
            return (x64 - x0_hat).to(x.dtype).to(x.device).view_as(x)
        c = ((1 - t) ** 2 + t**2) ** 0.5
        eps_hat = mixture.eps(x64 / c, (1 - t) ** 2 / c**2)
        x0_hat = (x64 - t * eps_hat) / (1 - t)
        return (eps_hat - x0_hat).to(x.dtype).to(x.device).view_as(x)

    return field
