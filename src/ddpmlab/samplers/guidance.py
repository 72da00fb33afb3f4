"""Classifier-free guidance (Ho & Salimans 2022): a guided denoiser for any sampler.

One network trained with its label dropped now and then (``train.cond_drop``) predicts both
eps(x_t, t, y) and eps(x_t, t) (the "no class" label). Guidance with weight w samples with

    eps~(x_t, t, y) = (1 + w) eps(x_t, t, y) - w eps(x_t, t)        (Ho & Salimans 2022, Eq. 6)

w = 0 is plain conditional sampling; w > 0 trades diversity for samples more typical of
their class. :func:`guided` wraps a conditional denoiser ``(x_t, t, y) -> output`` into the
``(x_t, t) -> output`` callable every sampler takes (DDPM, DDIM, and any other), so no
sampler knows about classes.

The mix is taken on the network's raw output whatever it predicts: eps, x0 and v are each
affine in eps at fixed (x_t, t) (x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar),
Ho et al. 2020 Eq. 15; v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0, Salimans & Ho 2022
Sec. 4), and weights 1 + w and -w sum to 1, so mixing the outputs gives exactly the output
whose eps is the guided eps. With a learned variance (``learned_range``, Nichol & Dhariwal
2021 Eq. 15) only the mean half is mixed; the variance half is the conditional call's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ddpmlab.diffusion import Denoiser, split_output

#: A class-conditional network as the samplers call it: (x_t (B, *D), t (B,), y (B,) int64)
ConditionalDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided(denoiser: ConditionalDenoiser, y: torch.Tensor, w: float, null: int,
           variance: str = "fixed_small") -> Denoiser:
    """The denoiser ``(x_t, t) -> (1 + w) out(x_t, t, y) - w out(x_t, t, null)`` (Eq. 6).

    y: (B,) int64 labels in 0..null-1, one per row of the x_t the sampler will pass (B rows);
    null: the "no class" label (the network's class count). Each call makes ONE network
    call on 2B rows, the conditional and unconditional halves side by side; w = 0 makes a
    plain conditional call on B rows instead (the same mix, half the work). variance:
    ``learned_range`` mixes the mean half of the output only (see the module docstring).
    """
    if w == 0:
        return lambda x, t: denoiser(x, t, y)
    y2 = torch.cat([y, torch.full_like(y, null)])  # (2B,): conditional, then no class

    def denoiser_w(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out_c, out_u = denoiser(torch.cat([x, x]), torch.cat([t, t]), y2).chunk(2)
        mean_c, v = split_output(out_c, variance)
        mean_u, _ = split_output(out_u, variance)
        mixed = (1 + w) * mean_c - w * mean_u  # Ho & Salimans 2022, Eq. 6
        return mixed if v is None else torch.cat([mixed, v], dim=1)

    return denoiser_w


def class_labels(n: int, cls: int | None, classes: int,
                 data: np.ndarray | None = None) -> torch.Tensor:
    """Labels for n samples, (n,) int64: all ``cls``, or (cls None) each of ``classes`` classes
    in class order, in the proportions of the labels ``data`` (the data's p(y) in
    p(x) = sum_y p(y) p(x | y)), or in equal shares (data None). Class k gets floor(n p_k)
    and the largest remainders one more each (ties to the lower class), so each class's share
    is within 1 / n of p_k."""
    if cls is not None:
        return torch.full((n,), cls, dtype=torch.long)
    p = np.ones(classes) if data is None else np.bincount(data, minlength=classes).astype(float)
    exact = n * p / p.sum()
    per = np.floor(exact).astype(np.int64)
    per[np.argsort(per - exact, kind="stable")[:n - per.sum()]] += 1
    return torch.arange(classes).repeat_interleave(torch.from_numpy(per))
