"""Data sets for ddpmlab: built-in 2D toy shapes, user point files and standardization."""

from ddpmlab.data.points import PointSet, load_points, resolve
from ddpmlab.data.toy2d import TOY2D, Standardizer

__all__ = ["TOY2D", "PointSet", "Standardizer", "load_points", "resolve"]
