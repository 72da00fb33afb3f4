"""Reference numbers for the flow-matching path and samplers, made by facebookresearch's
flow_matching library (``CondOTProbPath``, ``ODESolver`` on torchdiffeq), into
tests/data/flow_ref.npz for tests/test_flow.py.

flow_matching runs its time the other way (t_fm = 0 the noise, 1 the data; x_0 the noise,
x_1 the data): ddpmlab's t is 1 - t_fm and its velocity eps - x_0 is minus theirs.

- path: ``CondOTProbPath().sample(x_0=eps, x_1=data, t=1 - t)``: x_t and dx_t.
- solver: ``ODESolver(model).sample`` from the same noise, on a uniform and on a shifted grid,
  by ``euler`` and ``heun2``, every intermediate state kept; ``dopri5`` at tight tolerances;
  and ``compute_likelihood`` (dopri5, exact divergence). The model is the exact velocity of
  Gaussian data N(m, diag(s^2)), written here in closed form (not with ddpmlab):
  with x = t_fm x_1 + (1 - t_fm) x_0 and C = t_fm^2 S + (1 - t_fm)^2 I,
  E[x_1 | x] = m + t_fm S C^-1 (x - t_fm m), E[x_0 | x] = (1 - t_fm) C^-1 (x - t_fm m), and
  v = E[x_1 | x] - E[x_0 | x].

Usage (flow_matching 1.0.10, torchdiffeq 0.2.5, torch 2.13.0, CPU):
    pip install flow_matching -c constraints.txt && python tests/data/make_flow_ref.py
"""

from __future__ import annotations

import json
from pathlib import Path

import flow_matching
import numpy as np
import torch
from flow_matching.path import CondOTProbPath
from flow_matching.solver import ODESolver
from flow_matching.utils import ModelWrapper

TARGET = Path(__file__).with_name("flow_ref.npz")
MEAN = np.array([1.5, -0.5])
STD = np.array([0.4, 0.8])
STEPS = (1, 5, 10)
SHIFT = 3.0  # Esser et al. 2024, Eq. 23's shift, as ddpmlab's "shifted" grid


class GaussianVelocity(ModelWrapper):
    """The exact marginal velocity of data N(MEAN, diag(STD^2)) in flow_matching's time."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Identity())
        self.m = torch.tensor(MEAN)
        self.s2 = torch.tensor(STD) ** 2

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: object) -> torch.Tensor:
        c = t**2 * self.s2 + (1 - t) ** 2
        r = (x - t * self.m) / c
        return self.m + t * self.s2 * r - (1 - t) * r


def main() -> None:
    torch.manual_seed(0)
    out: dict[str, np.ndarray] = {}
    # the path at random times, data and noise
    data = torch.randn(64, 2, dtype=torch.float64) * 2
    eps = torch.randn(64, 2, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64)
    sample = CondOTProbPath().sample(x_0=eps, x_1=data, t=1 - t)
    out |= {"path__x0": data.numpy(), "path__eps": eps.numpy(), "path__t": t.numpy(),
            "path__x_t": sample.x_t.numpy(), "path__dx_t": sample.dx_t.numpy()}
    # the solvers from the same noise
    noise = torch.randn(256, 2, dtype=torch.float64)
    out["solver__noise"] = noise.numpy()
    solver = ODESolver(velocity_model=GaussianVelocity())
    for k in STEPS:
        u = torch.linspace(0, 1, k + 1, dtype=torch.float64)  # flow_matching's time
        grids = {"uniform": u,
                 "shifted": 1 - SHIFT * (1 - u) / (1 + (SHIFT - 1) * (1 - u))}
        for name, grid in grids.items():
            for method in ("euler", "heun2"):
                states = solver.sample(x_init=noise, step_size=None, method=method,
                                       time_grid=grid, return_intermediates=True)
                out[f"solver__{method}_{name}_{k}"] = states.numpy()  # (k + 1, B, 2)
    out["solver__dopri5"] = solver.sample(x_init=noise, step_size=None, method="dopri5",
                                          atol=1e-10, rtol=1e-10).numpy()
    # the likelihood of data points under the flow, by their solver
    points = torch.randn(32, 2, dtype=torch.float64) * torch.tensor(STD) + torch.tensor(MEAN)

    def log_p0(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x**2).sum(1) - np.log(2 * np.pi)

    _, log_p = solver.compute_likelihood(x_1=points, log_p0=log_p0, step_size=None,
                                         method="dopri5", atol=1e-9, rtol=1e-9,
                                         exact_divergence=True)
    out |= {"nll__points": points.numpy(), "nll__log_p": log_p.detach().numpy()}
    meta = {"flow_matching": flow_matching.__version__, "torch": torch.__version__,
            "mean": MEAN.tolist(), "std": STD.tolist(), "steps": list(STEPS), "shift": SHIFT,
            "time": "flow_matching's t_fm = 1 - ddpmlab's t; states in t_fm order"}
    out["__meta_json__"] = np.array(json.dumps(meta))
    np.savez(TARGET, **out)
    print(f"wrote {len(out)} arrays to {TARGET}")


if __name__ == "__main__":
    main()
