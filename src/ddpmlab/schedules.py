"""Noise schedules: the betas beta_t of the forward process and every constant derived from them.

Each schedule is computed in float64 and held as float32 tensors (one cast, so cumulative
products do not drift), beside its float64 alpha_bar (``alpha_bar64``), from which the
samplers and respacing form 1 - alpha_bar and their step coefficients: from float32, 1 -
alpha_bar_0 at T = 999 (cosine) loses three digits. Timesteps are indexed 0..T-1 (see
``ddpmlab.diffusion``).

Schedules (registry :data:`SCHEDULES`):

- ``linear``: Ho et al. 2020, Sec. 4: beta from 1e-4 to 0.02, made for T = 1000. Both ends are
  multiplied by 1000/T, as improved-diffusion does (Nichol & Dhariwal 2021, its
  ``get_named_beta_schedule``), so that any T reaches noise; ``linear_unscaled`` keeps the
  paper's numbers (at T = 150 it ends at alpha_bar ~ 0.22: x_T is not noise).
- ``cosine``: Nichol & Dhariwal 2021, Eq. 17: alpha_bar_t = f(t)/f(0),
  f(t) = cos^2(pi/2 (t/T + s)/(1 + s)), s = 0.008, beta_t = min(1 - alpha_bar_t/alpha_bar_{t-1},
  0.999): the paper's formula, since the source text's drops the square and misprints
  alpha_bar_{t-1} as alpha_bar_t - 1.
- ``sigmoid``: the betas of the source text's code, a sigmoid *on beta*:
  beta = sigmoid(linspace(-6, 6, T)) * (5e-3 - 1e-5) + 1e-5 (GeoDiff's, and diffusers'
  "sigmoid"). Not Chen 2023's sigmoid schedule, which is defined on alpha_bar.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from ddpmlab.errors import UserError

#: x_T should be close to N(0, I): above this terminal alpha_bar the schedule warns.
TERMINAL_ALPHA_BAR_WARN = 1e-2


class ScheduleWarning(UserWarning):
    """A schedule whose last step does not reach noise."""


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                 rescale: bool = True) -> np.ndarray:
    """Ho et al. 2020, Sec. 4: betas linear in t; ``rescale`` multiplies both ends by 1000/T."""
    scale = 1000.0 / T if rescale else 1.0  # improved-diffusion, gaussian_diffusion.py
    return np.linspace(beta_start * scale, beta_end * scale, T, dtype=np.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal 2021, Eq. 17, with beta capped at ``max_beta`` (their Sec. 3.2)."""
    t = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # N&D Eq. 17: f(t)
    alpha_bar = f / f[0]
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], max_beta)  # beta_t = 1 - ab_t/ab_{t-1}


def sigmoid_betas(T: int, beta_start: float = 1e-5, beta_end: float = 5e-3) -> np.ndarray:
    """The source text's betas: sigmoid(linspace(-6, 6, T)) scaled to [beta_start, beta_end]."""
    x = np.linspace(-6.0, 6.0, T, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x)) * (beta_end - beta_start) + beta_start


SCHEDULES: dict[str, Callable[[int], np.ndarray]] = {
    "linear": linear_betas,
    "linear_unscaled": lambda T: linear_betas(T, rescale=False),
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
}


