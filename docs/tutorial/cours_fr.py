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
# # Modèles de diffusion, avec ddpmlab
#
# Ce tutoriel suit le cours *Modèles de diffusion* (le texte source de ddpmlab) section par
# section : chaque équation est écrite, puis calculée par la fonction de ddpmlab qui
# l'implémente, puis vérifiée par un nombre que l'on peut contrôler, puis tracée. Là où le
# cours contient une erreur, elle est signalée à l'endroit où elle apparaît, et ce sont les
# articles qui font foi.
#
# On l'exécute comme un script (`python docs/tutorial/cours_fr.py`) ou on l'ouvre comme un
# notebook (`jupytext --to ipynb docs/tutorial/cours_fr.py`). L'exécution complète entraîne
# réellement chaque modèle du cours, en quelques minutes sur le processeur d'un portable ;
# `DDPMLAB_TUTORIAL_FAST=1` n'entraîne que quelques pas (les figures montrent alors des
# modèles à peine entraînés : c'est le mode des tests). Les figures sont écrites dans
# `DDPMLAB_TUTORIAL_OUT` (par défaut `docs/tutorial/figures/`).

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
# un seul thread torch (ce qui partage le mieux une machine chargée) ; mode rapide
# (les tests) : 20 pas d'apprentissage, T = 20, petites évaluations
SETTINGS = merge({"train": {"threads": 1}},
                 {"data": {"heldout": 400}, "diffusion": {"timesteps": 20},
                  "train": {"steps": 20}} if FAST else {})
EVAL = {"n": 200, "repeats": 1} if FAST else {}
# les figures : docs/tutorial/figures dans le dépôt, ./tutorial_figures ailleurs
HERE = Path.cwd()
CHECKOUT = next((p / "docs" / "tutorial" for p in (HERE, *HERE.parents)
                 if (p / "docs" / "tutorial").is_dir()), None)
OUT = Path(os.environ.get("DDPMLAB_TUTORIAL_OUT",
                          CHECKOUT / "figures" if CHECKOUT else HERE / "tutorial_figures"))
OUT.mkdir(parents=True, exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="ddpmlab-tutorial-"))  # les modèles, effacés à la fin
START = time.perf_counter()


def show(name: str) -> Path:  # affiche OUT/name dans Jupyter ; son chemin dans un script
    path = OUT / name
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    else:
        print("figure:", path)
    return path


def keep(run, figure: str, name: str) -> Path:  # copie une figure d'un modèle dans OUT, renommée
    shutil.copyfile(run.path / "figures" / figure, OUT / name)
    return show(name)


# %% [markdown]
# ## 1. Introduction : deux processus
#
# Un modèle de diffusion (de débruitage) transforme un bruit tiré d'une loi simple en un
# échantillon des données. Il se compose de deux processus indexés par le temps
# $t \in \{0, \dots, T\}$ :
#
# - le **processus avant** $q$, fixé à l'avance, ajoute un peu de bruit gaussien à chaque pas
#   jusqu'à ce qu'il ne reste, en $t = T$, qu'un bruit gaussien isotrope
#   $\mathcal N(\mathbf 0, \mathbf I)$ (isotrope : la covariance vaut $\sigma^2 \mathbf I$) ;
# - le **processus inverse** $p_\theta$, un réseau de neurones, apprend à retirer ce bruit pas
#   à pas, du bruit pur en $t = T$ jusqu'à un échantillon des données en $t = 0$.
#
# Les deux images du cours tirées des articles (le schéma des deux processus, Ho et al. 2020,
# fig. 2 ; le U-Net, Ronneberger et al. 2015, fig. 1) sont des illustrations, pas des
# résultats : elles ne sont pas redessinées. Toutes les autres figures du cours sont
# régénérées ici par ddpmlab.
#
# Les données du cours sont un nuage de points 2-D, un swiss roll (`ddpmlab.data.resolve`, le
# même `make_swiss_roll(noise=0.1)` divisé par 10). Il joue le rôle de $q(\mathbf x_0)$.

# %%
data = resolve("swiss_roll", n=1000, seed=0, heldout=1000).train  # (1000, 2) float64
print("x_0:", data.shape, "mean", data.mean(axis=0).round(3), "std", data.std(axis=0).round(3))
viz.plot_points(data, OUT / "curve.png", title="the data x_0 (swiss roll)")
show("curve.png")

