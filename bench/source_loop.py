"""The source text's training loop as it is written (shared/seed, "Implémentation"), for timing.

The DDPM class, diffusion_loss, the DataLoader over 1,000 swiss-roll points (batch 128,
shuffle=True), Adam 1e-3, clip_grad_norm_ and zero_grad are copied from the text with
whitespace and comments trimmed; the text's p_sample_loop (and p_sample) too, for its
periodic sampling (``if t%100==0`` inside the batch loop: 8 chains of 150 steps over the
1,000 points at every 100th epoch), which :func:`train` runs only when asked.

    python bench/source_loop.py --epochs 50          # prints ms per step
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import make_swiss_roll


def make_dataset(seed: int = 0) -> torch.Tensor:
    """The text's data: 1,000 swiss-roll points, columns 0 and 2, divided by 10."""
    X, _ = make_swiss_roll(1000, noise=0.1, random_state=seed)
    X = X[:, [0, 2]] / 10.0
    return torch.Tensor(X).float()


T = 150
betas = torch.linspace(-6, 6, T)
betas = torch.sigmoid(betas) * (0.5e-2 - 1e-5) + 1e-5
alphas = 1 - betas
alphas_prod = torch.cumprod(alphas, 0)
alphas_bar_sqrt = torch.sqrt(alphas_prod)
one_minus_alphas_bar_sqrt = torch.sqrt(1 - alphas_prod)


class DDPM(nn.Module):
    def __init__(self, n_steps, n_hidden=64):
        super(DDPM, self).__init__()  # noqa: UP008 (verbatim)
        self.linears = nn.ModuleList(
            [
                nn.Linear(2, n_hidden), nn.ReLU(),
                nn.Linear(n_hidden, n_hidden), nn.ReLU(),
                nn.Linear(n_hidden, n_hidden), nn.ReLU(),
                nn.Linear(n_hidden, 2),
            ]
        )
        self.step_embeddings = nn.ModuleList(
            [
                nn.Embedding(n_steps, n_hidden),
                nn.Embedding(n_steps, n_hidden),
                nn.Embedding(n_steps, n_hidden),
            ]
        )

    def forward(self, x, t):
        for idx, embedding_layer in enumerate(self.step_embeddings):
            t_embedding = embedding_layer(t)
            x = self.linears[2 * idx](x)
            x += t_embedding
            x = self.linears[2 * idx + 1](x)
        x = self.linears[-1](x)
        return x


def diffusion_loss(model, x_0, alphas_bar_sqrt, one_minus_alphas_bar_sqrt, n_steps):
    batch_size = x_0.shape[0]
    t = torch.randint(0, n_steps, size=(batch_size // 2,))
    t = torch.cat([t, n_steps - 1 - t], dim=0)
    t = t.unsqueeze(-1)
    a = alphas_bar_sqrt[t]
    e = torch.randn_like(x_0)
    b = one_minus_alphas_bar_sqrt[t]
    x = x_0 * a + e * b
    output = model(x, t.squeeze(-1))
    return (e - output).square().mean()


def p_sample_loop(model, shape, n_steps, betas, one_minus_alphas_bar_sqrt):
    cur_x = torch.randn(shape)
    x_seq = [cur_x]
    for i in reversed(range(n_steps)):
        cur_x = p_sample(model, cur_x, i, betas, one_minus_alphas_bar_sqrt)
        x_seq.append(cur_x)
    return x_seq


def p_sample(model, x, t, betas, one_minus_alphas_bar_sqrt):
    t = torch.tensor([t])
    coeff = betas[t] / one_minus_alphas_bar_sqrt[t]
    eps_theta = model(x, t)
    mean = (1 / (1 - betas[t]).sqrt()) * (x - (coeff * eps_theta))
    z = torch.randn_like(x)
    sigma_t = betas[t].sqrt()
    sample = mean + sigma_t * z
    return (sample)


def train(nb_epochs: int = 4000, seed: int = 0, periodic_sampling: bool = False,
          dataset: torch.Tensor | None = None) -> tuple[DDPM, int]:
    """The text's loop for ``nb_epochs``; returns the model and the number of steps taken."""
    torch.manual_seed(seed)
    dataset = make_dataset(seed) if dataset is None else dataset
    batch_size = 128
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = DDPM(T, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 0
    for t in range(nb_epochs):
        for _idx, batch_x in enumerate(dataloader):
            loss = diffusion_loss(model, batch_x, alphas_bar_sqrt, one_minus_alphas_bar_sqrt, T)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.)
            optimizer.step()
            steps += 1
            if periodic_sampling and t % 100 == 0:
                p_sample_loop(model, dataset.shape, T, betas, one_minus_alphas_bar_sqrt)
    return model, steps


@torch.no_grad()
def sample(model: DDPM, n: int, seed: int = 0) -> np.ndarray:
    """n points from the text's sampler (p_sample_loop), its last state, without the graph."""
    torch.manual_seed(seed)
    return p_sample_loop(model, (n, 2), T, betas, one_minus_alphas_bar_sqrt)[-1].numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--periodic-sampling", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    _, steps = train(args.epochs, periodic_sampling=args.periodic_sampling)
    seconds = time.perf_counter() - start
    print(f"{steps} steps in {seconds:.2f} s: {1e3 * seconds / steps:.3f} ms per step")


if __name__ == "__main__":
    main()
