"""LatentMap engine. Headless: nothing under core/ imports Qt (tests/core/test_no_qt.py)."""
import os as _os

# Large CPU tensors on transparent huge pages: the DeepDiffusion loss's 100 MB work buffers
# allocate and fault in about twice as fast. torch reads this once, before its first
# allocation, so it has no effect when torch was imported and used before the engine.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# numba's OpenMP pool as large as the thread budget the user gave (its idle workers spin and
# take CPU from other work; see core.methods._lmr_kernels)
if _os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(_os.environ["OMP_NUM_THREADS"]) > 0:
    _os.environ.setdefault("NUMBA_NUM_THREADS", _os.environ["OMP_NUM_THREADS"].strip())

__version__ = "0.1.0"
