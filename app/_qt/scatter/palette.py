"""Colours for the scatter: a categorical palette, a continuous colormap, and value coding.

No Qt here, so the colour logic is testable and reusable by legends elsewhere.
"""
from __future__ import annotations

import colorsys
import re

import numpy as np

# tab10 then the light half of tab20: distinct on white, the same as matplotlib users expect
_BASE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5",
]
#: colour of "no value" ('' / None / NaN): a light grey that reads as background-ish
MISSING_RGB = (190, 190, 190)
MISSING_NAME = "(none)"

# viridis, 9 anchors (matplotlib's _viridis_data sampled evenly), interpolated to 256 entries
_VIRIDIS_ANCHORS = np.array([
    [68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
], dtype=np.float32)


def _hex(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def categorical_palette(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 colours; beyond the base palette, golden-ratio hues keep neighbours apart."""
    cols = [_hex(h) for h in _BASE[:n]]
    i = 0
    while len(cols) < n:
        h = (0.13 + i * 0.618033988749895) % 1.0
        s = 0.55 + 0.35 * ((i // 3) % 2)
        v = 0.85 - 0.25 * ((i // 2) % 2)
        cols.append(tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)))
        i += 1
    return np.asarray(cols, dtype=np.uint8).reshape(n, 3)


def colormap_lut(n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 viridis lookup table for continuous values."""
    pos = np.linspace(0, len(_VIRIDIS_ANCHORS) - 1, n)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS_ANCHORS) - 2)
    f = (pos - lo)[:, None]
    lut = _VIRIDIS_ANCHORS[lo] * (1 - f) + _VIRIDIS_ANCHORS[lo + 1] * f
    return np.round(lut).astype(np.uint8)


def _natural_key(s: str):
    return [(0, float(t), "") if re.fullmatch(r"-?\d+(\.\d+)?", t) else (1, 0.0, t.lower())
            for t in re.split(r"(-?\d+(?:\.\d+)?)", s) if t != ""]


def _is_missing(v) -> bool:
    return v is None or v == "" or (isinstance(v, float) and np.isnan(v))


class Coding:
    """How each point is coloured: ``codes`` index ``colours``; categorical or continuous.

    ``names``/``counts`` are the legend rows (categorical), ``vmin``/``vmax`` the colour bar range
    (continuous; codes there are LUT bins and the last colour is the missing colour).
    """

    def __init__(self, codes, colours, *, categorical, names=(), counts=(), vmin=0.0, vmax=1.0,
                 n_missing=0, labels=None):
        self.codes = codes
        self.colours = colours
        self.categorical = categorical
        self.names = list(names)
        self.counts = list(counts)
        self.vmin, self.vmax = float(vmin), float(vmax)
        self.n_missing = int(n_missing)
        self._labels = labels  # per point display values (continuous: the float values)

    def reordered(self, order: np.ndarray) -> "Coding":
        """The same coding with points permuted by ``order`` (integer reindexing is cheap; the
        values themselves, often Python strings, are not reordered)."""
        labels = None if self._labels is None else self._labels[order]
        return Coding(self.codes[order], self.colours, categorical=self.categorical, names=self.names,
                      counts=self.counts, vmin=self.vmin, vmax=self.vmax, n_missing=self.n_missing,
                      labels=labels)

    def value_text(self, i: int) -> str:
        if self.categorical:
            return self.names[int(self.codes[i])]
        v = self._labels[i]
        return "–" if not np.isfinite(v) else f"{v:.4g}"


def code_values(values, categorical: bool, *, n_bins: int = 256) -> Coding:
    """Turn a column's values into per point colour codes (see :class:`Coding`)."""
    if categorical:
        import pandas as pd

        # hash-based factorize: np.unique on 1M strings sorts and takes ~10x longer
        # on the plain object array: a Series would first be converted to an arrow string array
        raw, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        names = [str(u) for u in uniques.tolist()]
        missing_codes = [i for i, u in enumerate(uniques.tolist()) if _is_missing(u)]
        counts = np.bincount(raw[raw >= 0], minlength=len(names)) if len(raw) else np.zeros(len(names), np.int64)
        n_missing = int((raw < 0).sum() + sum(counts[i] for i in missing_codes))
        present = [i for i in range(len(names)) if i not in set(missing_codes)]
        order = sorted(present, key=lambda i: _natural_key(names[i]))
        remap = np.empty(len(names) + 1, dtype=np.int32)   # last slot: the -1 sentinel
        remap[order] = np.arange(len(order), dtype=np.int32)
        out_names = [names[i] for i in order]
        out_counts = [int(counts[i]) for i in order]
        colours = categorical_palette(len(order))
        if n_missing:
            remap[missing_codes] = len(order)
            remap[-1] = len(order)
            out_names.append(MISSING_NAME)
            out_counts.append(n_missing)
            colours = np.vstack([colours, np.asarray(MISSING_RGB, np.uint8)[None]])
        else:
            remap[-1] = 0
        codes = remap[raw]   # raw == -1 indexes the last slot
        return Coding(codes, colours, categorical=True, names=out_names, counts=out_counts,
                      n_missing=n_missing)
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    vmin, vmax = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 1.0)
    span = vmax - vmin if vmax > vmin else 1.0
    codes = np.full(len(v), n_bins, dtype=np.int32)
    codes[finite] = np.clip(((v[finite] - vmin) / span * (n_bins - 1)).round(), 0, n_bins - 1).astype(np.int32)
    colours = np.vstack([colormap_lut(n_bins), np.asarray(MISSING_RGB, np.uint8)[None]])
    return Coding(codes, colours, categorical=False, vmin=vmin, vmax=vmax,
                  n_missing=int((~finite).sum()), labels=v)
