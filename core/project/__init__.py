"""Project store: one folder with a SQLite database and array files beside it."""
from .arrays import ArrayStore, atomic_save_npy, atomic_write_bytes
from .faults import DiskFullError, ProjectWriteError, ReadOnlyError
from .ids import make_id
from .schema import SCHEMA_VERSION
from .store import NewerSchemaError, Project, ProjectError, SampleRecord

__all__ = [
    "ArrayStore", "DiskFullError", "ProjectWriteError", "ReadOnlyError", "NewerSchemaError", "Project", "ProjectError", "SampleRecord", "SCHEMA_VERSION",
    "atomic_save_npy", "atomic_write_bytes", "make_id",
]