# %% [markdown]
# ## 2. Le processus avant et sa forme close
#
# Avec des variances $0 < \beta_1 < \dots < \beta_T < 1$ fixées à l'avance, chaque pas réduit
# l'échantillon précédent et lui ajoute du bruit (Ho et al. 2020, éq. 2) :
#
# $$q(\mathbf x_t \mid \mathbf x_{t-1}) = \mathcal N\big(\sqrt{1-\beta_t}\,\mathbf x_{t-1},
# \ \beta_t \mathbf I\big), \qquad
# \mathbf x_t = \sqrt{1-\beta_t}\,\mathbf x_{t-1} + \sqrt{\beta_t}\,\boldsymbol\varepsilon,
# \quad \boldsymbol\varepsilon \sim \mathcal N(\mathbf 0, \mathbf I).$$
#
# Une somme de gaussiennes indépendantes est gaussienne : on peut donc tirer $\mathbf x_t$
# directement à partir de $\mathbf x_0$ (Ho et al. 2020, éq. 4), avec $\alpha_t = 1 - \beta_t$
# et $\bar\alpha_t = \prod_{s=1}^t \alpha_s$ :
#
# $$q(\mathbf x_t \mid \mathbf x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,\mathbf x_0,
# \ (1-\bar\alpha_t)\mathbf I\big).$$
#
# ddpmlab : `make_schedule(name, T)` précalcule toutes les constantes ($\beta_t$,
# $\bar\alpha_t$, ...) en float64 ; `q_sample(schedule, x0, t, eps)` est l'éq. 4. Les pas de
# temps sont indexés `0..T-1` : l'indice `t` est le pas $t+1$ de l'article (`t = 0` : un pas
# de bruitage appliqué).
#
# **Vérification.** On prend un point $\mathbf x_0$, on applique 60 fois le noyau d'un pas
# (éq. 2) à 200 000 copies de ce point, et on compare la moyenne et la variance empiriques à
# la forme close (éq. 4), ainsi qu'à `q_sample`.

# %%
schedule = make_schedule("cosine", 150)
x0 = torch.tensor([[1.0, -0.5]]).repeat(200_000, 1)
g = torch.Generator().manual_seed(0)
steps = 60
x = x0.clone()
for s in range(steps):  # éq. 2, pas à pas
    beta = schedule.beta[s]
    x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=g)
t = torch.full((len(x0),), steps - 1)
direct = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))  # éq. 4, d'un coup
ab = float(schedule.alpha_bar[steps - 1])
print(f"after {steps} steps: closed form mean {np.sqrt(ab) * 1.0:.4f}, var {1 - ab:.4f}")
print(f"  step by step: mean {x[:, 0].mean():.4f}, var {x[:, 0].var():.4f}")
print(f"  q_sample:     mean {direct[:, 0].mean():.4f}, var {direct[:, 0].var():.4f}")
assert abs(x[:, 0].mean() - np.sqrt(ab)) < 0.01 and abs(x[:, 0].var() - (1 - ab)) < 0.01
assert abs(direct[:, 0].mean() - np.sqrt(ab)) < 0.01
assert abs(direct[:, 0].var() - (1 - ab)) < 0.01

# %% [markdown]
# La figure du processus avant du cours : $q(\mathbf x_n \mid \mathbf x_0)$ à 20 instants, des
# données ($n = 0$) jusqu'à $n = T$, avec le schéma du cours lui-même (section suivante) et
# $T = 150$. Les derniers panneaux ressemblent à du bruit, mais ce n'est pas
# $\mathcal N(\mathbf 0, \mathbf I)$ : avec $\bar\alpha_T \approx 0.69$, $\mathbf x_T$ garde
# $0.83\,\mathbf x_0$ ; il est décentré et plus étroit que le bruit dont part
# l'échantillonneur (les données du cours, divisées par 10, sont petites devant le bruit, qui
# les masque).

# %%
seed_schedule = make_schedule("sigmoid", 150, warn=False)
x0 = torch.from_numpy(data).float()
g = torch.Generator().manual_seed(0)
frames = [(0, data)]
for n in (round(i * 150 / 19) for i in range(1, 20)):  # n pas de bruitage = indice n - 1
    t = torch.full((len(x0),), n - 1)
    frames.append((n, q_sample(seed_schedule, x0, t, torch.randn(x0.shape, generator=g))
                   .numpy()))
