"""Point clouds from a picture or a word: the dark pixels of a silhouette, or a rendered word.

``ddpmlab train shape.png`` draws its points from the picture's dark pixels, and
``ddpmlab train text:DDPM`` from a word drawn in black on white with a font Pillow ships
(``ImageFont.load_default(size=...)``, scalable since Pillow 10.1) or a .ttf/.otf file
(``--font``). Sampling (:func:`sample_picture`): a pixel is chosen with probability
proportional to its darkness (1 - grey level; transparent pixels count as white; darkness
under 0.05 is background, so JPEG noise draws nothing), and the point is uniform within that
pixel. Coordinates: x to the right and y *up* (image rows run down), centred on the picture,
with its longer side spanning 4 units (the scale of the built-in shapes). The points are then
a :class:`~ddpmlab.data.points.PointSet` like any other, saved in data.npz.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ddpmlab.errors import UserError

TEXT = "text:"  # the prefix of a word to render: text:DDPM
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_SIDE = 8  # pixels: a smaller picture holds too little shape to learn
BACKGROUND = 0.05  # darkness below this is background (paper white, JPEG noise)
FONT_SIZE = 96  # pixels: the height a word is rendered at
SPAN = 4.0  # the longer side of the picture, in the points' units


def is_shape(source: str) -> bool:
    """Whether data.source is a word (``text:WORD``) or a single picture file to draw from."""
    return source.startswith(TEXT) or Path(source).suffix.lower() in PICTURE_SUFFIXES


def _label(source: str) -> str:
    return source if source.isprintable() else ascii(source)


def read_picture(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG/JPEG file -> its darkness (H, W) float64 in [0, 1], transparency as white."""
    from PIL import Image, UnidentifiedImageError  # imported on use: keeps start-up fast

    name, p = _label(os.fspath(path)), Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"picture not found: {name} (give a PNG/JPEG file whose dark pixels "
                        "draw the shape, or text:WORD)")
    try:
        with Image.open(p) as im:
            im.load()
            rgba = im.convert("RGBA")
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError,
            Image.DecompressionBombError):
        raise UserError(f"cannot read picture {name}: the file is corrupt or not a PNG/JPEG; "
                        "replace it") from None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    grey = np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float64)
    return _darkness(grey / 255.0, name)


def render_text(word: str, font: str = "") -> np.ndarray:
    """``word`` drawn in black on white -> darkness (H, W) float64 in [0, 1].

    font: a .ttf/.otf path, or "" for Pillow's own scalable font.
    """
    from PIL import Image, ImageDraw, ImageFont  # imported on use: keeps start-up fast

    if not word.strip():
        raise UserError("text: needs a word after it, e.g. text:DDPM (quote it if it has "
                        "spaces)")
    if font:
        try:
            face: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(
                os.path.expanduser(font), FONT_SIZE)
        except (OSError, ValueError):
            raise UserError(f"cannot read font {_label(font)}: give a TrueType/OpenType file "
                            "(.ttf, .otf), or drop --font for Pillow's own") from None
    else:
        face = ImageFont.load_default(size=FONT_SIZE)
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), word, font=face)
    left, top, right, bottom = (math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]),
                                math.ceil(box[3]))
    margin = FONT_SIZE // 8
    im = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 255)
    ImageDraw.Draw(im).text((margin - left, margin - top), word, fill=0, font=face)
    return _darkness(np.asarray(im, dtype=np.float64) / 255.0, f"text:{_label(word)}")


def _darkness(grey: np.ndarray, name: str) -> np.ndarray:
    """Grey levels (H, W) in [0, 1] (1 white) -> darkness with the background at 0, checked."""
    h, w = grey.shape
    if min(h, w) < MIN_SIDE:
        raise UserError(f"{name} is {w}x{h} pixels (width x height), smaller than {MIN_SIDE} "
                        "a side; give a larger picture")
    dark = 1.0 - grey
    dark[dark < BACKGROUND] = 0.0
    if not dark.any():
        raise UserError(f"{name} is blank: no dark pixel to draw points from; draw the shape "
                        "dark on a light background")
    if (dark > 1.0 - BACKGROUND).all():
        raise UserError(f"{name} is dark all over: no shape to draw points from; draw the "
                        "shape dark on a light background")
    return dark


def sample_picture(dark: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points (n, 2) float64 with density proportional to ``dark`` (H, W): a pixel drawn by
    its darkness, the point uniform within it; y up, centred, the longer side SPAN units."""
    h, w = dark.shape
    p = dark.ravel() / dark.sum()
    idx = rng.choice(p.size, size=n, p=p)
    row, col = np.divmod(idx, w)
    u = rng.random((n, 2))
    x = col + u[:, 0] - w / 2  # pixel (row, col) covers [col, col + 1) x [row, row + 1)
    y = h / 2 - (row + u[:, 1])  # rows run down, y runs up
    return np.stack([x, y], axis=1) * (SPAN / max(h, w))


def darkness_of(source: str, font: str = "") -> tuple[str, np.ndarray]:
    """(the data set's name, darkness (H, W)) of ``text:WORD`` or a picture file."""
    if source.startswith(TEXT):
        if font and not Path(font).expanduser().is_file():
            raise UserError(f"font not found: {_label(font)}; give a .ttf/.otf file, or drop "
                            "--font for Pillow's own")
        return source, render_text(source[len(TEXT):], font)
    return Path(source).name, read_picture(source)
