# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Diffusion models, with ddpmlab
#
# This tutorial follows the course *Modèles de diffusion* (the source text of ddpmlab, in
# French) section by section: each equation is written out, then computed by the one ddpmlab
# function that implements it, then checked with a number you can verify, then drawn. Where
# the course has a slip, the slip is pointed out where it occurs and the papers win.
#
# Run it as a script (`python docs/tutorial/course_en.py`) or open it as a notebook
# (`jupytext --to ipynb docs/tutorial/course_en.py`). The full run trains every model of the
# course for real, in a few minutes on a laptop CPU; `DDPMLAB_TUTORIAL_FAST=1` trains for a
# few steps only (the figures then show barely trained models: it is the test mode).
# Figures go to `DDPMLAB_TUTORIAL_OUT` (default: `docs/tutorial/figures/`).

# %%
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ddpmlab import evaluate_run, run_bound, train_run, viz
from ddpmlab.config import RunConfig, load_toml, merge, replace
from ddpmlab.data import resolve
from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
from ddpmlab.diffusion import (
    eps_loss,
    mean_from_eps,
    q_posterior,
    q_sample,
    reverse_log_variance,
    reverse_mean,
    split_output,
)
from ddpmlab.flow import mixture_velocity, network_velocity, path_sample
from ddpmlab.likelihood import prior_kl
from ddpmlab.mixture import GaussianMixture
from ddpmlab.modalities import default_config
from ddpmlab.models import build_model
from ddpmlab.runs.likelihood import format_bound
from ddpmlab.samplers import ddpm_chain, ddpm_sample
from ddpmlab.samplers.euler import euler_step
from ddpmlab.samplers.flow_fields import diffusion_velocity, flow_grid, step_along
from ddpmlab.samplers.ode import mixture_field, network_field
from ddpmlab.schedules import ScheduleWarning, make_schedule

torch.set_num_threads(1)
FAST = os.environ.get("DDPMLAB_TUTORIAL_FAST") == "1"
# one torch thread (what shares a busy machine best); fast mode (the tests): 20
# training steps, T = 20, small evaluations
SETTINGS = merge({"train": {"threads": 1}},
                 {"data": {"heldout": 400}, "diffusion": {"timesteps": 20},
                  "train": {"steps": 20}} if FAST else {})
EVAL = {"n": 200, "repeats": 1} if FAST else {}
# the figures: docs/tutorial/figures inside the checkout, ./tutorial_figures elsewhere
HERE = Path.cwd()
CHECKOUT = next((p / "docs" / "tutorial" for p in (HERE, *HERE.parents)
                 if (p / "docs" / "tutorial").is_dir()), None)
OUT = Path(os.environ.get("DDPMLAB_TUTORIAL_OUT",
                          CHECKOUT / "figures" if CHECKOUT else HERE / "tutorial_figures"))
OUT.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="ddpmlab-tutorial-"))  # run directories, removed at the end
START = time.perf_counter()


def show(name: str) -> Path:  # show OUT/name in Jupyter; print its path in a script
    path = OUT / name
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    else:
        print("figure:", path)
    return path


def keep(run, figure: str, name: str) -> Path:  # a run's figure into OUT, renamed, shown
    shutil.copyfile(run.path / "figures" / figure, OUT / name)
    return show(name)


# %% [markdown]
# ## 1. Introduction: two processes
#
# A (denoising) diffusion model turns noise drawn from a simple law into a sample of the data.
# It is made of two processes indexed by time $t \in \{0, \dots, T\}$:
#
# - the **forward process** $q$, fixed in advance, adds a little Gaussian noise at every step
#   until, at $t = T$, nothing but isotropic Gaussian noise $\mathcal N(\mathbf 0, \mathbf I)$
#   is left (isotropic: the covariance is $\sigma^2 \mathbf I$);
# - the **reverse process** $p_\theta$, a neural network, learns to remove that noise step by
#   step, from pure noise at $t = T$ back to a sample of the data at $t = 0$.
#
# The course's two pictures taken from the papers (the diagram of the two processes, Ho et al.
# 2020, Fig. 2; the U-Net, Ronneberger et al. 2015, Fig. 1) are illustrations, not results,
# and are not redrawn; every other figure of the course is regenerated here by ddpmlab.
#
# The course's data is a 2-D point cloud, a swiss roll (`ddpmlab.data.resolve`, the same
# `make_swiss_roll(noise=0.1)` divided by 10). It plays the role of $q(\mathbf x_0)$.

# %%
data = resolve("swiss_roll", n=1000, seed=0, heldout=1000).train  # (1000, 2) float64
print("x_0:", data.shape, "mean", data.mean(axis=0).round(3), "std", data.std(axis=0).round(3))
viz.plot_points(data, OUT / "curve.png", title="the data x_0 (swiss roll)")
show("curve.png")

