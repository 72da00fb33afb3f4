"""The probability-flow ODE: deterministic sampling and the exact likelihood (Song et al. 2021).

Song et al. 2021 (score SDEs), Eq. 13, for the DDPM's variance-preserving SDE (their Eq. 11,
beta(t) = -d log alpha_bar / dt)::

    dx = -1/2 beta(t) [x + grad_x log p_t(x)] dt,   grad_x log p_t(x) = -eps(x, t) / sqrt(1 - ab)

With x_bar = x / sqrt(ab) and sigma = sqrt(1 / ab - 1) (so d sigma / dt = beta / (2 sqrt(ab)
sqrt(1 - ab))) the same ODE reads (Song, Meng & Ermon 2021, DDIM, Eq. 14)::

    d x_bar / d sigma = eps(x_bar / sqrt(1 + sigma^2), sigma)

which is what is integrated, from sigma_max (x ~ N(0, I) there: x_bar ~ N(0, (1 + sigma_max^2)
I); sigma_max = sigma_{T-1} but for a jump in the schedule's last step: :func:`sigma_max`)
down to sigma = 0, where x_bar = x is the data. Its trajectories are nearly straight lines
(Karras et al. 2022, Sec. 3), which suits an adaptive solver.

Continuous time from the T-step schedule: timestep t in 0..T-1 sits at sigma_t = sqrt(1 /
alpha_bar_t - 1) (increasing in t), and sigma = 0 is the data. The
networks embed integer timesteps only (``models/embeddings.py``: a table lookup; ``seed_mlp``
a learned row per step), so :func:`network_field` takes x0_hat at a sigma between
sigma_{t-1} and sigma_t as the linear interpolation, in sigma, of the network's x0_hat at
timesteps t-1 and t, each given x_bar at its own scale (x_t = x_bar / sqrt(1 + sigma_t^2)),
and eps = (x_bar - x0_hat) / sigma (x_bar = x_0 + sigma eps). x0_hat, not eps, because at a
fixed x_bar eps varies like x_bar / sigma, far from linear across the wide gaps of sigma near
x_T (sigma_{T-2} = 128, sigma_{T-1} = 4058 for the cosine schedule at T = 200), while x0_hat
hardly moves there. Below sigma_0
eps is timestep 0's eps_hat, so the last stretch is DDIM's final step to x0_hat. The field is
continuous in sigma and equals the network at every timestep. A closed-form field (a Gaussian
mixture's eps at any sigma, :func:`mixture_field`) can be integrated instead.

Likelihood, by the instantaneous change of variables (Chen et al. 2018, Theorem 1; Song et
al. 2021, Eq. 39)::

    log p_0(x_0) = log N(x_bar(sigma_max); 0, (1 + sigma_max^2) I)
                   + int_0^sigma_max div_{x_bar} eps(x_bar(sigma), sigma) d sigma

the divergence exact (one backward pass per dimension: 2-D points) or Hutchinson's
estimator E_v[v^T (d eps / d x_bar) v] with one Rademacher v per item for the whole solve
(Grathwohl et al. 2018, FFJORD, Eq. 7; Hutchinson 1989).

A flow (``ddpmlab.flow``) is solved by the same code in its own time: the field is its
velocity u(x, t), integrated from t = 1, where x_1 ~ N(0, I) exactly, down to t = 0, and the
likelihood is log N(x_1; 0, I) + int_0^1 div u dt (Lipman et al. 2023, Sec. 2; Chen et al.
2018, Theorem 1). A :class:`Span` says where a solve starts and the prior's scale there.

Solver: ``scipy.integrate.solve_ivp`` (adaptive RK45 by default: Dormand & Prince 1980) on
one float64 state vector for the whole batch, which shares its steps and error norm (the RMS
over every coordinate), as Song et al.'s code does; the network runs in float32. scipy is
already a dependency (through scikit-learn), and its RK45 needs fewer field evaluations than
torchdiffeq's dopri5, the same Dormand-Prince pair, for samples that agree (README.md, "Shapes,
the score field and the probability-flow ODE"; ``bench/ode.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ddpmlab.diffusion import Denoiser, check_prediction, predict_eps_x0, split_output
from ddpmlab.errors import UserError
from ddpmlab.mixture import GaussianMixture
from ddpmlab.samplers.ddpm import chain_device
from ddpmlab.samplers.spec import ATOL, RTOL
from ddpmlab.schedules import NoiseSchedule

#: (x_bar (B, *D), sigma) -> eps (B, *D): the ODE's right-hand side d x_bar / d sigma
Field = Callable[[torch.Tensor, float], torch.Tensor]
METHODS = ("RK45", "RK23", "DOP853")  # scipy's explicit adaptive Runge-Kutta methods
EXACT_MAX_DIMS = 8  # above: Hutchinson's estimator (the exact one costs D backward passes)
DIVERGENCES = ("auto", "exact", "hutchinson")


def sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """sigma_t = sqrt(1 / alpha_bar_t - 1) for t = 0..T-1, (T,) float64, increasing."""
    ab = schedule.alpha_bar.detach().cpu().double().numpy()
    return np.sqrt(1.0 / ab - 1.0)


def sigma_max(schedule: NoiseSchedule) -> float:
    """Where the solve starts: min(sigma_{T-1}, 2 sigma_{T-2}).

    The field feeds timestep t's network x_bar at t's own scale, so at a sigma far above
    sigma_t that network would see inputs far larger than any it was trained on. Capping the
    start at twice sigma_{T-2} keeps that within a factor of 2 everywhere. It matters only
    where the schedule's last step jumps: the cosine schedule's final beta, clipped at 0.999,
    takes sigma from 128 to 4058 at T = 200, and the solve starts at 256, where alpha_bar =
    1.5e-5 and x is N(0, I) as nearly as x_T is (the prior term's error is about alpha_bar
    |x0|^2 / 2 nats).
    """
    sig = sigmas(schedule)
    return float(min(sig[-1], 2.0 * sig[-2])) if len(sig) > 1 else float(sig[-1])


def check_tolerances(rtol: float, atol: float, method: str = "RK45") -> None:
    """Raise unless both tolerances are finite numbers > 0 and ``method`` is one of METHODS."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise UserError(f"--{name} must be a finite number > 0, got {value!r}")
    if method not in METHODS:
        raise UserError(f"unknown ODE method '{method}'; choose one of: {', '.join(METHODS)}")


