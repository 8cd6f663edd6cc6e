"""2D projections of embeddings for the scatter: PCA at once, UMAP in the background."""
from .pca import fit_pca, pca_project
from .umap_ import UMAPProjector, prepare_numba, umap_project

__all__ = ["fit_pca", "pca_project", "umap_project", "UMAPProjector", "prepare_numba"]