# %% [markdown]
# ## 2. The forward process and its closed form
#
# With variances $0 < \beta_1 < \dots < \beta_T < 1$ fixed in advance, each step scales the
# previous sample down and adds noise (Ho et al. 2020, Eq. 2):
#
# $$q(\mathbf x_t \mid \mathbf x_{t-1}) = \mathcal N\big(\sqrt{1-\beta_t}\,\mathbf x_{t-1},
# \ \beta_t \mathbf I\big), \qquad
# \mathbf x_t = \sqrt{1-\beta_t}\,\mathbf x_{t-1} + \sqrt{\beta_t}\,\boldsymbol\varepsilon,
# \quad \boldsymbol\varepsilon \sim \mathcal N(\mathbf 0, \mathbf I).$$
#
# A sum of Gaussians is Gaussian, so $\mathbf x_t$ can be drawn from $\mathbf x_0$ in one go
# (Ho et al. 2020, Eq. 4), with $\alpha_t = 1 - \beta_t$ and
# $\bar\alpha_t = \prod_{s=1}^t \alpha_s$:
#
# $$q(\mathbf x_t \mid \mathbf x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,\mathbf x_0,
# \ (1-\bar\alpha_t)\mathbf I\big).$$
#
# ddpmlab: `make_schedule(name, T)` precomputes every constant ($\beta_t$, $\bar\alpha_t$, ...)
# in float64; `q_sample(schedule, x0, t, eps)` is Eq. 4. Timesteps are indexed `0..T-1`:
# index `t` is the paper's step $t+1$ (`t = 0`: one noising step applied).
#
# **Check.** Take one point $\mathbf x_0$, apply the one-step kernel (Eq. 2) 60 times to
# 200,000 copies of it, and compare the empirical mean and variance with the closed form
# (Eq. 4), and with `q_sample`.

# %%
schedule = make_schedule("cosine", 150)
x0 = torch.tensor([[1.0, -0.5]]).repeat(200_000, 1)
g = torch.Generator().manual_seed(0)
steps = 60
x = x0.clone()
for s in range(steps):  # Eq. 2, step by step
    beta = schedule.beta[s]
    x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=g)
t = torch.full((len(x0),), steps - 1)
direct = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))  # Eq. 4, at once
ab = float(schedule.alpha_bar[steps - 1])
print(f"after {steps} steps: closed form mean {np.sqrt(ab) * 1.0:.4f}, var {1 - ab:.4f}")
print(f"  step by step: mean {x[:, 0].mean():.4f}, var {x[:, 0].var():.4f}")
print(f"  q_sample:     mean {direct[:, 0].mean():.4f}, var {direct[:, 0].var():.4f}")
assert abs(x[:, 0].mean() - np.sqrt(ab)) < 0.01 and abs(x[:, 0].var() - (1 - ab)) < 0.01
assert abs(direct[:, 0].mean() - np.sqrt(ab)) < 0.01
assert abs(direct[:, 0].var() - (1 - ab)) < 0.01

# %% [markdown]
# The course's figure of the forward process: $q(\mathbf x_n \mid \mathbf x_0)$ at 20 times
# from the data ($n = 0$) to $n = T$, with the course's own schedule (next section) and
# $T = 150$. The last panels look like noise, but they are not $\mathcal N(\mathbf 0,
# \mathbf I)$: with $\bar\alpha_T \approx 0.69$, $\mathbf x_T$ keeps $0.83\,\mathbf x_0$, so it
# is off-centre and narrower than the noise the sampler starts from (the course's data, divided
# by 10, is small beside the noise, which hides it).

# %%
seed_schedule = make_schedule("sigmoid", 150, warn=False)
x0 = torch.from_numpy(data).float()
g = torch.Generator().manual_seed(0)
frames = [(0, data)]
for n in (round(i * 150 / 19) for i in range(1, 20)):  # n noising steps = timestep n - 1
    t = torch.full((len(x0),), n - 1)
    frames.append((n, q_sample(seed_schedule, x0, t, torch.randn(x0.shape, generator=g))
                   .numpy()))
viz.plot_forward_grid(frames, OUT / "q.png")
print(f"x_T: mean {frames[-1][1].mean(0).round(2)}, std {frames[-1][1].std(0).round(2)}; "
      "N(0, I): mean [0. 0.], std [1. 1.]")
show("q.png")

# %% [markdown]
# ## 3. The schedules
#
# **Linear** (Ho et al. 2020, Sec. 4): $\beta_t$ grows linearly from $10^{-4}$ to $0.02$.
# Those numbers were chosen for $T = 1000$. With $T = 150$ the betas sum to about 1.5 and
# $\bar\alpha_T \approx e^{-1.5} \approx 0.22$: $\mathbf x_T$ keeps $\sqrt{0.22} \approx 47\,\%$
# of the data's amplitude, and sampling from $\mathcal N(\mathbf 0, \mathbf I)$ starts from a
# law the network never saw. improved-diffusion multiplies both ends by $1000/T$ (ddpmlab's
# `linear`; the paper's numbers are `linear_unscaled`).
#
# **Cosine** (Nichol & Dhariwal 2021, Eq. 17):
#
# $$\bar\alpha_t = \frac{f(t)}{f(0)}, \quad
# f(t) = \cos^2\!\Big(\frac{\pi}{2}\,\frac{t/T + s}{1 + s}\Big), \quad s = 0.008, \qquad
# \beta_t = \min\Big(1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}},\ 0.999\Big).$$
#
# *Slip in the course:* it drops the square of the cosine (its $\bar\alpha_t$ is then the
# square root of the paper's: the noise comes later) and writes $\bar\alpha_t - 1$ for
# $\bar\alpha_{t-1}$ (then $\beta_t = 1 - \bar\alpha_t/(\bar\alpha_t - 1) > 1$, not a
# variance).
#
# **Sigmoid on $\beta$** (the course's code): the course says its betas grow linearly, but its
# code draws them from a sigmoid, $\beta = \mathrm{sigmoid}(\mathrm{linspace}(-6, 6, T))
# \cdot (5\cdot10^{-3} - 10^{-5}) + 10^{-5}$ (ddpmlab's `sigmoid`; not Chen 2023's sigmoid
# schedule, which is defined on $\bar\alpha$). With $T = 150$ these betas sum to about 0.38,
# so $\bar\alpha_T \approx 0.69$: even further from noise than the linear one.
#
# **Check.** The cosine $\bar\alpha$ against Eq. 17 written out, and $\bar\alpha_T$ of each
# schedule at $T = 150$ (ddpmlab warns when $\bar\alpha_T > 0.01$).

