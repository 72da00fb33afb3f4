"""Small LeNet-style classifiers whose features the image metrics compare (our "Inception").

FID (Heusel et al. 2017) measures distances in the feature space of an ImageNet Inception
network; for 8x8 digits and 28x28 MNIST that network is both too big and the wrong domain, so
ddpmlab ships one small classifier per built-in set (LeCun et al. 1998's LeNet layout: two
convolutions with max-pooling, two linear layers, dropout), trained by
``bench/train_classifiers.py`` on that set's *training* split only (the split every diffusion
run uses, seed 0), so that the held-out images the metrics compare against stay unseen.

A classifier file is one safetensors file (never pickle: opening it cannot run code): the
weights plus a JSON metadata entry ``"meta"`` holding the :class:`ClassifierConfig`, the set
name, the split seed, the held-out accuracy and the training settings.

Features are the penultimate layer's pre-activations h (``features`` dims, 64 by default): the
classifier predicts ``logits = W relu(h) + b``. Taking h before the ReLU keeps every coordinate
informative (no units stuck at 0, whose zero variance would make covariances singular).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ddpmlab.errors import UserError

FORMAT = "ddpmlab-classifier"
VERSION = 1
SHIPPED = ("digits", "mnist")  # built-in sets with a classifier in metrics/weights/
_BATCH = 1000  # images per forward pass when extracting features


@dataclass(frozen=True)
class ClassifierConfig:
    """A LeNet-style classifier for images (C, H, W) in [-1, 1].

    image_shape: (C, H, W) of one input image; H and W must be divisible by 4 (two poolings).
    classes: number of output classes.
    channels: widths of the two 3x3 (``kernel``) padded convolutions, each followed by ReLU
        and a 2x2 max-pooling.
    features: width of the penultimate linear layer (the feature space of the metrics).
    dropout: before each linear layer, during training only.
    """

    image_shape: tuple[int, int, int]
    classes: int = 10
    channels: tuple[int, int] = (16, 32)
    features: int = 64
    kernel: int = 3
    dropout: float = 0.3

    def __post_init__(self) -> None:
        c, h, w = self.image_shape
        if c < 1 or h % 4 or w % 4 or h < 4 or w < 4:
            raise UserError(f"classifier image_shape {self.image_shape} needs C >= 1 and H, W "
                            "divisible by 4 (two 2x2 poolings)")
        if self.kernel % 2 == 0:
            raise UserError(f"classifier kernel must be odd (padded 'same'), got {self.kernel}")


class LeNet(nn.Module):
    """Two conv-ReLU-pool stages, then linear -> h (features) -> ReLU -> linear -> logits.

    ``forward(x)``: x (B, C, H, W) float32 in [-1, 1] -> logits (B, classes).
    ``embed(x)``: -> (h (B, features), logits (B, classes)).
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        c1, c2 = config.channels
        pad = config.kernel // 2
        self.conv1 = nn.Conv2d(c, c1, config.kernel, padding=pad)
        self.conv2 = nn.Conv2d(c1, c2, config.kernel, padding=pad)
        self.fc1 = nn.Linear(c2 * (h // 4) * (w // 4), config.features)
        self.fc2 = nn.Linear(config.features, config.classes)
        self.drop = nn.Dropout(config.dropout)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, c1, H/2, W/2)
        z = F.max_pool2d(F.relu(self.conv2(z)), 2)  # (B, c2, H/4, W/4)
        h = self.fc1(self.drop(z.flatten(1)))  # (B, features): the metrics' feature space
        return h, self.fc2(self.drop(F.relu(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)[1]


class Classifier(NamedTuple):
    """A loaded classifier, ``(model, meta)``: the network (eval mode) and its file's metadata."""

    model: LeNet
    meta: dict[str, Any]


@torch.no_grad()
def embed(model: LeNet, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Features and class probabilities of images x (N, C, H, W) in [-1, 1].

    Returns ``(h, probs)``: h (N, features) float64, probs (N, classes) float64 (softmax).
    The model is put in eval mode (no dropout); batches of 1,000 images.
    """
    model.eval()
    device = next(model.parameters()).device
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x)
    hs, ps = [], []
    for i in range(0, len(xt), _BATCH):
        h, logits = model.embed(xt[i : i + _BATCH].to(device, torch.float32))
        hs.append(h.double().cpu())
        ps.append(torch.softmax(logits.double(), dim=1).cpu())
    return torch.cat(hs).numpy(), torch.cat(ps).numpy()


def accuracy(model: LeNet, x: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    """Fraction of images x (N, C, H, W) whose arg-max class equals ``labels`` (N,)."""
    _, probs = embed(model, x)
    return float(np.mean(probs.argmax(1) == np.asarray(labels)))


def save_classifier(path: str | Path, model: LeNet, meta: dict[str, Any]) -> None:
    """Write ``model``'s weights and ``meta`` (JSON-ready) to one safetensors file."""
    header = {"format": FORMAT, "version": VERSION, "config": asdict(model.config), **meta}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).write_bytes(st_save(tensors, metadata={"meta": json.dumps(header)}))


def _header(data: bytes) -> dict[str, Any]:
    """The JSON metadata of a safetensors file held in ``data`` (its first 8 + n bytes)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__") or {}


def _read(data: bytes, shown: str) -> Classifier:
    try:
        meta = json.loads(_header(data)["meta"])
        if meta.get("format") != FORMAT:
            raise KeyError("format")
        cfg = dict(meta["config"])
        cfg["image_shape"] = tuple(cfg["image_shape"])
        cfg["channels"] = tuple(cfg["channels"])
        model = LeNet(ClassifierConfig(**cfg))
        model.load_state_dict(st_load(data))
    except (SafetensorError, KeyError, TypeError, ValueError, RuntimeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{shown} is not a ddpmlab classifier file (safetensors with "
                        f"'{FORMAT}' metadata); write one with bench/train_classifiers.py"
                        ) from None
    model.eval()
    return Classifier(model, meta)


def load_classifier(name: str | Path) -> Classifier:
    """The shipped classifier of built-in set ``name`` (:data:`SHIPPED`), or one from a file.

    ``name``: "digits" or "mnist", or a path to a ``.safetensors`` file written by
    :func:`save_classifier`. Returns a :class:`Classifier`, the named tuple ``(model, meta)``, the
    model in eval mode on the CPU. Never unpickles.
    """
    text = str(name)
    if text in SHIPPED:
        ref = resources.files("ddpmlab.metrics").joinpath("weights", f"{text}.safetensors")
        return _read(ref.read_bytes(), f"the shipped {text} classifier")
    if text.endswith(".safetensors"):
        try:
            data = Path(text).read_bytes()
        except OSError as e:
            raise UserError(f"cannot read classifier {text} ({e.strerror})") from None
        return _read(data, text)
    raise UserError(f"no classifier is shipped for {text!r} (shipped: {', '.join(SHIPPED)}); "
                    "pass one of those, a .safetensors classifier file, or classifier=None for "
                    "the metrics that need none (pixel-space 1-NNA, KID, PRDC, memorisation)")