viz.plot_forward_grid(frames, OUT / "q.png")
print(f"x_T: mean {frames[-1][1].mean(0).round(2)}, std {frames[-1][1].std(0).round(2)}; "
      "N(0, I): mean [0. 0.], std [1. 1.]")
show("q.png")

# %% [markdown]
# ## 3. Les schémas de variance
#
# **Linéaire** (Ho et al. 2020, sec. 4) : $\beta_t$ croît linéairement de $10^{-4}$ à $0.02$.
# Ces valeurs ont été choisies pour $T = 1000$. Avec $T = 150$, la somme des $\beta_t$ vaut
# environ 1,5 et $\bar\alpha_T \approx e^{-1.5} \approx 0.22$ : $\mathbf x_T$ garde
# $\sqrt{0.22} \approx 47\,\%$ de l'amplitude des données, et l'échantillonnage part de
# $\mathcal N(\mathbf 0, \mathbf I)$, une loi que le réseau n'a jamais vue. improved-diffusion
# multiplie les deux bornes par $1000/T$ (le `linear` de ddpmlab ; les valeurs de l'article
# sont `linear_unscaled`).
#
# **Cosinus** (Nichol & Dhariwal 2021, éq. 17) :
#
# $$\bar\alpha_t = \frac{f(t)}{f(0)}, \quad
# f(t) = \cos^2\!\Big(\frac{\pi}{2}\,\frac{t/T + s}{1 + s}\Big), \quad s = 0.008, \qquad
# \beta_t = \min\Big(1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}},\ 0.999\Big).$$
#
# *Erreur du cours :* il omet le carré du cosinus (son $\bar\alpha_t$ est alors la racine
# carrée de celui de l'article : le bruit arrive plus tard) et écrit $\bar\alpha_t - 1$ au lieu
# de $\bar\alpha_{t-1}$ (on aurait alors $\beta_t = 1 - \bar\alpha_t/(\bar\alpha_t - 1) > 1$,
# qui n'est pas une variance).
#
# **Sigmoïde sur $\beta$** (le code du cours) : le cours dit que ses $\beta_t$ croissent
# linéairement, mais son code les tire d'une sigmoïde,
# $\beta = \mathrm{sigmoid}(\mathrm{linspace}(-6, 6, T)) \cdot (5\cdot10^{-3} - 10^{-5})
# + 10^{-5}$ (le `sigmoid` de ddpmlab ; à ne pas confondre avec le schéma sigmoïde de
# Chen 2023, défini sur $\bar\alpha$). Avec $T = 150$, ces $\beta_t$ somment à environ 0,38,
# donc $\bar\alpha_T \approx 0.69$ : encore plus loin du bruit que le schéma linéaire.
#
# **Vérification.** Le $\bar\alpha$ du cosinus comparé à l'éq. 17 écrite en toutes lettres, et
# le $\bar\alpha_T$ de chaque schéma pour $T = 150$ (ddpmlab avertit quand
# $\bar\alpha_T > 0.01$).

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
# ## 4. Le processus inverse : ce que le réseau apprend
#
# Si l'on connaissait $q(\mathbf x_{t-1} \mid \mathbf x_t)$, on tirerait $\mathbf x_T \sim
# \mathcal N(\mathbf 0, \mathbf I)$ et on débruiterait pas à pas jusqu'à $\mathbf x_0$. Ce
# n'est pas le cas : un réseau l'approche par une gaussienne (Ho et al. 2020, éq. 1) :
#
# $$p_\theta(\mathbf x_{t-1} \mid \mathbf x_t) = \mathcal N\big(\boldsymbol\mu_\theta(\mathbf x_t,
# t),\ \boldsymbol\Sigma_\theta(\mathbf x_t, t)\big).$$
#
# Ho et al. n'apprennent que la moyenne et fixent $\boldsymbol\Sigma_\theta = \sigma_t^2
# \mathbf I$ avec $\sigma_t^2 = \beta_t$ ou $\tilde\beta_t$ (leur sec. 3.2) ; Nichol & Dhariwal
# 2021 (éq. 15) apprennent aussi la variance (section 10). Ce qui rend l'apprentissage
# possible : sachant $\mathbf x_0$, le pas inverse *est* connu en forme close (Ho et al. 2020,
# éq. 6-7),
#
# $$q(\mathbf x_{t-1} \mid \mathbf x_t, \mathbf x_0) = \mathcal N\big(\tilde{\boldsymbol\mu}_t,
# \tilde\beta_t \mathbf I\big), \quad
# \tilde{\boldsymbol\mu}_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}\mathbf x_0
# + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\mathbf x_t, \quad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t,$$
#
# et, en exprimant $\mathbf x_0$ par le bruit qui a produit $\mathbf x_t$, la moyenne devient
# (Ho et al. 2020, éq. 11)
#
# $$\boldsymbol\mu_\theta(\mathbf x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(\mathbf x_t -
# \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\boldsymbol\varepsilon_\theta(\mathbf x_t, t)\Big) :$$
#
# le réseau n'a qu'à prédire le bruit $\boldsymbol\varepsilon$.
#
# ddpmlab : `q_posterior` (éq. 7), `mean_from_eps` (éq. 11).
#
# **Vérification.** (a) On tire de nombreuses fois $\mathbf x_{t-1} \sim q(\cdot \mid
# \mathbf x_0)$ puis $\mathbf x_t$ à partir de lui (éq. 2) : la régression de
# $\mathbf x_{t-1}$ sur $\mathbf x_t$ a la pente et la variance résiduelle de l'éq. 7. (b) Avec
# le vrai bruit, l'éq. 11 redonne la moyenne de l'éq. 7.