def network_field(denoiser: Denoiser, schedule: NoiseSchedule, *, prediction: str = "eps",
                  variance: str = "fixed_small", clip: bool = False) -> Field:
    """The network's eps at any sigma in [0, sigma_max], interpolated between timesteps.

    denoiser: ``(x_t, t) -> output`` of kind ``prediction`` (a ``learned_range`` output's v
    half is dropped: the ODE has no variance). clip: x0_hat clamped to [-1, 1] and eps_hat
    recomputed from it (images; ``predict_eps_x0``), as in every other sampler.
    """
    check_prediction(prediction)
    sig = sigmas(schedule)

    def x0_at(x_bar: torch.Tensor, t: int) -> torch.Tensor:
        """The network's x0_hat at timestep t, given x_bar at t's scale."""
        s = schedule.to(x_bar.device)
        x_t = x_bar / math.sqrt(1.0 + sig[t] ** 2)  # x_t = sqrt(ab_t) x_bar
        tt = torch.full((x_bar.shape[0],), t, dtype=torch.long, device=x_bar.device)
        output = split_output(denoiser(x_t, tt), variance)[0]
        return predict_eps_x0(s, x_t, tt, output, prediction, clip=clip)[1]

    def field(x_bar: torch.Tensor, sigma: float) -> torch.Tensor:
        k = int(np.searchsorted(sig, sigma))  # first timestep with sigma_k >= sigma
        if k == 0:  # below sigma_0: timestep 0's eps_hat, constant (DDIM's last step)
            return (x_bar - x0_at(x_bar, 0)) / sig[0]
        k = min(k, len(sig) - 1)
        w = min((sigma - sig[k - 1]) / (sig[k] - sig[k - 1]), 1.0)  # linear in sigma
        x0_hat = (x0_at(x_bar, k) if w == 1.0 else x0_at(x_bar, k - 1) if w == 0.0
                  else (1.0 - w) * x0_at(x_bar, k - 1) + w * x0_at(x_bar, k))
        return (x_bar - x0_hat) / sigma  # eps = (x_bar - x0_hat) / sigma (x_bar = x0 + sigma eps)

    return field


