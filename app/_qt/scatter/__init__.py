"""Latent scatter: a million points rasterised per category, markers when zoomed in, lasso and
box selection, hover cards; linked to the shared Selection and ColourBy models."""
from .view import ScatterView, mode_for

__all__ = ["ScatterView", "mode_for"]