# %%
T = 150
t = np.arange(1, T + 1)
f = np.cos((t / T + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
cosine = make_schedule("cosine", T)
print(f"cosine alpha_bar vs Eq. 17: max |diff| = {np.abs(cosine.alpha_bar.numpy() - f).max():.1e}")
assert np.abs(cosine.alpha_bar.numpy() - f).max() < 1e-6
curves = {}
for name in ("linear", "linear_unscaled", "cosine", "sigmoid"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        s = make_schedule(name, T)
    curves[name] = s.alpha_bar.numpy()
    print(f"{name:16s} alpha_bar_T = {s.terminal_alpha_bar:.3g}"
          + ("   <- warns: x_T is not noise" if caught else ""))
curves["cosine without the square (the course's slip)"] = np.sqrt(curves["cosine"])
assert curves["linear_unscaled"][-1] > 0.2 and curves["sigmoid"][-1] > 0.6
viz.plot_curves(np.arange(1, T + 1), curves, OUT / "schedules.png", xlabel="step t",
                ylabel="alpha_bar_t (signal left)", title=f"schedules at T = {T}",
                dashed=("cosine without the square (the course's slip)",))
show("schedules.png")

# %% [markdown]
# ## 4. The reverse process: what the network learns
#
# If we knew $q(\mathbf x_{t-1} \mid \mathbf x_t)$ we could draw $\mathbf x_T \sim
# \mathcal N(\mathbf 0, \mathbf I)$ and denoise step by step down to $\mathbf x_0$. We do not,
# so a network approximates it with a Gaussian (Ho et al. 2020, Eq. 1):
#
# $$p_\theta(\mathbf x_{t-1} \mid \mathbf x_t) = \mathcal N\big(\boldsymbol\mu_\theta(\mathbf x_t,
# t),\ \boldsymbol\Sigma_\theta(\mathbf x_t, t)\big).$$
#
# Ho et al. learn the mean only and fix $\boldsymbol\Sigma_\theta = \sigma_t^2 \mathbf I$ with
# $\sigma_t^2 = \beta_t$ or $\tilde\beta_t$ (their Sec. 3.2); Nichol & Dhariwal 2021 (Eq. 15)
# learn it too (section 10). What makes it learnable: given $\mathbf x_0$, the reverse step
# *is* known in closed form (Ho et al. 2020, Eqs. 6-7),
#
# $$q(\mathbf x_{t-1} \mid \mathbf x_t, \mathbf x_0) = \mathcal N\big(\tilde{\boldsymbol\mu}_t,
# \tilde\beta_t \mathbf I\big), \quad
# \tilde{\boldsymbol\mu}_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}\mathbf x_0
# + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\mathbf x_t, \quad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t,$$
#
# and, writing $\mathbf x_0$ through the noise that made $\mathbf x_t$, the mean becomes
# (Ho et al. 2020, Eq. 11)
#
# $$\boldsymbol\mu_\theta(\mathbf x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(\mathbf x_t -
# \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\boldsymbol\varepsilon_\theta(\mathbf x_t, t)\Big):$$
#
# the network only has to predict the noise $\boldsymbol\varepsilon$.
#
# ddpmlab: `q_posterior` (Eq. 7), `mean_from_eps` (Eq. 11).
#
# **Check.** (a) Draw $\mathbf x_{t-1} \sim q(\cdot \mid \mathbf x_0)$ and $\mathbf x_t$ from it
# (Eq. 2) many times: the regression of $\mathbf x_{t-1}$ on $\mathbf x_t$ has the slope and the
# residual variance of Eq. 7. (b) With the true noise, Eq. 11 gives Eq. 7's mean.

# %%
s, tt = cosine, 40  # index tt: x_{tt} -> x_{tt+1} in 0-based indices
g = torch.Generator().manual_seed(1)
x0 = torch.full((400_000, 1), 0.7)
t_prev = torch.full((len(x0),), tt - 1)
x_prev = q_sample(s, x0, t_prev, torch.randn(x0.shape, generator=g))
beta = s.beta[tt]
x_t = (1 - beta).sqrt() * x_prev + beta.sqrt() * torch.randn(x0.shape, generator=g)  # Eq. 2
slope = float(torch.cov(torch.cat([x_prev, x_t], 1).T)[0, 1] / x_t.var())
resid = float((x_prev - x_prev.mean() - slope * (x_t - x_t.mean())).var())
print(f"slope {slope:.4f} vs coef of x_t {float(s.posterior_mean_coef_xt[tt]):.4f}; "
      f"residual var {resid:.3e} vs beta~ {float(s.posterior_variance[tt]):.3e}")
assert abs(slope - float(s.posterior_mean_coef_xt[tt])) < 0.01
assert abs(resid / float(s.posterior_variance[tt]) - 1) < 0.02
x0 = torch.from_numpy(data).float()
eps = torch.randn(x0.shape, generator=g)
t = torch.full((len(x0),), tt)
x_t = q_sample(s, x0, t, eps)
diff = (mean_from_eps(s, x_t, t, eps) - q_posterior(s, x0, x_t, t)[0]).abs().max()
print(f"Eq. 11 with the true noise vs Eq. 7: max |diff| = {float(diff):.1e}")
assert diff < 1e-4

# %% [markdown]
# ## 5. The ELBO and its terms
#
# $q$ and $p_\theta$ together are a variational auto-encoder with $T$ latent layers, so the
# negative log-likelihood is bounded by a sum of per-step terms (Ho et al. 2020, Eq. 5):
#
# $$-\log p_\theta(\mathbf x_0) \le
# \underbrace{D_{KL}\big(q(\mathbf x_T \mid \mathbf x_0)\,\|\,p(\mathbf x_T)\big)}_{L_T}
# + \sum_{t > 1}\underbrace{D_{KL}\big(q(\mathbf x_{t-1} \mid \mathbf x_t, \mathbf x_0)\,\|\,
# p_\theta(\mathbf x_{t-1} \mid \mathbf x_t)\big)}_{L_{t-1}}
# \underbrace{- \log p_\theta(\mathbf x_0 \mid \mathbf x_1)}_{L_0}.$$
#
# Every $L_{t-1}$ is a KL between two Gaussians, a closed form; with a fixed variance it is a
# squared distance between the two means. $L_T$ has no parameter: it measures how far the
# schedule leaves $\mathbf x_T$ from $\mathcal N(\mathbf 0, \mathbf I)$.
#
# ddpmlab: `likelihood.prior_kl` ($L_T$), `likelihood.vlb_term` ($L_{t-1}$, $L_0$),
# `likelihood.nll_bound` (the whole bound), `ddpmlab.run_bound` (on a trained run, in the
# data's units; section 9 draws its terms).
#
# **Check.** $L_T$ in nats for the standardised swiss roll: tiny for the cosine schedule,
# large for the course's schedule at $T = 150$.

# %%
z = torch.from_numpy((data - data.mean(0)) / data.std(0)).float()
for name in ("cosine", "linear_unscaled", "sigmoid"):
    print(f"{name:16s} L_T = {float(prior_kl(make_schedule(name, 150, warn=False), z).mean()):.3g}"
          " nats")
assert prior_kl(cosine, z).mean() < 1e-3 < prior_kl(seed_schedule, z).mean()

# %% [markdown]
# ## 6. The simplified objective
#
# With the mean written through $\boldsymbol\varepsilon_\theta$ (Eq. 11), each KL term is, up
# to a weight, $\|\boldsymbol\varepsilon - \boldsymbol\varepsilon_\theta(\mathbf x_t, t)\|^2$.
# Ho et al. drop the weights and train on (their Eq. 14)
#
# $$L_\text{simple} = \mathbb E_{t, \mathbf x_0, \boldsymbol\varepsilon}
# \Big\|\boldsymbol\varepsilon - \boldsymbol\varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,
# \mathbf x_0 + \sqrt{1-\bar\alpha_t}\,\boldsymbol\varepsilon,\ t\big)\Big\|^2.$$
#
# ddpmlab: `eps_loss(schedule, denoiser, x0)`, where a denoiser is any function
# `(x_t, t) -> eps_hat`.
#
# **Check.** For data $\mathbf x_0 \sim \mathcal N(\mathbf 0, \mathbf I)$ the best possible
# denoiser is known: $\mathbf x_t$ is then standard normal too and
# $\mathbb E[\boldsymbol\varepsilon \mid \mathbf x_t] = \sqrt{1-\bar\alpha_t}\,\mathbf x_t$,
# whose error per dimension is $\bar\alpha_t$. So its $L_\text{simple}$ is the mean of
# $\bar\alpha_t$ over $t$: no network can score lower on this data.

# %%
def ideal(x_t, t):  # E[eps | x_t] for x_0 ~ N(0, I)
    return cosine.sqrt_one_minus_alpha_bar[t, None] * x_t


gauss = torch.randn(400_000, 2, generator=torch.Generator().manual_seed(2))
loss = float(eps_loss(cosine, ideal, gauss, generator=torch.Generator().manual_seed(3)))
print(f"L_simple of the ideal denoiser {loss:.4f} vs mean alpha_bar "
      f"{float(cosine.alpha_bar.mean()):.4f}")
assert abs(loss - float(cosine.alpha_bar.mean())) < 0.005

# %% [markdown]
# ## 7. The training algorithm
#
# Ho et al. 2020, Algorithm 1, on a batch of data rather than one example:
#
# 1. repeat until convergence:
#    1. $\mathbf x_0 \sim q(\mathbf x_0)$
#    2. $t \sim \mathrm{Uniform}(\{1, \dots, T\})$
#    3. $\boldsymbol\varepsilon \sim \mathcal N(\mathbf 0, \mathbf I)$
#    4. gradient step on $\nabla_\theta \big\|\boldsymbol\varepsilon -
#       \boldsymbol\varepsilon_\theta(\sqrt{\bar\alpha_t}\,\mathbf x_0 +
#       \sqrt{1-\bar\alpha_t}\,\boldsymbol\varepsilon, t)\big\|^2$
#
# ddpmlab: `train_run(config, out)` runs it (Adam, gradient clipping, EMA weights, snapshots
# of the reverse process at 5 %, 50 % and 100 % of training), then `evaluate_run` scores 2,000
# samples against held-out data beside the *floor*: the same metric between two independent
# real samples of the same size, what a perfect model would score. 1-NNA: 0.5 means samples
# and data cannot be told apart; W1 / floor: 1 is a perfect model.
#
# First the course's exact configuration (`--config seed`: its MLP, sigmoid betas,
# $T = 150$, batch 128, Adam $10^{-3}$, 4,000 epochs of 8 batches). *Slips in the course's
# loop:* its `if t%100==0` sampling sits inside the batch loop, so every 100th epoch samples
# 8 times, keeping the autograd graph (no `torch.no_grad`): sampling dominates its training
# time. ddpmlab samples only at the snapshot steps, under `torch.inference_mode`.

# %%
results = {}


def train(name: str, config: RunConfig):  # train WORK/name with its figures, then score it
    begin = time.perf_counter()
    run = train_run(config, WORK / name, evaluate=False)
    evaluation = evaluate_run(run, **EVAL)
    results[name] = (config, evaluation, time.perf_counter() - begin)
    print(f"{name}: {config.model.name}, {config.diffusion.schedule} T = "
          f"{config.diffusion.timesteps}, {config.train.steps} steps, "
          f"{results[name][2]:.1f} s with figures and evaluation")
    print(evaluation)
    return run


seed_config = replace(RunConfig(), merge(load_toml("seed"), SETTINGS))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ScheduleWarning)  # the course's schedule: warned above
    seed_run = train("course", seed_config)

# %% [markdown]
# The reverse process at the beginning, the middle and the end of training (the course's three
# figures, with its configuration).

# %%
for i, name in enumerate(("begin", "middle", "end"), start=1):
    keep(seed_run, f"reverse_{name}.png", f"curve_150_{i}.png")

# %% [markdown]
# Now ddpmlab's defaults (a residual MLP with Fourier features, the cosine schedule with
# $T = 200$, batch 512, a warmed-up and decayed learning rate, EMA weights, and the network
# trained to predict the velocity $\mathbf v_t = \sqrt{\bar\alpha_t}\,\boldsymbol\varepsilon -
# \sqrt{1-\bar\alpha_t}\,\mathbf x_0$ of Salimans & Ho 2022 (Sec. 4) rather than
# $\boldsymbol\varepsilon$, the same information written another way; and, in place of each
# example's own $\mathbf x_0$ in that target, its posterior mean given $\mathbf x_t$ over it and
# 512 other training points, the *stable target field* of Xu, Tong & Jaakkola 2023, which
# takes the target's variance away at high noise, at a bias that vanishes as the reference
# grows; chosen by measurement, `bench/README.md`):

# %%
default = default_config("swiss_roll", SETTINGS)
default_run = train("defaults", default)
keep(default_run, "training.png", "training_defaults.png")
keep(seed_run, "samples.png", "samples_course.png")
keep(default_run, "samples.png", "samples_defaults.png")

# %% [markdown]
# ## 8. The networks
#
# **Points.** The course's $\boldsymbol\varepsilon_\theta$ is an MLP of three hidden layers of
# 64 ReLU units, with a learned embedding of $t$ added after each (`seed_mlp`, parameter names
# included). ddpmlab's default for points, `resmlp`, adds Fourier features of the input, a
# sinusoidal embedding of $t$ and residual blocks.
#
# **Images.** Ho et al. 2020 use a U-Net (Ronneberger et al. 2015: a contracting path of
# 3x3 convolutions and 2x2 max-poolings doubling the channels, an expanding path of
# up-convolutions concatenated with the matching contracting maps, 23 convolutions in all).
# *Slips in the course:* it cites the U-Net with the DDPM paper's link; it keeps the original's
# cropping, which exists because the 2015 network uses unpadded convolutions and returns a
# smaller map than its input, while a noise predictor must return its input's shape (so
# padded convolutions and plain concatenation); and it does not say how $t$ enters: Ho et al.
# add a timestep embedding inside every residual block. ddpmlab: `seed_unet` (the course's
# U-Net, padded) and `unet` (Ho et al.'s, as improved-diffusion writes it).
#
# **Check.** Parameter counts, and every network returns its input's shape.

# %%
for name, source, shape in (("seed_mlp", "swiss_roll", (2,)), ("resmlp", "swiss_roll", (2,)),
                            ("seed_unet", "digits", (1, 8, 8)), ("unet", "digits", (1, 8, 8)),
                            ("unet", "mnist", (1, 28, 28))):
    net = build_model(default_config(source, {"model": {"name": name}}).model, 200, shape)
    x = torch.zeros(3, *shape)
    out = net(x, torch.tensor([0, 99, 199]))
    print(f"{name:10s} ({source}) {sum(p.numel() for p in net.parameters()):>9,} parameters, "
          f"input {tuple(x.shape)} -> output {tuple(out.shape)}")
    assert out.shape == x.shape

# %% [markdown]
# ## 9. The sampler
#
# Ho et al. 2020, Algorithm 2: $\mathbf x_T \sim \mathcal N(\mathbf 0, \mathbf I)$, then for
# $t = T, \dots, 1$: $\mathbf z \sim \mathcal N(\mathbf 0, \mathbf I)$ if $t > 1$, else
# $\mathbf z = \mathbf 0$, and
#
# $$\mathbf x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(\mathbf x_t -
# \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\boldsymbol\varepsilon_\theta(\mathbf x_t, t)\Big)
# + \sigma_t \mathbf z.$$
#
# *Slips in the course:* its `p_sample` adds noise at the last step too (the paper adds none
# at $t = 1$), and it keeps the autograd graph of every step. ddpmlab: `ddpm_chain` yields
# every state from $\mathbf x_T$ to $\mathbf x_0$ under `torch.inference_mode`, without noise
# at the last step; `ddpm_sample` keeps the last state only.
#
# **Check.** (a) The last step is the mean alone. (b) No autograd graph is kept. (c) With the
# ideal denoiser of section 6 for $\mathcal N(\mathbf 0, \mathbf I)$ data, the true reverse
# step has variance $\beta_t$ (Ho et al.'s Sec. 3.2): with $\sigma_t^2 = \beta_t$ the samples
# have variance 1, with $\tilde\beta_t$ (optimal for a single point) less.

# %%
g = torch.Generator().manual_seed(4)
chain = list(ddpm_chain(ideal, cosine, (1000, 2), generator=g))
(n1, x1), (n0, x_0) = chain[-2], chain[-1]
t0 = torch.zeros(1000, dtype=torch.long)
print(f"states {chain[0][0]} .. {n0}; last step - its mean: "
      f"{float((x_0 - reverse_mean(cosine, x1, t0, ideal(x1, t0))).abs().max()):.1e}")
assert torch.equal(x_0, reverse_mean(cosine, x1, t0, ideal(x1, t0)))
net = build_model(RunConfig().model, 150)
x = ddpm_sample(net, cosine, (10, 2))
print(f"sampled with a trainable network: requires_grad {x.requires_grad}, "
      f"grad_fn {x.grad_fn}")
assert not x.requires_grad and x.grad_fn is None
for variance in ("fixed_large", "fixed_small"):
    x = ddpm_sample(ideal, cosine, (200_000, 2), variance=variance,
                    generator=torch.Generator().manual_seed(5))
    print(f"sigma^2 = {'beta' if variance == 'fixed_large' else 'beta~'}: "
          f"sample mean {x.mean():.3f}, variance {x.var():.3f} (data: 0, 1)")
    assert (abs(x.var() - 1) < 0.01) == (variance == "fixed_large")

# %% [markdown]
# ## 10. Results
#
# ### Reverse diffusion on the course's three point clouds
#
# Starting from 2-D Gaussian noise, the trained reverse process draws the data (ddpmlab's
# defaults; the course shows the same GIFs):

# %%
keep(default_run, "reverse.gif", "reversediffusion.gif")
for shape in ("circles", "moons"):
    run = train(shape, default_config(shape, SETTINGS))
    keep(run, "reverse.gif", f"reversediffusion{shape}.gif")

# %% [markdown]
# ### The bound, term by term
#
# `run_bound` evaluates every term of Eq. 5 on held-out data with the trained network:
# the KL terms are largest at small $t$, where the network must get the details right (the
# jump at the very last step is where the cosine schedule's $\beta_t$ reaches its cap, 0.999).

# %%
bound = run_bound(default_run)
print(format_bound(bound))
keep(default_run, "nll_terms.png", "nll_terms.png")

# %% [markdown]
# ### The learned variance against the two fixed ones
#
# Nichol & Dhariwal 2021 (Eq. 15) let the network output $v$ and interpolate, in log space,
# between the two choices of Ho et al.:
# $\boldsymbol\Sigma_\theta = \exp(u \log\beta_t + (1-u)\log\tilde\beta_t)$, $u = (v+1)/2$,
# trained with $L_\text{simple} + \lambda L_\text{vlb}$ ($\lambda = 0.001$).
# ddpmlab: `--variance learned_range`, `diffusion.reverse_log_variance`. Below: the learned
# $\sigma_t^2$, averaged over held-out points, beside $\beta_t$ and $\tilde\beta_t$, each divided by
# $\beta_t$ (as Nichol & Dhariwal's Fig. 1 draws $\tilde\beta_t / \beta_t$: the two fixed choices
# differ only over the first steps); and the bound it reaches.

# %%
learned = train("learned", replace(default, {"diffusion": {"variance": "learned_range"}}))
z = torch.from_numpy(learned.kind.scaler.transform(learned.data.heldout[:1000])).float()
g = torch.Generator().manual_seed(6)
sigma2 = []
with torch.inference_mode():
    for step in range(learned.schedule.T):
        t = torch.full((len(z),), step)
        x_t = q_sample(learned.schedule, z, t, torch.randn(z.shape, generator=g))
        _, v = split_output(learned.model(x_t, t), "learned_range")
        sigma2.append(float(reverse_log_variance(learned.schedule, t, x_t, "learned_range", v)
                            .exp().mean()))
steps = np.arange(2, learned.schedule.T + 1)  # beta~ is 0 at the first step: left out
beta = learned.schedule.beta[1:].numpy()
small = learned.schedule.posterior_variance[1:].numpy() / beta
ratio = np.array(sigma2[1:]) / beta
viz.plot_curves(steps, {"beta_t (fixed_large)": np.ones_like(beta),
                        "beta~_t (fixed_small)": small,
                        "learned sigma_t^2 (mean over x_t)": ratio},
                OUT / "variances.png", xlabel="step t", ylabel="sigma_t^2 / beta_t",
                title="reverse variances, relative to beta_t", dashed=("beta_t (fixed_large)",))
print(f"sigma^2 / beta at step 2: beta~ {small[0]:.3f}, learned {ratio[0]:.3f}; "
      f"at step 20: beta~ {small[18]:.3f}, learned {ratio[18]:.3f}")
show("variances.png")
learned_bound = run_bound(learned)
print(format_bound(learned_bound))
print(f"bound: fixed_small {bound['nats_per_dim']:.4f}, learned_range "
      f"{learned_bound['nats_per_dim']:.4f} nats/dim")
keep(learned, "nll_terms.png", "nll_terms_learned.png")

# %% [markdown]
# ### The same story on images: digits with `seed_unet` and `unet`
#
# scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), pixels scaled to $[-1, 1]$.
# The same maths, with a U-Net: first the course's (`seed_unet`), then ddpmlab's default
# (`unet`), each with its figures: the forward process, the reverse process during training,
# samples beside real digits, and the reverse diffusion. Quality is measured in the features
# of a small classifier shipped with ddpmlab (Fréchet distance and its floor, the share of
# confidently classified samples beside real digits').

# %%
unet_run = train("digits_unet", default_config("digits", SETTINGS))
seed_unet_run = train("digits_seed_unet", default_config(
    "digits", merge({"model": {"name": "seed_unet"}, "train": {"steps": 800}}, SETTINGS)))
keep(unet_run, "data.png", "digits_data.png")
keep(unet_run, "forward.png", "digits_forward.png")
for name, run in (("seed_unet", seed_unet_run), ("unet", unet_run)):
    keep(run, "training.png", f"digits_{name}_training.png")
    keep(run, "samples.png", f"digits_{name}_samples.png")
    keep(run, "reverse.gif", f"digits_{name}.gif")

# %% [markdown]
# ### From the DDIM ODE to flow matching
#
# Section 9's sampler draws fresh noise at every step. DDIM (Song, Meng & Ermon 2021, Eq. 14)
# showed that the same network also defines an ODE: with
# $\bar{\mathbf x} = \mathbf x_t / \sqrt{\bar\alpha_t}$ and
# $\sigma = \sqrt{1/\bar\alpha_t - 1}$, $d\bar{\mathbf x} / d\sigma =
# \boldsymbol\varepsilon_\theta$. Put $t = \sigma / (1 + \sigma)$ and
# $\mathbf x = (1 - t)\bar{\mathbf x}$: then
# $\mathbf x = (1 - t)\hat{\mathbf x}_0 + t\hat{\boldsymbol\varepsilon}$ and
#
# $$\frac{d\mathbf x}{dt} = \hat{\boldsymbol\varepsilon} - \hat{\mathbf x}_0 .$$
#
# That is flow matching's ODE (Lipman et al. 2023, Eq. 22-23 with $\sigma_\text{min} = 0$;
# Liu et al. 2023's rectified flow): the straight path
# $\mathbf x_t = (1 - t)\mathbf x_0 + t\boldsymbol\varepsilon$, $t \in [0, 1]$, and a network
# trained by least squares to predict its velocity
# $\mathbf u = \boldsymbol\varepsilon - \mathbf x_0$ directly. ddpmlab: `ddpmlab train DATA
# --objective flow`, sampled by Euler or Heun steps (`--sampler euler`, `--sampler heun`,
# Karras et al. 2022, Algorithm 1) on a uniform or shifted grid, by the adaptive solver
# (`--sampler ode`), with its exact likelihood by the code of `evaluate --exact-nll`; the
# variational bound and ancestral sampling belong to the DDPM's chain and are refused.
#
# Salimans & Ho's v-prediction is the same velocity in another clock: with
# $\mathbf x_t = \cos\phi\,\mathbf x_0 + \sin\phi\,\boldsymbol\varepsilon$
# ($\cos\phi = \sqrt{\bar\alpha_t}$), $\mathbf v = d\mathbf x_t / d\phi =
# \cos\phi\,\boldsymbol\varepsilon - \sin\phi\,\mathbf x_0$; since
# $\boldsymbol\varepsilon = \sin\phi\,\mathbf x_t + \cos\phi\,\mathbf v$ and
# $\mathbf x_0 = \cos\phi\,\mathbf x_t - \sin\phi\,\mathbf v$ (their Appendix D),
#
# $$\mathbf u = \boldsymbol\varepsilon - \mathbf x_0 = (\sin\phi - \cos\phi)\,\mathbf x_t
# + (\cos\phi + \sin\phi)\,\mathbf v .$$
#
# **Check.** (a) For gaussians8 the exact velocity is a closed form (`flow.mixture_velocity`,
# from `mixture.py`); the exact DDPM field written in the flow's time equals it: one ODE in
# two clocks. (b) From the same noise, that ODE in the DDPM's own coordinates and in the
# flow's: the flow's paths are nearly straight, the diffusion's bulge outwards midway, where
# its $\mathbf x_t$ is the flow's times $1/\sqrt{(1-t)^2 + t^2}$, up to $\sqrt 2$ at
# $t = 1/2$; straighter paths leave Euler's few steps less to get wrong. (c) The
# default run predicts $\mathbf v$: its velocity by the formula above is the one ddpmlab's
# flow samplers step. (d) A flow run on gaussians8: its learned velocity against the exact
# one, as the score figure compares scores (mean $1 - \cos$ over noised held-out points; in
# the tests' fast mode, 20 training steps, it has learned little).

# %%
scale = float(np.sqrt(2 + GAUSSIANS8_STD**2))  # gaussians8 standardised, as a run sees it
mix = GaussianMixture.isotropic(GAUSSIANS8_CENTRES / scale, GAUSSIANS8_STD / scale)
x = torch.randn(500, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
for t in (0.1, 0.5, 0.9):  # (a) one ODE in two clocks
    gap = float((diffusion_velocity(mixture_field(mix))(x, t)
                 - mixture_velocity(mix)(x, t)).abs().max())
    print(f"t = {t}: |DDPM's exact velocity - the flow's| at most {gap:.1e}")
    assert gap < 1e-8
x_T = torch.randn(40, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
grid = flow_grid(200, "uniform")  # (b) the same 40 noises, 200 Euler steps of the exact field
flow_paths = np.stack([x.numpy() for _, x in
                       step_along(euler_step, mixture_velocity(mix), grid, x_T, 200)])
c = np.sqrt((1 - grid) ** 2 + grid**2)[:, None, None]  # x_vp = x_flow / c: the DDPM's own x_t
viz.plot_trajectories({"DDPM's ODE in its x_t (variance preserving)": flow_paths / c,
                       "flow matching: x_t = (1 - t) x_0 + t eps": flow_paths},
                      mix.sample(2000, torch.Generator().manual_seed(9)).numpy(),
                      OUT / "flow_paths.png", title="one ODE, two clocks, from the same noise")
show("flow_paths.png")
k = default_run.schedule.T // 2  # (c) a v-prediction run's velocity by the formula above
ab = float(default_run.schedule.alpha_bar64[k])
cos, sin = np.sqrt(ab), np.sqrt(1 - ab)
z = torch.from_numpy(default_run.kind.scaler.transform(default_run.data.heldout[:500])).float()
kk = torch.full((len(z),), k)
x_k = q_sample(default_run.schedule, z, kk, torch.randn(z.shape, generator=g))
with torch.inference_mode():
    u = (sin - cos) * x_k + (cos + sin) * default_run.model(x_k, kk)
    field = diffusion_velocity(network_field(default_run.model, default_run.schedule,
                                             prediction="v"))
    t_k = sin / (cos + sin)  # t = sigma / (1 + sigma), sigma = sin / cos
    sampled = field(x_k / (cos + sin), t_k)  # the flow's x = x_t / (cos + sin)
print(f"v-run at step {k + 1}: formula vs the flow samplers' velocity, max gap "
      f"{float((u - sampled).abs().max()):.1e}")
assert torch.allclose(u, sampled, atol=1e-4)
flow_run = train("flow", default_config("gaussians8", merge(
    {"diffusion": {"objective": "flow"}}, SETTINGS)))
exact = GaussianMixture.isotropic(GAUSSIANS8_CENTRES, GAUSSIANS8_STD).affine(
    flow_run.kind.scaler.mean, flow_run.kind.scaler.std)  # (d) in the run's model space
z = torch.from_numpy(flow_run.kind.scaler.transform(flow_run.data.heldout[:1000])).float()
learned = network_velocity(flow_run.model, flow_run.schedule.T)
for n in (flow_run.schedule.T // 10, flow_run.schedule.T // 2):
    t = n / flow_run.schedule.T  # a grid time: t_k = (k + 1) / T
    x_t = path_sample(z, torch.randn(z.shape, generator=g), torch.full((len(z),), t))
    with torch.inference_mode():
        a, b = learned(x_t, t).double(), mixture_velocity(exact)(x_t.double(), t)
    cos_error = float((1 - torch.nn.functional.cosine_similarity(a, b)).mean())
    print(f"flow run, t = {t:.2f}: learned velocity against the exact one, "
          f"mean 1 - cos {cos_error:.3f}")
    assert np.isfinite(cos_error)

# %% [markdown]
# ### Summary: the course's configuration beside ddpmlab's defaults
#
# Every run of this tutorial, with its wall time (training, evaluation and figures) and its
# quality beside the floor.

# %%
print(f"{'run':<18}{'network':<11}{'steps':>7}{'seconds':>9}   quality (floor)")
for name, (config, evaluation, seconds) in results.items():
    m = evaluation.metrics
    quality = (f"1-NNA {m['1nna']['value']:.3f} ({m['1nna']['floor']:.3f}), "
               f"W1 / floor {m['w1']['ratio']:.2f}" if "w1" in m else
               f"FD / floor {m['fd']['ratio']:.2f}, confident {m['confident']['value']:.3f} "
               f"({m['confident']['floor']:.3f})")
    print(f"{name:<18}{config.model.name:<11}{config.train.steps:>7}{seconds:>9.1f}   {quality}")
print(f"whole tutorial: {time.perf_counter() - START:.0f} s; figures in {OUT}")
shutil.rmtree(WORK)
