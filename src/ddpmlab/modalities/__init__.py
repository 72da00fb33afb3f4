"""Modalities: what differs between kinds of data (points, images), one module each.

:data:`MODALITIES` maps the name saved in a checkpoint's metadata (``meta["modality"]``;
runs written before modalities existed are points) to its :class:`Modality`. Adding a kind
of data means one module here, and its parts in ``data/``, ``metrics/`` and ``reports/``.
"""

from __future__ import annotations

from typing import Any

from ddpmlab.config import RunConfig, merge, replace
from ddpmlab.errors import UserError
from ddpmlab.modalities.base import Modality
from ddpmlab.modalities.images import Images
from ddpmlab.modalities.points import Points

MODALITIES: dict[str, type[Modality]] = {"points": Points, "images": Images}

__all__ = ["MODALITIES", "Images", "Modality", "Points", "default_config", "modality_for",
           "modality_named"]


def modality_named(name: str) -> type[Modality]:
    """The modality a checkpoint names; refused with one line if this ddpmlab has none."""
    if name not in MODALITIES:
        raise UserError(f"this run holds data of kind {name!r}, which this ddpmlab does not "
                        f"know ({', '.join(MODALITIES)}); use the ddpmlab that wrote it")
    return MODALITIES[name]


def modality_for(source: str) -> type[Modality]:
    """The modality of data.source: the first that accepts it (images for a built-in image
    set, a folder, an .npz or an .npy of 3 or more dimensions), else points."""
    return Images if Images.accepts(source) else Points


def default_config(source: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The configuration ``ddpmlab train SOURCE`` uses: RunConfig's defaults, the source's
    measured defaults (:meth:`Modality.defaults`, those of a conditional run when
    ``overrides`` turn ``model.conditional`` on) over them, then ``overrides``."""
    conditional = bool((overrides or {}).get("model", {}).get("conditional"))
    defaults = modality_for(source).defaults(source, conditional)
    if (overrides or {}).get("diffusion", {}).get("objective") == "flow":
        # the DDPM's measured variance and target do not apply to a flow (a velocity)
        rest = {k: v for k, v in defaults.get("diffusion", {}).items()
                if k not in ("variance", "prediction")}
        defaults = {**defaults, "diffusion": rest}
    measured = merge(defaults, {"data": {"source": source}})
    return replace(RunConfig(), merge(measured, overrides or {}))