# %%
s, tt = cosine, 40  # indice tt (à partir de 0) : le pas x_{tt} -> x_{tt+1}
g = torch.Generator().manual_seed(1)
x0 = torch.full((400_000, 1), 0.7)
t_prev = torch.full((len(x0),), tt - 1)
x_prev = q_sample(s, x0, t_prev, torch.randn(x0.shape, generator=g))
beta = s.beta[tt]
x_t = (1 - beta).sqrt() * x_prev + beta.sqrt() * torch.randn(x0.shape, generator=g)  # éq. 2
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
# ## 5. L'ELBO et ses termes
#
# Ensemble, $q$ et $p_\theta$ forment un auto-encodeur variationnel à $T$ couches latentes : la
# log-vraisemblance négative est donc majorée par une somme de termes, un par pas (Ho et al.
# 2020, éq. 5) :
#
# $$-\log p_\theta(\mathbf x_0) \le
# \underbrace{D_{KL}\big(q(\mathbf x_T \mid \mathbf x_0)\,\|\,p(\mathbf x_T)\big)}_{L_T}
# + \sum_{t > 1}\underbrace{D_{KL}\big(q(\mathbf x_{t-1} \mid \mathbf x_t, \mathbf x_0)\,\|\,
# p_\theta(\mathbf x_{t-1} \mid \mathbf x_t)\big)}_{L_{t-1}}
# \underbrace{- \log p_\theta(\mathbf x_0 \mid \mathbf x_1)}_{L_0}.$$
#
# Chaque $L_{t-1}$ est une divergence de Kullback-Leibler entre deux gaussiennes, en forme
# close ; à variance fixée, c'est une distance quadratique entre les deux moyennes. $L_T$ n'a
# pas de paramètre : il mesure à quelle distance de $\mathcal N(\mathbf 0, \mathbf I)$ le
# schéma laisse $\mathbf x_T$.
#
# ddpmlab : `likelihood.prior_kl` ($L_T$), `likelihood.vlb_term` ($L_{t-1}$, $L_0$),
# `likelihood.nll_bound` (la borne entière), `ddpmlab.run_bound` (sur un modèle entraîné,
# dans les unités des données ; la section 10 trace ses termes).
#
# **Vérification.** $L_T$ en nats pour le swiss roll standardisé : minuscule pour le schéma
# cosinus, grand pour le schéma du cours avec $T = 150$.

# %%
z = torch.from_numpy((data - data.mean(0)) / data.std(0)).float()
for name in ("cosine", "linear_unscaled", "sigmoid"):
    print(f"{name:16s} L_T = {float(prior_kl(make_schedule(name, 150, warn=False), z).mean()):.3g}"
          " nats")
