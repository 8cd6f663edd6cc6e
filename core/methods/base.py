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
        from ..jobs import load_checkpoint

        state = path_or_state if isinstance(path_or_state, dict) else load_checkpoint(path_or_state)
        params = dict(state.get("params", {}))
        params.update(overrides)
        m = cls(**params)
        m.load_state_dict(state)
        return m
