"""LatentMap engine. Headless: nothing under core/ imports Qt (tests/core/test_no_qt.py)."""
import os as _os

# Large CPU tensors on transparent huge pages: the DeepDiffusion loss's 100 MB work buffers
# allocate and fault in about twice as fast. torch reads this once, before its first
# allocation, so it has no effect when torch was imported and used before the engine.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
