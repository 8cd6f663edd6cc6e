"""Is a learned embedding usable, or has training collapsed it? A pure function of the features.

A representation that collapsed (every sample mapped to the same point, or onto one line) is the
usual result of a diverged run that still produced finite numbers, e.g. DeepDiffusion at a far
too high learning rate. Such an embedding must not become the project's active one.

``embedding_health(X)`` measures, in float64:

* ``spread``: RMS distance of the rows to their mean, relative to the rows' RMS norm
  (0 when every row is the same point, about 1 for features spread around the origin);
* ``effective_rank``: exp of the entropy of the normalised singular values of the centred rows
  (Roy & Vetterli 2007): 1 for points on a line, up to ``min(n - 1, d)``;
* ``mean_cosine``: mean cosine similarity over all pairs of distinct rows (1 = all rows point
  the same way);

and flags ``collapsed`` when the features are not finite, the rows are indistinguishable
(``spread < min_spread``), they all point the same way (``mean_cosine > max_mean_cosine``
with ``spread`` small too), or they lie on one line (``effective_rank < min_effective_rank``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["EmbeddingHealth", "embedding_health"]


@dataclass(frozen=True)
class EmbeddingHealth:
    n: int
    dim: int
    finite: bool
    spread: float
    effective_rank: float
    mean_cosine: float
    collapsed: bool
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        head = "collapsed" if self.collapsed else "healthy"
        text = (f"{head}: {self.n} x {self.dim}, effective rank {self.effective_rank:.2f}, "
                f"spread {self.spread:.3g}, mean cosine {self.mean_cosine:.4f}")
        return f"{text} ({self.reason})" if self.reason else text


def embedding_health(X, *, min_spread: float = 1e-3, min_effective_rank: float = 1.1,
                     max_mean_cosine: float = 0.9999) -> EmbeddingHealth:
    """Collapse indicators of an ``n x d`` embedding (see the module docstring).

    Fewer than two rows cannot be judged: they are reported healthy when finite.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        X = X.reshape(len(X), -1)
    n, d = X.shape
    finite = bool(np.isfinite(X).all()) if X.size else True
    if not finite:
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        return EmbeddingHealth(n, d, False, float("nan"), float("nan"), float("nan"), True,
                               f"{bad} of {n} rows contain NaN or infinite values")
    if n < 2 or d == 0:
        return EmbeddingHealth(n, d, True, float("nan"), float("nan"), float("nan"), False,
                               "too few rows to judge")
    X = X.astype(np.float64, copy=False)
    scale = float(np.sqrt(np.mean(np.sum(X * X, axis=1))))
    C = X - X.mean(axis=0)
    dev = float(np.sqrt(np.mean(np.sum(C * C, axis=1))))
    spread = dev / scale if scale > 0 else 0.0

    # effective rank of the centred rows; singular values below float64 round-off of the
    # data's own scale are noise and left out
    s = np.linalg.svd(C, compute_uv=False)
    s = s[s > max(s[0] if s.size else 0.0, 0.0) * 1e-12] if s.size and s[0] > 0 else s[:0]
    if s.size:
        p = s / s.sum()
        eff_rank = float(np.exp(-np.sum(p * np.log(p))))
    else:
        eff_rank = 0.0

    norms = np.linalg.norm(X, axis=1)
    ok = norms > 0
    if ok.sum() >= 2:
        U = X[ok] / norms[ok, None]
        m = int(ok.sum())
        total = U.sum(axis=0)
        mean_cos = float((total @ total - m) / (m * (m - 1)))
    else:
        mean_cos = 1.0

    reason = ""
    if spread < min_spread:
        reason = f"all {n} rows are nearly the same point (spread {spread:.2g} < {min_spread:g})"
    elif mean_cos > max_mean_cosine and spread < 10 * min_spread:
        reason = f"all rows point the same way (mean cosine similarity {mean_cos:.5f})"
    elif eff_rank < min_effective_rank:
        reason = f"the rows lie on one line (effective rank {eff_rank:.3f} < {min_effective_rank:g})"
    return EmbeddingHealth(n, d, True, spread, eff_rank, mean_cos, bool(reason), reason)
