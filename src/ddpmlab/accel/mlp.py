"""The point MLPs' passes written by hand: training gradients without autograd, and sampling.

At batch 128-512 and width 64 a training step is dominated by the cost of dispatching
operations, not by arithmetic: autograd records each forward operation and replays a
backward node per operation, each a few microseconds. Written by hand, the backward pass of
these MLPs is a short list of large matrix products (per linear layer y = a W^T + b:
dL/dW = g^T a, dL/db = sum_rows g, dL/da = g W) and one fused elementwise kernel per
activation (aten's own ``threshold_backward`` and ``silu_backward``, the kernels autograd
calls), written straight into the caller's gradient buffers.

:func:`mse_and_grads` gives L = mean((target - model(x_t, t))^2), the loss of every
parameterisation (``ddpmlab.diffusion.diffusion_loss``: eps, x0 or v targets), and
dL/dtheta for every parameter; tests/test_fast.py checks both against autograd for random
weights and inputs. Models not listed in :data:`FAST` (and the hybrid loss of a learned
variance) train through autograd instead; ``ddpmlab.train`` chooses.

:func:`sampling_denoiser` wraps a network for the samplers: a ResMLP forward pass for rows
that share one timestep, written into reusable buffers, over chunks of rows that stay in
cache (bench/README.md has the measurements).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ddpmlab.models.mlp import ResMLP, SeedMLP
from ddpmlab.precision import under

Tensors = dict[str, torch.Tensor]  # name -> tensor, as model.state_dict(keep_vars=True)
relu_backward = torch.ops.aten.threshold_backward.default  # (grad, relu output, 0)
silu_backward = torch.ops.aten.silu_backward.default  # (grad, silu input)
silu_backward_out = torch.ops.aten.silu_backward.grad_input  # the same, into grad_input=
silu_out = torch.ops.aten.silu.out  # silu(x, out=buffer)
# Parameters are read from a name -> tensor dict, not through the modules: nn.Module
# attribute and ModuleList lookups are a sizeable part of so short a step (bench/README.md).


def _linear(a: torch.Tensor, p: Tensors, name: str) -> torch.Tensor:
    """y = a W^T + b for the layer ``name``, the same product as ``nn.Linear`` (one addmm)."""
    return torch.addmm(p[name + ".bias"], a, p[name + ".weight"].t())


def _linear_backward(g: torch.Tensor, a: torch.Tensor, p: Tensors, grads: Tensors,
                     name: str, need_input: bool = True) -> torch.Tensor | None:
    """Write each leaf's dL/dW = g^T a and dL/db = sum_rows g for y = a W^T + b (grads: (L,
    out, in) and (L, out); the rows of g and a are L equal leaves); return dL/da = g W."""
    grad_w = grads[name + ".weight"]
    leaves = grad_w.shape[0]
    g_l, a_l = g.view(leaves, -1, g.shape[1]), a.view(leaves, -1, a.shape[1])
    if grad_w.shape[2] < grad_w.shape[1]:  # a thin input (x: 2 columns): faster as a^T g
        grad_w.copy_(torch.bmm(a_l.transpose(1, 2), g_l).transpose(1, 2))
    else:
        torch.bmm(g_l.transpose(1, 2), a_l, out=grad_w)
    torch.sum(g_l, 1, out=grads[name + ".bias"])
    return torch.mm(g, p[name + ".weight"]) if need_input else None


def _mse(diff: torch.Tensor, leaves: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each leaf's part of L = sum(diff^2) / total, and dL/d diff = 2 diff / total, for diff
    = output - target (consumed), total the batch's number of entries on every rank."""
    loss = torch.stack([torch.dot(leaf, leaf) for leaf in diff.view(leaves, -1)]) / total
    return loss, diff.mul_(2.0 / total)