assert prior_kl(cosine, z).mean() < 1e-3 < prior_kl(seed_schedule, z).mean()

# %% [markdown]
# ## 6. L'objectif simplifié
#
# Avec la moyenne écrite à l'aide de $\boldsymbol\varepsilon_\theta$ (éq. 11), chaque terme KL
# vaut, à un poids près, $\|\boldsymbol\varepsilon - \boldsymbol\varepsilon_\theta(\mathbf x_t,
# t)\|^2$. Ho et al. abandonnent les poids et entraînent sur (leur éq. 14)
#
# $$L_\text{simple} = \mathbb E_{t, \mathbf x_0, \boldsymbol\varepsilon}
# \Big\|\boldsymbol\varepsilon - \boldsymbol\varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,
# \mathbf x_0 + \sqrt{1-\bar\alpha_t}\,\boldsymbol\varepsilon,\ t\big)\Big\|^2.$$
#
# ddpmlab : `eps_loss(schedule, denoiser, x0)`, où un débruiteur est n'importe quelle fonction
# `(x_t, t) -> eps_hat`.
#
# **Vérification.** Pour des données $\mathbf x_0 \sim \mathcal N(\mathbf 0, \mathbf I)$, le
# meilleur débruiteur possible est connu : $\mathbf x_t$ est alors lui aussi normal centré
# réduit et $\mathbb E[\boldsymbol\varepsilon \mid \mathbf x_t] = \sqrt{1-\bar\alpha_t}\,
# \mathbf x_t$, dont l'erreur par dimension vaut $\bar\alpha_t$. Son $L_\text{simple}$ est donc
# la moyenne des $\bar\alpha_t$ sur $t$ : aucun réseau ne peut faire mieux sur ces données.

# %%
def ideal(x_t, t):  # E[eps | x_t] pour x_0 ~ N(0, I)
    return cosine.sqrt_one_minus_alpha_bar[t, None] * x_t


gauss = torch.randn(400_000, 2, generator=torch.Generator().manual_seed(2))
loss = float(eps_loss(cosine, ideal, gauss, generator=torch.Generator().manual_seed(3)))
print(f"L_simple of the ideal denoiser {loss:.4f} vs mean alpha_bar "
      f"{float(cosine.alpha_bar.mean()):.4f}")
assert abs(loss - float(cosine.alpha_bar.mean())) < 0.005

# %% [markdown]
# ## 7. L'algorithme d'apprentissage
#
# Ho et al. 2020, algorithme 1, sur un batch de données plutôt qu'un seul exemple :
#
# 1. répéter jusqu'à convergence :
#    1. $\mathbf x_0 \sim q(\mathbf x_0)$
#    2. $t \sim \mathrm{Uniforme}(\{1, \dots, T\})$
#    3. $\boldsymbol\varepsilon \sim \mathcal N(\mathbf 0, \mathbf I)$
#    4. un pas de descente de gradient sur $\nabla_\theta \big\|\boldsymbol\varepsilon -
#       \boldsymbol\varepsilon_\theta(\sqrt{\bar\alpha_t}\,\mathbf x_0 +
#       \sqrt{1-\bar\alpha_t}\,\boldsymbol\varepsilon, t)\big\|^2$
#
# ddpmlab : `train_run(config, out)` l'exécute (Adam, écrêtage du gradient, poids moyennés
# EMA, instantanés du processus inverse à 5 %, 50 % et 100 % de l'apprentissage), puis
# `evaluate_run` compare 2 000 échantillons à des données mises de côté, à côté du
# *plancher* : la même mesure entre deux échantillons réels indépendants de même taille, ce
# qu'obtiendrait un modèle parfait. 1-NNA : 0,5 signifie qu'on ne distingue pas les
# échantillons des données ; W1 / plancher : 1 pour un modèle parfait.
#
# D'abord la configuration exacte du cours (`--config seed` : son MLP, ses $\beta_t$
# sigmoïdes, $T = 150$, batch 128, Adam $10^{-3}$, 4 000 époques de 8 batches). *Erreurs de la
# boucle du cours :* son échantillonnage `if t%100==0` est placé dans la boucle sur les
# batches, si bien qu'une époque sur cent échantillonne 8 fois, en gardant le graphe
# d'autograd (pas de `torch.no_grad`) : l'échantillonnage domine son temps d'apprentissage.
# ddpmlab n'échantillonne qu'aux instantanés, sous `torch.inference_mode`.

