"""Reading medical images, volumes, meshes, MedMNIST sets and manifests into a project.

``reader_for(path)`` picks a reader by file pattern; every reader returns ``LoadedSample`` /
``LoadedStack`` objects; ``import_source`` / ``import_steps`` write them into a ``Project``.
"""
from .importer import ImportReport, default_dataset, import_source, import_steps
from .registry import READERS, Reader, reader_for, register
from .sample import KINDS, LoadedSample, LoadedStack, ReadError

__all__ = [
    "ImportReport", "KINDS", "LoadedSample", "LoadedStack", "READERS", "ReadError", "Reader",
    "default_dataset", "import_source", "import_steps", "reader_for", "register",
]
