"""Evaluation metrics (pure functions). Import from the submodules, or the names below."""
from .retrieval import RetrievalResult, cosine_distances, retrieval_map  # noqa: F401
from .table1 import Table1Result, table1  # noqa: F401