# %%
results = {}


def train(name: str, config: RunConfig):  # entraîne WORK/name avec ses figures, puis l'évalue
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
    warnings.simplefilter("ignore", ScheduleWarning)  # le schéma du cours : averti plus haut
    seed_run = train("course", seed_config)

# %% [markdown]
# Le processus inverse au début, au milieu et à la fin de l'apprentissage (les trois figures
# du cours, avec sa configuration).

# %%
for i, name in enumerate(("begin", "middle", "end"), start=1):
    keep(seed_run, f"reverse_{name}.png", f"curve_150_{i}.png")

# %% [markdown]
# Puis les réglages par défaut de ddpmlab (un MLP résiduel avec des caractéristiques de
# Fourier, le schéma cosinus avec $T = 200$, batch 512, un taux d'apprentissage avec montée
# puis décroissance, des poids EMA, et un réseau entraîné à prédire la vitesse
# $\mathbf v_t = \sqrt{\bar\alpha_t}\,\boldsymbol\varepsilon - \sqrt{1-\bar\alpha_t}\,\mathbf x_0$
# de Salimans & Ho 2022 (sec. 4) plutôt que $\boldsymbol\varepsilon$, la même information
# écrite autrement ; et, à la place du $\mathbf x_0$ de chaque exemple dans cette cible, son
# espérance a posteriori sachant $\mathbf x_t$ sur lui et 512 autres points d'entraînement, le
# *stable target field* de Xu, Tong & Jaakkola 2023, qui ôte à la cible sa variance aux
# grands bruits, au prix d'un biais qui s'efface quand la référence grandit ; choisis par la mesure,
# `bench/README.md`) :

# %%
default = default_config("swiss_roll", SETTINGS)
default_run = train("defaults", default)
keep(default_run, "training.png", "training_defaults.png")
keep(seed_run, "samples.png", "samples_course.png")
keep(default_run, "samples.png", "samples_defaults.png")

# %% [markdown]
# ## 8. Les réseaux
#
# **Points.** Le $\boldsymbol\varepsilon_\theta$ du cours est un MLP à trois couches cachées de
# 64 neurones ReLU, avec un plongement appris de $t$ ajouté après chacune (`seed_mlp`, noms des
# paramètres compris). Le réseau par défaut de ddpmlab pour les points, `resmlp`, ajoute des
# caractéristiques de Fourier de l'entrée, un plongement sinusoïdal de $t$ et des blocs
# résiduels.
#
# **Images.** Ho et al. 2020 utilisent un U-Net (Ronneberger et al. 2015 : un chemin de
# contraction fait de convolutions 3x3 et d'agrégations max 2x2 qui doublent les canaux, un
# chemin d'expansion fait de convolutions transposées concaténées aux cartes correspondantes
# du chemin de contraction, 23 convolutions en tout). *Erreurs du cours :* il cite le U-Net
# avec le lien de l'article DDPM ; il garde le recadrage de l'original, qui n'existe que parce
# que le réseau de 2015 utilise des convolutions sans remplissage et rend une carte plus petite
# que son entrée, alors qu'un prédicteur de bruit doit rendre la taille de son entrée (d'où des
# convolutions avec remplissage et une simple concaténation) ; et il ne dit pas comment $t$
# entre dans le réseau : Ho et al. ajoutent un plongement du pas de temps dans chaque bloc
# résiduel. ddpmlab : `seed_unet` (le U-Net du cours, avec remplissage) et `unet` (celui de
# Ho et al., tel qu'improved-diffusion l'écrit).
#
# **Vérification.** Le nombre de paramètres, et chaque réseau rend la taille de son entrée.

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
# ## 9. L'échantillonneur
#
# Ho et al. 2020, algorithme 2 : $\mathbf x_T \sim \mathcal N(\mathbf 0, \mathbf I)$, puis pour
# $t = T, \dots, 1$ : $\mathbf z \sim \mathcal N(\mathbf 0, \mathbf I)$ si $t > 1$, sinon
# $\mathbf z = \mathbf 0$, et
#
# $$\mathbf x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(\mathbf x_t -
# \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\boldsymbol\varepsilon_\theta(\mathbf x_t, t)\Big)
# + \sigma_t \mathbf z.$$
#
# *Erreurs du cours :* son `p_sample` ajoute aussi du bruit au dernier pas (l'article n'en
# ajoute pas en $t = 1$), et il garde le graphe d'autograd de chaque pas. ddpmlab :
# `ddpm_chain` rend chaque état de $\mathbf x_T$ à $\mathbf x_0$ sous `torch.inference_mode`,
# sans bruit au dernier pas ; `ddpm_sample` ne garde que le dernier état.
#
# **Vérification.** (a) Le dernier pas est la moyenne seule. (b) Aucun graphe d'autograd n'est
# gardé. (c) Avec le débruiteur idéal de la section 6 pour des données
# $\mathcal N(\mathbf 0, \mathbf I)$, le vrai pas inverse a pour variance $\beta_t$ (sec. 3.2
# de Ho et al.) : avec $\sigma_t^2 = \beta_t$ les échantillons ont une variance de 1, avec
# $\tilde\beta_t$ (optimal pour un point unique) moins.

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
# ## 10. Résultats
#
# ### La diffusion inverse sur les trois nuages de points du cours
#
# Partant d'un bruit gaussien 2-D, le processus inverse entraîné dessine les données
# (réglages par défaut de ddpmlab ; le cours montre les mêmes GIF) :

