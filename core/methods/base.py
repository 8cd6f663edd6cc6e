"""The one method convention: scikit-learn style estimators with a step generator.

A method subclasses ``Method``, takes every hyperparameter as an explicit keyword argument of
``__init__`` (stored under the same name), implements ``steps(data, resume=None)`` yielding one
``core.jobs.Progress`` per optimisation step, and keeps learned state in attributes ending in
``_``. The app's training panel and the CLI build their forms from ``__init__``'s signature via
``param_specs()``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar


#: choices every method shares unless it declares its own
COMMON_CHOICES = {"device": ("auto", "cpu", "cuda")}


class Diverged(RuntimeError):
    """Training diverged: a loss (or the weights) stopped being finite.

    ``core.jobs.Job`` raises it for every method when a step reports a non-finite loss or a
    checkpoint would hold non-finite weights; a method may raise it itself before
    ``optimizer.step()`` with ``check_finite``. The job then keeps the last good checkpoint and
    records the run as ``diverged``.
    """

    def __init__(self, message: str, *, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class EmbeddingCollapsed(Diverged, ValueError):
    """A finished run whose embedding collapsed (every sample at nearly one point, or on one
    line): it is not applied, and never made the project's active run."""


def _fmt_lr(lr) -> str:
    """1e6, 0.001, 3e-5 (as a user types them)."""
    try:
        text = f"{float(lr):g}"
    except (TypeError, ValueError):
        return str(lr)
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def divergence_message(what: str, value, *, epoch=None, step=None, lr=None) -> str:
    """"loss became NaN at epoch 0, step 3: the learning rate 1e+06 is likely too high"."""
    import math

    v = float(value)
    kind = "NaN" if math.isnan(v) else ("infinite" if math.isinf(v) else f"{v:g}")
    where = ""
    if epoch is not None:
        where = f" at epoch {epoch}" + (f", step {step}" if step is not None else "")
    hint = (f"the learning rate {_fmt_lr(lr)} is likely too high; lower it and train again"
            if lr is not None else "the learning rate is likely too high; lower it and train again")
    return f"{what} became {kind}{where}: {hint}"


def check_finite(loss, *, epoch=None, step=None, lr=None, name: str = "loss") -> float:
    """``float(loss)``, or ``Diverged`` when it is NaN or infinite. Call it before
    ``optimizer.step()`` so a diverged step never reaches the weights."""
    import math

    value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
    if not math.isfinite(value):
        raise Diverged(divergence_message(name, value, epoch=epoch, step=step, lr=lr), epoch=epoch, step=step)
    return value


def nonfinite_entries(state, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors / arrays in a (nested) state dict that hold NaN or
    infinite values (a checkpoint must never be overwritten with those)."""
    import numpy as np

    out: list[str] = []
    if isinstance(state, dict):
        for k, v in state.items():
            out += nonfinite_entries(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out += nonfinite_entries(v, f"{prefix}[{i}]")
    elif hasattr(state, "is_floating_point") and hasattr(state, "isfinite"):
        if (state.is_floating_point() or state.is_complex()) and state.numel() and not bool(state.isfinite().all()):
            out.append(prefix)
    elif isinstance(state, np.ndarray) and state.dtype.kind in "fc":
        if state.size and not np.isfinite(state).all():
            out.append(prefix)
    return out


@dataclass
class ParamSpec:
    name: str
    default: Any
    type: type
    choices: tuple | None = None
    help: str = ""


class Method:
    #: registry name, e.g. "deepdiffusion"
    name: ClassVar[str] = ""
    #: what the method consumes: "points" | "image2d" | "volume"
    input_kind: ClassVar[str] = ""
    #: hyperparameter -> allowed values, for choice widgets and CLI validation
    param_choices: ClassVar[dict] = {}
    #: hyperparameter -> one-line help
    param_help: ClassVar[dict] = {}

    # ---------------------------------------------------------------- sklearn conventions
    @classmethod
    def param_specs(cls) -> list[ParamSpec]:
        out = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            default = None if p.default is inspect._empty else p.default
            typ = type(default) if default is not None else str
            choices = cls.param_choices.get(p.name) or COMMON_CHOICES.get(p.name)
            out.append(ParamSpec(p.name, default, typ, tuple(choices) if choices else None,
                                 cls.param_help.get(p.name, "")))
        return out

    def get_params(self) -> dict:
        return {s.name: getattr(self, s.name) for s in self.param_specs()}

    def set_params(self, **params) -> "Method":
        valid = {s.name for s in self.param_specs()}
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"{type(self).__name__} has no hyperparameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------- the contract
    def steps(self, data, *, resume: dict | None = None):
        raise NotImplementedError

    def fit(self, data, *, resume: dict | None = None) -> "Method":
        for _ in self.steps(data, resume=resume):
            pass
        return self

    def transform(self, data):
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> "Method":
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, path_or_state, **overrides) -> "Method":
        """Rebuild a method from a checkpoint written by ``core.jobs.Job``.

        ``state_dict()`` must include ``"params"`` (``get_params()``) for this to work.
        """
        from ..jobs.checkpoint import load_checkpoint

        state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state)
        params = dict(state.get("params", {}))
        params.update(overrides)
        m = cls(**params)
        m.load_state_dict(state)
        return m
