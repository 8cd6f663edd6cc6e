"""2D projections of embeddings for the scatter: PCA at once, UMAP in the background."""
from .pca import fit_pca, pca_project
from .umap_ import UMAPProjector, ensure_numba_cache, umap_project

__all__ = ["fit_pca", "pca_project", "umap_project", "UMAPProjector", "ensure_numba_cache"]