@dataclass(frozen=True)
class NoiseSchedule:
    """Per-timestep constants of the forward process, all (T,) float32, index t in 0..T-1.

    Names follow the glossary in ``ddpmlab.diffusion``. ``alpha_bar_prev[0] = 1``: before the
    first step the sample is the data.

    A schedule is built on the CPU; :meth:`to` gives its copy on another device, made once
    per device and shared by the schedule and all its copies, so a sampler or a loss that
    calls ``schedule.to(x.device)`` at every step copies nothing after the first.
    """

    beta: torch.Tensor
    alpha: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor

    def __post_init__(self) -> None:
        # device (as str) -> this schedule there; not a dataclass field (those are the (T,)
        # constants); shared with every copy :meth:`to` makes
        object.__setattr__(self, "_copies", {str(self.beta.device): self})

    @property
    def alpha_bar64(self) -> np.ndarray:
        """alpha_bar as derived, in float64 on the CPU, (T,): for scalar step coefficients
        (samplers, respacing) formed without the float32 rounding of ``alpha_bar``. Set by
        the constructors (:meth:`from_betas`, :meth:`respaced`, :meth:`to`)."""
        return self.__dict__["_alpha_bar64"]

    @property
    def T(self) -> int:
        return int(self.beta.shape[0])

    @property
    def device(self) -> torch.device:
        """Where the constants are (every field is on the same device)."""
        return self.beta.device

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """This schedule with every constant on ``device``: itself when already there (no
        copy, the CPU path), else a copy made on the first call and cached for later calls.

        The copy holds the same float32 values (derived in float64 on the CPU, cast once).
        """
        if not isinstance(device, torch.device):
            device = torch.device(device)
        if device == self.beta.device:  # every step of a run: nothing to do
            return self
        if device.type == "cuda" and device.index is None:  # "cuda": the current one, as torch
            device = torch.device("cuda", torch.cuda.current_device())
        copies: dict[str, NoiseSchedule] = self.__dict__["_copies"]
        copy = copies.get(str(device))
        if copy is None:
            copy = NoiseSchedule(**{f.name: getattr(self, f.name).to(device)
                                    for f in fields(self)})
            object.__setattr__(copy, "_copies", copies)  # one cache for the whole family
            object.__setattr__(copy, "_alpha_bar64", self.alpha_bar64)
            copies[str(device)] = copy
        return copy

    @property
    def terminal_alpha_bar(self) -> float:
        """alpha_bar at the last step: the fraction of signal variance left in x_T."""
        return float(self.alpha_bar[-1])

    @classmethod
    def from_betas(cls, beta: np.ndarray) -> NoiseSchedule:
        """Derive every constant from float64 betas, then cast once to float32."""
        beta = np.asarray(beta, dtype=np.float64)
        if beta.ndim != 1 or len(beta) < 2 or not np.all((beta > 0) & (beta < 1)):
            raise UserError("betas must be a 1-D array of at least 2 values in (0, 1)")
        return cls._derive(beta)

    def respaced(self, timesteps: np.ndarray) -> NoiseSchedule:
        """The schedule seen by a sampler that visits only ``timesteps`` (any order, distinct).

        Its step k is the k-th smallest visited t, with the same alpha_bar and
        beta_k = 1 - alpha_bar_{t_k} / alpha_bar_{t_{k-1}} (alpha_bar before the first = 1), as
        Nichol & Dhariwal 2021 (Sec. 4) and diffusers' DDPMScheduler do with fewer steps.
        Visiting every t returns this schedule itself. One visited step is allowed (K = 1).
        """
        visited = np.unique(np.asarray(timesteps, dtype=np.int64))
        if len(visited) != len(timesteps) or not len(visited) or visited[0] < 0 \
                or visited[-1] >= self.T:
            raise ValueError(f"timesteps must be distinct and lie in 0..{self.T - 1}")
        if len(visited) == self.T:
            return self
        alpha_bar = self.alpha_bar64[visited]  # float64: 1 - ab_0 keeps its digits
        beta = 1.0 - alpha_bar / np.append(1.0, alpha_bar[:-1])  # Nichol & Dhariwal 2021, Sec. 4
        if not np.all((beta > 0) & (beta < 1)):
            raise ValueError("alpha_bar must decrease strictly in (0, 1) over the visited steps")
        return self._derive(beta).to(self.device)  # derived on the CPU, like every schedule

    @classmethod
    def _derive(cls, beta: np.ndarray) -> NoiseSchedule:
        """Every constant from valid float64 betas (at least one), cast once to float32."""
        alpha = 1.0 - beta  # Ho et al. 2020, Sec. 2: alpha_t = 1 - beta_t
        alpha_bar = np.cumprod(alpha)  # Ho Sec. 2: alpha_bar_t = prod_{s<=t} alpha_s
        alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
        # Ho Eq. 7: beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t
        posterior_variance = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta
        # beta~ is 0 at t = 0; its log is clipped to the next value (improved-diffusion), or to
        # log beta_0 for a one-step (respaced) schedule, which has no next value
        clip = posterior_variance[1] if len(beta) > 1 else beta[0]
        posterior_log_variance = np.log(np.append(clip, posterior_variance[1:]))
        coefs = {
            "beta": beta,
            "alpha": alpha,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "sqrt_alpha_bar": np.sqrt(alpha_bar),
            "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - alpha_bar),
            "posterior_variance": posterior_variance,
            "posterior_log_variance": posterior_log_variance,
            # Ho Eq. 7: mu~_t = coef_x0 * x_0 + coef_xt * x_t
            "posterior_mean_coef_x0": beta * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar),
            "posterior_mean_coef_xt": (1.0 - alpha_bar_prev) * np.sqrt(alpha) / (1.0 - alpha_bar),
        }
        schedule = cls(**{k: torch.from_numpy(v).to(torch.float32) for k, v in coefs.items()})
        object.__setattr__(schedule, "_alpha_bar64", alpha_bar)
        return schedule


def make_schedule(name: str, T: int, warn: bool = True) -> NoiseSchedule:
    """Build the named schedule with T steps; warn when x_T is not close to noise."""
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule '{name}'; choose one of: {', '.join(SCHEDULES)}")
    if T < 2:
        raise UserError(f"the number of timesteps must be at least 2, got {T}")
    beta = SCHEDULES[name](T)
    if not np.all((beta > 0) & (beta < 1)):
        raise UserError(f"schedule '{name}' with T={T} gives betas outside (0, 1) (largest "
                        f"{beta.max():.3g}); choose a larger T or another schedule")
    schedule = NoiseSchedule.from_betas(beta)
    if warn and schedule.terminal_alpha_bar > TERMINAL_ALPHA_BAR_WARN:
        warnings.warn(
            f"schedule '{name}' with T={T} ends at alpha_bar={schedule.terminal_alpha_bar:.3g} "
            f"> {TERMINAL_ALPHA_BAR_WARN:g}: x_T is not noise, so sampling from N(0, I) "
            "starts off the distribution the model was trained on",
            ScheduleWarning,
            stacklevel=2,
        )
    return schedule
