"""LatentMap engine. Headless: nothing under core/ imports Qt (tests/core/test_no_qt.py)."""
__version__ = "0.1.0"