def mixture_field(mixture: GaussianMixture) -> Field:
    """The exact eps of Gaussian-mixture data at any sigma (``GaussianMixture.eps``), in
    x_bar's dtype: the ODE's field for a perfect model."""
    def field(x_bar: torch.Tensor, sigma: float) -> torch.Tensor:
        ab = 1.0 / (1.0 + sigma**2)
        return mixture.eps(x_bar * math.sqrt(ab), ab).to(x_bar.dtype)
    return field


@dataclass(frozen=True)
class Span:
    """Where the noise end of an ODE lies: ``start`` the time variable's value there (the
    DDPM's sigma_max, a flow's t = 1) and ``variance`` the state's variance there, the
    prior's (x_bar(sigma_max) ~ N(0, (1 + sigma_max^2) I); a flow's x_1 ~ N(0, I)). The data
    end is 0 in both."""

    start: float
    variance: float


def span_of(schedule: NoiseSchedule) -> Span:
    """The DDPM's span: sigma_max (:func:`sigma_max`) and 1 + sigma_max^2."""
    start = sigma_max(schedule)
    return Span(start, 1.0 + start**2)


FLOW_SPAN = Span(1.0, 1.0)  # a flow: x_1 ~ N(0, I) at t = 1


@dataclass(frozen=True)
class OdeSample:
    """x0: (B, *D) float32 samples; nfe: evaluations of the field (each one or two network
    passes, :func:`network_field`)."""

    x0: torch.Tensor
    nfe: int


def _solve(fun: Callable[[float, np.ndarray], np.ndarray], span: tuple[float, float],
           y0: np.ndarray, rtol: float, atol: float, method: str) -> tuple[np.ndarray, int]:
    from scipy.integrate import solve_ivp  # imported on use: scipy takes a while

    sol = solve_ivp(fun, span, y0, method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"the ODE solver failed: {sol.message}")
    return sol.y[:, -1], int(sol.nfev)


def ode_sample(field: Field, schedule: NoiseSchedule, shape: tuple[int, ...], *,
               rtol: float = RTOL, atol: float = ATOL, method: str = "RK45",
               generator: torch.Generator | None = None,
               x_T: torch.Tensor | None = None, span: Span | None = None) -> OdeSample:
    """Integrate the probability-flow ODE from x_T ~ N(0, I) (B, *D) to sigma = 0 (a flow's
    velocity from t = 1 to 0 with ``span`` :data:`FLOW_SPAN`; None: the DDPM's).

    The generator draws x_T only (on its device, where the field runs); the rest is
    deterministic: the same x_T gives the same samples.
    """
    check_tolerances(rtol, atol, method)
    device = chain_device(generator, x_T)
    if x_T is None:
        x_T = torch.randn(shape, generator=generator, device=device)
    span = span or span_of(schedule)

    def fun(sigma: float, y: np.ndarray) -> np.ndarray:
        x_bar = torch.from_numpy(y).view(shape).to(device, torch.float32)
        with torch.inference_mode():
            return field(x_bar, float(sigma)).double().cpu().numpy().ravel()

    y0 = (math.sqrt(span.variance) * x_T.double()).cpu().numpy().ravel()  # x_bar(sigma_max)
    y, nfe = _solve(fun, (span.start, 0.0), y0, rtol, atol, method)
    return OdeSample(torch.from_numpy(y).view(shape).to(device, torch.float32), nfe)