def _rows_backward(leaves: int, rows: int, index: torch.Tensor, g: torch.Tensor
                   ) -> torch.Tensor:
    """A gathered table's gradient, (leaves, rows, cols): at [l, r] the sum of g[i] over the
    rows i of leaf l with index[i] = r, added in their order."""
    offset = torch.arange(0, leaves * rows, rows, device=g.device)
    index = index + offset.repeat_interleave(g.shape[0] // leaves)
    grad = torch.zeros(leaves * rows, g.shape[1], device=g.device).index_add_(0, index, g)
    return grad.view(leaves, rows, -1)


def _class_backward(g: torch.Tensor, y: torch.Tensor, grads: Tensors, name: str) -> None:
    """Each leaf's dL/dC for an added class embedding C[y] (overwritten); the "no class" row
    (the last) stays at zero gradient, as ``padding_idx`` keeps it."""
    grads[name].copy_(_rows_backward(len(grads[name]), grads[name].shape[1], y, g))
    grads[name][:, -1].zero_()


def _seed_mlp(model: SeedMLP, p: Tensors, x: torch.Tensor, t: torch.Tensor,
              target: torch.Tensor, grads: Tensors, y: torch.Tensor | None,
              total: int) -> torch.Tensor:
    # forward: h_i = relu(h_{i-1} W_i^T + b_i + E_i[t] (+ C_i[y])), out = h_3 W_4^T + b_4
    acts = [x]  # the input of each linear layer
    for i in range(3):
        e = p[f"step_embeddings.{i}.weight"].index_select(0, t)
        if y is not None:
            e = e + p[f"class_embeddings.{i}.weight"].index_select(0, y)
        acts.append(torch.relu(_linear(acts[-1], p, f"linears.{2 * i}").add_(e)))
    loss, g = _mse(_linear(acts[-1], p, "linears.6") - target,
                   grads["linears.6.bias"].shape[0], total)
    # backward
    for i in (3, 2, 1, 0):  # the output layer, then the hidden layers from the top
        name = f"linears.{2 * i}"
        if i < 3:
            g = relu_backward(g, acts[i + 1], 0)  # dL/d(pre-activation of layer i)
            table = grads[f"step_embeddings.{i}.weight"]
            table.copy_(_rows_backward(len(table), table.shape[1], t, g))
            if y is not None:
                _class_backward(g, y, grads, f"class_embeddings.{i}.weight")
        g_in = _linear_backward(g, acts[i], p, grads, name, need_input=i > 0)
        if g_in is None:  # reached the input x, which needs no gradient
            break
        g = g_in
    return loss


def _features(x: torch.Tensor, fourier: torch.Tensor) -> torch.Tensor:
    """fourier_features(x, B) written into one buffer (no concatenation pass), or x."""
    n, d = fourier.shape[1], x.shape[1]
    if not n:
        return x
    feats = torch.empty(x.shape[0], d + 2 * n, device=x.device)
    proj = x @ (2 * math.pi * fourier)  # (B, n)
    feats[:, :d] = x
    torch.sin(proj, out=feats[:, d:d + n])
    torch.cos(proj, out=feats[:, d + n:])
    return feats


def _resmlp(model: ResMLP, p: Tensors, x: torch.Tensor, t: torch.Tensor,
            target: torch.Tensor, grads: Tensors, y: torch.Tensor | None,
            total: int) -> torch.Tensor:
    # forward, as ResMLP.forward, with the blocks' input biases b_i moved into the timestep
    # MLP's output bias, so that each block's pre-activation a_i = e_i + b_i + u W_i^T is
    # accumulated by the product in place in the gathered embedding (B, depth * hidden).
    # The timestep MLP runs on all T steps (the rows of t_table): a leaf's gradient then
    # has the same terms whichever other leaves share its call.
    depth, H, leaves = model.depth, p["out.weight"].shape[1], grads["out.bias"].shape[0]
    table = p["t_table"]
    t_pre = _linear(table, p, "t_mlp.0")
    t_act = nn.functional.silu(t_pre)
    bias = p["t_mlp.2.bias"] + torch.cat([p[f"blocks_in.{i}.bias"] for i in range(depth)])
    pre = torch.addmm(bias, t_act, p["t_mlp.2.weight"].t()).index_select(0, t)
    if y is not None:  # + the class embedding C[y], (B, depth * hidden)
        pre.add_(p["class_emb.weight"].index_select(0, y))
    feats = _features(x, p["fourier"])
    h = [_linear(feats, p, "inp")]  # the residual stream before each block, and after
    inner = []  # (u, a, silu(a)) of each block, u = silu(h), a = u W_i^T + b_i + e_i
    for i in range(depth):
        u = nn.functional.silu(h[-1])
        a = pre[:, i * H:(i + 1) * H].addmm_(u, p[f"blocks_in.{i}.weight"].t())
        inner.append((u, a, nn.functional.silu(a)))
        h.append((h[-1] + p[f"blocks_out.{i}.bias"]).addmm_(
            inner[-1][2], p[f"blocks_out.{i}.weight"].t()))
    s = nn.functional.silu(h[-1])
    loss, g = _mse(_linear(s, p, "out") - target, leaves, total)
    # backward
    g_h = silu_backward(_linear_backward(g, s, p, grads, "out"), h[-1])  # dL/dh
    g_pre = torch.empty(x.shape[0], depth * H, device=x.device)  # every block's dL/da, side by side
    for i in reversed(range(depth)):
        u, a, s_a = inner[i]
        g_s = _linear_backward(g_h, s_a, p, grads, f"blocks_out.{i}")
        g_a = silu_backward_out(g_s, a, grad_input=g_pre[:, i * H:(i + 1) * H])
        g_u = _linear_backward(g_a, u, p, grads, f"blocks_in.{i}")
        g_h = g_h + silu_backward(g_u, h[i])  # the residual path carries g_h through
    _linear_backward(g_h, feats, p, grads, "inp", need_input=False)
    if y is not None:
        _class_backward(g_pre, y, grads, "class_emb.weight")
    # the timestep MLP, its T rows once per leaf: dL/d(output) (L, T, depth * hidden), and
    # dL/d(pre-activation) leaf by leaf (a product and an elementwise kernel of the same
    # shape for every leaf, as a kernel's tail may round differently)
    g_emb = _rows_backward(leaves, len(table), t, g_pre)
    g_e = torch.stack([silu_backward(torch.mm(leaf, p["t_mlp.2.weight"]), t_pre)
                       for leaf in g_emb])
    _linear_backward(g_emb.view(-1, depth * H), t_act.repeat(leaves, 1), p, grads, "t_mlp.2",
                     need_input=False)
    _linear_backward(g_e.view(-1, H), table.repeat(leaves, 1), p, grads, "t_mlp.0",
                     need_input=False)
    return loss


class _ResMLPSampling:
    """ResMLP.forward for a sampler's step (every row at one t), no autograd.

    The module's arithmetic with fewer passes over (N, hidden) memory: each block's timestep
    embedding joins its bias (one (1, hidden) row), the residual stream is updated in place
    (h += s W_o^T, then + b_o), and the input layer reads x, sin and cos from three
    contiguous buffers instead of their concatenation. Activations go into buffers kept
    between calls: a new tensor of a few megabytes per operation comes back from the system
    as fresh pages, whose page faults would cost a large share of the time (bench/README.md).
    The buffers are on the device of the last input (the model's).
    """

    def __init__(self, model: ResMLP) -> None:
        self.model, self.p = model, model.state_dict(keep_vars=True)
        self.buffers: dict[str, torch.Tensor] = {}
        self.device = self.p["out.weight"].device

    def _buffer(self, name: str, rows: int, cols: int) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape[0] < rows:
            buf = self.buffers[name] = torch.empty(rows, cols, device=self.device)
        return buf[:rows]

    def __call__(self, x: torch.Tensor, t: torch.Tensor,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        p, (n, d) = self.p, x.shape
        if n > 1 and not bool((t == t[0]).all()):
            return self.model(x, t, y)
        if x.device != self.device:  # the model moved since the buffers were made
            self.buffers.clear()
            self.device = x.device
        F, w, H = p["fourier"].shape[1], p["inp.weight"], p["out.weight"].shape[1]
        h = torch.addmm(p["inp.bias"], x, w[:, :d].t(), out=self._buffer("h", n, H))
        if F:  # [x, sin, cos] W^T as three products: sin and cos into contiguous buffers
            proj = torch.mm(x, 2 * math.pi * p["fourier"], out=self._buffer("proj", n, F))
            h.addmm_(torch.sin(proj, out=self._buffer("sin", n, F)), w[:, d:d + F].t())
            h.addmm_(torch.cos(proj, out=self._buffer("cos", n, F)), w[:, d + F:].t())
        emb = self.model.embed(t[:1])  # (1, depth * hidden)
        if y is not None:  # each row's class embedding: (n, depth * hidden)
            emb = p["class_emb.weight"].index_select(0, y).add_(emb)
        u, a = self._buffer("u", n, H), self._buffer("a", n, H)
        for i, e in enumerate(emb.chunk(self.model.depth, dim=1)):
            torch.addmm(p[f"blocks_in.{i}.bias"] + e, silu_out(h, out=u),
                        p[f"blocks_in.{i}.weight"].t(), out=a)
            h.addmm_(nn.functional.silu(a, inplace=True), p[f"blocks_out.{i}.weight"].t())
            h.add_(p[f"blocks_out.{i}.bias"])
        return _linear(nn.functional.silu(h, inplace=True), p, "out")


#: The fewest rows of a leaf (Trainer, fast path): matrix products of fewer rows take MKL
#: kernels that round some rows differently from the same rows in a larger product.
LEAF_ROWS = 16


def leaves_of(batch: int, wanted: int) -> int:
    """The equal parts (leaves) the fast path cuts a batch into, and so the most processes
    that share it exactly: the largest power of two up to ``wanted`` (train.leaves) that
    divides the batch into leaves of at least LEAF_ROWS rows, or 1."""
    leaves = wanted
    while leaves > 1 and (batch % leaves or batch // leaves < LEAF_ROWS):
        leaves //= 2
    return leaves



#: Rows per network evaluation when sampling: activations of 8,192 x 64 float32 (2 MB)
#: stay in cache, and memory does not grow with the number of points (bench/README.md).
SAMPLING_ROWS = 8192


def sampling_denoiser(model: nn.Module, rows: int = SAMPLING_ROWS,
                      dtype: torch.dtype | None = None) -> Callable[..., torch.Tensor]:
    """``model`` as the samplers' denoiser ``(x_t, t, y=None) -> output``, for inference only,
    under autocast to ``dtype`` (None: float32; ``ddpmlab.precision``), the output float32.

    y: (B,) int64 class labels of a conditional model (its num_classes: no class), or None.
    Evaluates at most ``rows`` rows at a time (the output is the same, row by row), and for
    a ResMLP whose rows share t uses :class:`_ResMLPSampling`, equal to ``model(x_t, t, y)``
    up to float32 rounding (tests/test_fast.py).
    """
    forward = under(_ResMLPSampling(model) if type(model) is ResMLP else model,
                    next(model.parameters()).device, dtype)

    def denoiser(x: torch.Tensor, t: torch.Tensor,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        with torch.inference_mode():
            if x.shape[0] <= rows:
                return forward(x, t) if y is None else forward(x, t, y)
            return torch.cat([forward(x[i:i + rows], t[i:i + rows])
                              if y is None else forward(x[i:i + rows], t[i:i + rows],
                                                        y[i:i + rows])
                              for i in range(0, x.shape[0], rows)])

    return denoiser


#: Models with a hand-derived gradient; any other trains through autograd.
FAST: dict[type[nn.Module], Callable[..., torch.Tensor]] = {SeedMLP: _seed_mlp,
                                                             ResMLP: _resmlp}


def supports(model: nn.Module) -> bool:
    """Whether :func:`mse_and_grads` covers ``model`` (exactly SeedMLP or ResMLP)."""
    return type(model) in FAST


def mse_and_grads(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
                  grads: Tensors, tensors: Tensors | None = None,
                  y: torch.Tensor | None = None, *, leaves: int = 1,
                  total: int | None = None) -> torch.Tensor:
    """L = mean((target - model(x_t, t, y))^2) and its gradient, without autograd, in parts.

    x_t, target: (B, out) float32 (B >= 1); t: (B,) int64 in 0..T-1; y: (B,) int64 labels of
    a conditional model (its num_classes: no class), or None. The B rows are ``leaves``
    equal parts, and each part's share of L and of dL/dparameter is kept apart: grads maps
    every parameter name of ``model`` to a tensor (leaves, *parameter's shape), every entry
    of which is overwritten. Each leaf's part is computed by operations whose result, row
    by row and leaf by leaf, does not depend on the other leaves in the call, so a batch
    split among processes by whole leaves gives every leaf bit for bit (``ddpmlab.train``).
    total: the whole batch's rows, B unless a process holds only some of them (the mean
    divides by it). tensors: ``model.state_dict(keep_vars=True)``, computed here unless
    given (a training loop keeps one). Returns the leaves' parts of L, (leaves,), detached.
    Their sums are autograd's up to float32 rounding (tests/test_fast.py).
    """
    with torch.inference_mode():
        p = model.state_dict(keep_vars=True) if tensors is None else tensors
        entries = (x_t.shape[0] if total is None else total) * target.shape[1]
        return FAST[type(model)](model, p, x_t, t, target, grads, y, entries)
