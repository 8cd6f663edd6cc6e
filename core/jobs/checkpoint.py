"""Checkpoints that cannot run code, and where a run's checkpoint lives in its project.

A project folder may come from anyone (a colleague's share, a downloaded archive), so nothing
read from it may execute code. Checkpoints are read with ``torch.load(weights_only=True)``,
which unpickles tensors and plain containers only. ``save_checkpoint`` writes a method's
``state_dict()`` in exactly that vocabulary: numpy arrays become tagged tensors (or raw bytes for
dtypes torch lacks), numpy scalars Python numbers, paths strings; anything else is refused when
saving, naming the entry, so a method whose state would not load fails at once in its tests
instead of on a user's resume.

Run checkpoints are recorded relative to the project folder (``runs/0001/checkpoint.pt``), so a
project that is moved or copied still resumes, embeds and fine-tunes. Older records (absolute
paths, or paths relative to the directory a command ran in) are mapped to the same
``runs/NNNN/...`` file of the project; a recorded path that leads outside the project folder is
refused.
"""
from __future__ import annotations

import io
import os
import re
from collections import OrderedDict
from pathlib import Path

from ..project.arrays import atomic_write_bytes

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "to_safe", "from_safe",
           "relative_to_project", "resolve_checkpoint", "run_checkpoint_path", "load_run_checkpoint"]