def divergence(out: torch.Tensor, x: torch.Tensor,
               probe: torch.Tensor | None = None) -> torch.Tensor:
    """div_x out(x), (B,): exact (one backward pass per dimension of x (B, *D)) or, with a
    ``probe`` v (B, *D), Hutchinson's v^T (d out / d x) v (FFJORD, Eq. 7), one pass.

    ``out`` must have been computed from ``x`` with autograd on; rows are independent (each
    row's output depends on its own row of x only).
    """
    if probe is not None:
        (g,) = torch.autograd.grad(out, x, grad_outputs=probe)
        return (g * probe).flatten(1).sum(1)
    flat = out.flatten(1)
    div = torch.zeros(len(x), dtype=out.dtype, device=out.device)
    for i in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i + 1 < flat.shape[1])
        div = div + g.flatten(1)[:, i]
    return div


@dataclass(frozen=True)
class OdeNll:
    """-log p(x_0) by the ODE: ``nats`` (B,) per item (summed over its D dimensions), the
    prior's share ``prior`` (B,), ``nfe`` field evaluations, and the ``divergence`` used."""

    nats: np.ndarray
    prior: np.ndarray
    nfe: int
    dims: int
    divergence: str

    @property
    def nats_per_dim(self) -> float:
        return float(self.nats.mean() / self.dims)

    @property
    def stderr_per_dim(self) -> float:
        """Standard error of ``nats_per_dim`` over the items (Hutchinson's noise included)."""
        return float(self.nats.std(ddof=1) / math.sqrt(len(self.nats)) / self.dims)


def ode_nll(field: Field, schedule: NoiseSchedule, x0: torch.Tensor, *, rtol: float = RTOL,
            atol: float = ATOL, method: str = "RK45", divergence_kind: str = "auto",
            generator: torch.Generator | None = None, span: Span | None = None) -> OdeNll:
    """-log p(x0) of x0 (B, *D) (model space) under the probability-flow ODE, in nats.

    Integrates [x_bar, int div] from sigma = 0 (x_bar = x0) up to sigma_max and adds the
    prior's log density (module docstring). divergence_kind: ``exact``, ``hutchinson`` (one
    Rademacher probe per item, drawn with ``generator``) or ``auto`` (exact up to
    :data:`EXACT_MAX_DIMS` dimensions). The field must be differentiable in x_bar. ``span``:
    :data:`FLOW_SPAN` for a flow's velocity (None: the DDPM's).
    """
    check_tolerances(rtol, atol, method)
    if divergence_kind not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence_kind!r}; one of {DIVERGENCES}")
    shape, device = tuple(x0.shape), x0.device
    B, D = shape[0], int(np.prod(shape[1:]))
    exact = divergence_kind == "exact" or (divergence_kind == "auto" and D <= EXACT_MAX_DIMS)
    probe = None if exact else (
        torch.randint(0, 2, shape, generator=generator, device=device).to(torch.float32) * 2 - 1)
    span = span or span_of(schedule)

    def fun(sigma: float, y: np.ndarray) -> np.ndarray:
        x_bar = torch.from_numpy(y[:B * D]).view(shape).to(device, torch.float32)
        x_bar.requires_grad_(True)
        with torch.enable_grad():
            out = field(x_bar, float(sigma))
            div = divergence(out, x_bar, probe)
        return np.concatenate([out.detach().double().cpu().numpy().ravel(),
                               div.detach().double().cpu().numpy()])

    y0 = np.concatenate([x0.detach().double().cpu().numpy().ravel(), np.zeros(B)])
    y, nfe = _solve(fun, (0.0, span.start), y0, rtol, atol, method)
    x_end, delta = y[:B * D].reshape(B, D), y[B * D:]
    var = span.variance  # x_bar(sigma_max) ~ N(0, (1 + sigma_max^2) I); a flow's x_1 ~ N(0, I)
    prior = -0.5 * (D * math.log(2 * math.pi * var) + (x_end**2).sum(1) / var)  # log N
    return OdeNll(nats=-(prior + delta), prior=-prior, nfe=nfe, dims=D,
                  divergence="exact" if exact else "hutchinson")