# %%
keep(default_run, "reverse.gif", "reversediffusion.gif")
for shape in ("circles", "moons"):
    run = train(shape, default_config(shape, SETTINGS))
    keep(run, "reverse.gif", f"reversediffusion{shape}.gif")

# %% [markdown]
# ### La borne, terme à terme
#
# `run_bound` évalue chaque terme de l'éq. 5 sur des données mises de côté, avec le réseau
# entraîné : les termes KL sont les plus grands aux petits $t$, là où le réseau doit rendre
# les détails (le saut au tout dernier pas est l'endroit où le $\beta_t$ du schéma cosinus
# atteint son plafond, 0,999).

# %%
bound = run_bound(default_run)
print(format_bound(bound))
keep(default_run, "nll_terms.png", "nll_terms.png")

# %% [markdown]
# ### La variance apprise face aux deux variances fixes
#
# Nichol & Dhariwal 2021 (éq. 15) font sortir au réseau un $v$ et interpolent, en échelle
# logarithmique, entre les deux choix de Ho et al. :
# $\boldsymbol\Sigma_\theta = \exp(u \log\beta_t + (1-u)\log\tilde\beta_t)$, $u = (v+1)/2$,
# entraîné avec $L_\text{simple} + \lambda L_\text{vlb}$ ($\lambda = 0.001$).
# ddpmlab : `--variance learned_range`, `diffusion.reverse_log_variance`. Ci-dessous : le
# $\sigma_t^2$ appris, moyenné sur des points mis de côté, à côté de $\beta_t$ et de
# $\tilde\beta_t$, chacun divisé par $\beta_t$ (comme la fig. 1 de Nichol & Dhariwal trace
# $\tilde\beta_t / \beta_t$ : les deux choix fixes ne diffèrent que sur les premiers pas) ; et
# la borne qu'il atteint.

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
steps = np.arange(2, learned.schedule.T + 1)  # beta~ vaut 0 au premier pas : omis
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
# ### La même histoire sur des images : les chiffres avec `seed_unet` et `unet`
#
# Les 1 797 chiffres manuscrits de scikit-learn (8x8, 17 niveaux de gris), pixels ramenés à
# $[-1, 1]$. Les mêmes mathématiques, avec un U-Net : d'abord celui du cours (`seed_unet`),
# puis celui de ddpmlab par défaut (`unet`), chacun avec ses figures : le processus avant, le
# processus inverse pendant l'apprentissage, des échantillons à côté de vrais chiffres, et la
# diffusion inverse. La qualité est mesurée dans l'espace des caractéristiques d'un petit
# classifieur livré avec ddpmlab (distance de Fréchet et son plancher, part des échantillons
# classés avec confiance à côté de celle des vrais chiffres).

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
# ### De l'EDO de DDIM au flow matching
#
# L'échantillonneur de la section 9 tire un bruit neuf à chaque pas. DDIM (Song, Meng & Ermon
# 2021, éq. 14) a montré que le même réseau définit aussi une EDO : avec
# $\bar{\mathbf x} = \mathbf x_t / \sqrt{\bar\alpha_t}$ et
# $\sigma = \sqrt{1/\bar\alpha_t - 1}$, $d\bar{\mathbf x} / d\sigma =
# \boldsymbol\varepsilon_\theta$. Posons $t = \sigma / (1 + \sigma)$ et
# $\mathbf x = (1 - t)\bar{\mathbf x}$ : alors
# $\mathbf x = (1 - t)\hat{\mathbf x}_0 + t\hat{\boldsymbol\varepsilon}$ et
#
# $$\frac{d\mathbf x}{dt} = \hat{\boldsymbol\varepsilon} - \hat{\mathbf x}_0 .$$
#
# C'est l'EDO du flow matching (Lipman et al. 2023, éq. 22-23 avec $\sigma_\text{min} = 0$ ;
# le rectified flow de Liu et al. 2023) : le chemin droit
# $\mathbf x_t = (1 - t)\mathbf x_0 + t\boldsymbol\varepsilon$, $t \in [0, 1]$, et un réseau
# entraîné par moindres carrés à prédire directement sa vitesse
# $\mathbf u = \boldsymbol\varepsilon - \mathbf x_0$. Dans ddpmlab : `ddpmlab train DATA
# --objective flow`, échantillonné par des pas d'Euler ou de Heun (`--sampler euler`,
# `--sampler heun`, Karras et al. 2022, algorithme 1) sur une grille uniforme ou décalée, par
# le solveur adaptatif (`--sampler ode`), avec sa vraisemblance exacte par le code de
# `evaluate --exact-nll` ; la borne variationnelle et l'échantillonnage ancestral
# appartiennent à la chaîne du DDPM et sont refusés.
#
# La v-prédiction de Salimans & Ho est la même vitesse dans une autre horloge : avec
# $\mathbf x_t = \cos\phi\,\mathbf x_0 + \sin\phi\,\boldsymbol\varepsilon$
# ($\cos\phi = \sqrt{\bar\alpha_t}$), $\mathbf v = d\mathbf x_t / d\phi =
# \cos\phi\,\boldsymbol\varepsilon - \sin\phi\,\mathbf x_0$ ; comme
# $\boldsymbol\varepsilon = \sin\phi\,\mathbf x_t + \cos\phi\,\mathbf v$ et
# $\mathbf x_0 = \cos\phi\,\mathbf x_t - \sin\phi\,\mathbf v$ (leur annexe D),
#
# $$\mathbf u = \boldsymbol\varepsilon - \mathbf x_0 = (\sin\phi - \cos\phi)\,\mathbf x_t
# + (\cos\phi + \sin\phi)\,\mathbf v .$$
#
# **Vérification.** (a) Pour gaussians8 la vitesse exacte est une forme close
# (`flow.mixture_velocity`, tirée de `mixture.py`) ; le champ exact du DDPM écrit dans le
# temps du flot lui est égal : une seule EDO, deux horloges. (b) Depuis le même bruit, cette
# EDO dans les coordonnées propres du DDPM et dans celles du flot : les chemins du flot sont
# presque droits, ceux de la diffusion s'écartent vers l'extérieur à mi-chemin, où son
# $\mathbf x_t$ vaut celui du flot fois $1/\sqrt{(1-t)^2 + t^2}$, jusqu'à $\sqrt 2$ en
# $t = 1/2$ ; des chemins plus droits laissent moins d'erreur aux quelques pas d'Euler.
# (c) Le run par défaut prédit $\mathbf v$ : sa vitesse par la formule ci-dessus est celle que les
# échantillonneurs de flot de ddpmlab suivent. (d) Un run de flot sur gaussians8 : sa vitesse
# apprise contre la vitesse exacte, comme la figure du score compare les scores (moyenne de
# $1 - \cos$ sur des points de test bruités ; en mode rapide, 20 pas d'entraînement, il a
# peu appris).

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
# ### Bilan : la configuration du cours à côté des réglages de ddpmlab
#
# Chaque modèle de ce tutoriel, avec son temps total (apprentissage, évaluation et figures) et
# sa qualité à côté du plancher.

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