_ND = "__ndarray__"
_RUN_TAIL = re.compile(r"(?:^|[\\/])(runs[\\/]\d+[\\/][^\\/]+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, outside the project, or not loadable safely."""


# --------------------------------------------------------------------------- the safe vocabulary
def to_safe(obj, where: str = "state"):
    """``obj`` in the vocabulary ``torch.load(weights_only=True)`` reads back (see module doc)."""
    import numpy as np
    import torch

    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float, np.str_ a str
        if obj.dtype.kind in "biufc":
            return obj.item()
        if obj.dtype.kind in "SU":
            return obj.item()
        return to_safe(np.asarray(obj), where)
    if obj is None or type(obj) in (bool, int, float, complex, str, bytes) or isinstance(
            obj, (torch.Tensor, torch.dtype, torch.device, torch.Size)):
        return obj
    for base in (bool, int, float, complex, str, bytes):  # subclasses (IntEnum, ...) as the base type
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"checkpoint entry {where}: a numpy array of Python objects cannot be "
                            "stored safely; store numbers, strings or tensors")
        a = np.require(obj, requirements="C")
        try:
            if a.dtype.kind in "biufc" and a.dtype.byteorder in "=|":
                return {_ND: torch.from_numpy(a.copy()), "dtype": a.dtype.str}
        except TypeError:
            pass  # a dtype torch lacks: raw bytes below
        return {_ND: a.tobytes(), "dtype": a.dtype.str, "shape": list(a.shape)}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, OrderedDict):
        return OrderedDict((to_safe(k, where), to_safe(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, dict):
        return {to_safe(k, where): to_safe(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [to_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return type(obj)(items) if not hasattr(obj, "_fields") else tuple(items)
    raise TypeError(f"checkpoint entry {where}: a {type(obj).__module__}.{type(obj).__name__} cannot be "
                    "stored safely (checkpoints hold tensors, numbers, strings, lists and dicts)")


def from_safe(obj):
    """Inverse of ``to_safe``: tagged arrays back to numpy."""
    import numpy as np
    import torch

    if isinstance(obj, dict):
        if _ND in obj and "dtype" in obj:
            data, dtype = obj[_ND], np.dtype(obj["dtype"])
            if isinstance(data, torch.Tensor):
                return data.numpy().astype(dtype, copy=False)
            return np.frombuffer(data, dtype=dtype).reshape(obj.get("shape", [-1])).copy()
        out = {k: from_safe(v) for k, v in obj.items()}
        return OrderedDict(out) if isinstance(obj, OrderedDict) else out
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_safe(v) for v in obj)
    return obj


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` atomically in the safe vocabulary (``TypeError`` naming an entry that is
    not)."""
    import torch

    safe = to_safe(state)
    buf = io.BytesIO()
    torch.save(safe, buf)
    data = buf.getvalue()
    atomic_write_bytes(Path(path), lambda fh: fh.write(data))


def _legacy_numpy_globals() -> list:
    """Globals numpy arrays and scalars pickle through (checkpoints written before checkpoints
    were kept to the safe vocabulary). Reconstructing an array runs no user code; its elements
    go through the same restricted unpickler."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = {type(np.dtype(t)) for t in ("?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q",
                                          "e", "f", "d", "g", "F", "D", "U", "S")}
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtypes]


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; never runs code from the file.

    A file that needs anything beyond tensors, plain containers and numpy arrays (e.g. a pickle
    that would call a function) is refused with a ``CheckpointError`` naming the file.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            with torch.serialization.safe_globals(_legacy_numpy_globals()):
                state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it asks for {m.group(1)})" if m else ""
        raise CheckpointError(
            f"{path}: refused to load this checkpoint: it contains Python objects or code{what}, "
            "not just weights. LatentMap never runs code from a project folder; if you did not "
            "put this file there, someone else did. Train the run again to replace it.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a LatentMap checkpoint (holds a {type(state).__name__}, "
                              "not a dict)")
    return from_safe(state)


# --------------------------------------------------------------------------- where it lives
def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def relative_to_project(project_path, path) -> str:
    """How a run record stores ``path``: relative to the project folder when inside it."""
    root = Path(project_path).resolve()
    p = Path(path)
    p = (p if p.is_absolute() else Path.cwd() / p).resolve()
    if _inside(p, root):
        return p.relative_to(root).as_posix()
    return str(p)


def resolve_checkpoint(project_path, stored) -> Path:
    """The file a run record's ``checkpoint`` means, inside the project folder.

    Relative records are relative to the project. Records from before (absolute, or relative
    to the directory a command ran in, possibly of the project's earlier location) are mapped
    to the same ``runs/NNNN/<file>`` of this project when they do not point into it. Symbolic
    links are followed before the check, so a link out of the project is refused too.
    """
    if stored is None or str(stored).strip() in ("", "None", "nan"):
        raise CheckpointError("no checkpoint recorded")
    root = Path(project_path).resolve()
    raw = str(stored)
    p = Path(raw)
    candidates = [p] if p.is_absolute() else [root / p]
    m = _RUN_TAIL.search(raw)
    if m:
        candidates.append(root / Path(m.group(1).replace("\\", "/")))
    first_inside = None
    for cand in candidates:
        real = cand.resolve()
        if not _inside(real, root):
            continue
        if real.exists():
            return real
        first_inside = first_inside or real
    if first_inside is not None:
        return first_inside
    raise CheckpointError(f"checkpoint {raw} is outside the project folder {root}: LatentMap "
                          "only loads checkpoints stored inside the project")


def run_checkpoint_path(project, run: dict) -> Path:
    """The existing checkpoint file of ``run`` (a ``project.run(id)`` row), with errors that say
    what to do."""
    rid, method = run.get("id"), run.get("method", "?")
    stored = run.get("checkpoint")
    if stored is None or str(stored).strip() in ("", "None", "nan"):
        raise CheckpointError(
            f"run {rid} ({method}) has no checkpoint: it stopped before its first training step "
            "finished. Start a new run instead.")
    try:
        path = resolve_checkpoint(project.path, stored)
    except CheckpointError as exc:
        raise CheckpointError(f"run {rid} ({method}): {exc}") from None
    if not path.is_file():
        raise CheckpointError(f"run {rid} ({method}): its checkpoint {path} is missing from the "
                              "project folder")
    return path


def load_run_checkpoint(project, run: dict, map_location="cpu") -> dict:
    """``load_checkpoint`` of a run's own checkpoint (inside the project, safe to read)."""
    return load_checkpoint(run_checkpoint_path(project, run), map_location=map_location)
