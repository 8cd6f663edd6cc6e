"""Pieces shared by sub-commands: project opening, method hyperparameters as options, progress bar."""
from __future__ import annotations

import argparse
import ast
import sys


def add_project_arg(p: argparse.ArgumentParser, *, positional: bool = False, required: bool = True,
                    help: str = "project folder") -> None:
    """``--project/-p PROJECT``; with ``positional`` also a bare ``PROJECT`` (``latentmap info P``),
    since users type either form: :func:`project_arg` reads whichever was given."""
    if positional:
        p.add_argument("project", nargs="?", help=help)
        p.add_argument("--project", "-p", dest="project_option", metavar="PROJECT",
                       help="the same, as an option")
        p.set_defaults(project_required=required)
    else:
        p.add_argument("--project", "-p", required=required, help=help)


def project_arg(args):
    """The project a command was given, as ``PROJECT`` or ``--project/-p PROJECT``."""
    bare, option = getattr(args, "project", None), getattr(args, "project_option", None)
    if bare and option and bare != option:
        raise ValueError(f"two projects given ({bare!r} and --project {option!r}): give one")
    path = bare or option
    if not path and getattr(args, "project_required", False):
        raise ValueError("no project given: pass its folder, as PROJECT or --project PROJECT")
    return path


def open_project(path):
    from ..project import Project

    return Project.open(path)


def parse_param_overrides(items: list[str], method_cls) -> dict:
    """``--set lr=1e-3 --set augment=false`` -> typed kwargs checked against the signature."""
    specs = {s.name: s for s in method_cls.param_specs()}
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        if key not in specs:
            raise ValueError(f"{method_cls.__name__} has no hyperparameter {key!r}; "
                             f"known: {', '.join(specs)}")
        out[key] = coerce(raw, specs[key])
    return out


def coerce(raw: str, spec):
    if spec.type is bool:
        low = raw.lower()
        if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"{spec.name}: expected true/false, got {raw!r}")
        return low in ("1", "true", "yes", "on")
    if spec.type in (int, float):
        value = spec.type(float(raw)) if spec.type is int else float(raw)
    elif spec.type in (tuple, list):
        value = spec.type(ast.literal_eval(raw))
    elif spec.default is None:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    else:
        value = raw
    if spec.choices and value not in spec.choices:
        raise ValueError(f"{spec.name}: {value!r} is not one of {', '.join(map(str, spec.choices))}")
    return value


def describe_params(method_cls) -> str:
    lines = []
    for s in method_cls.param_specs():
        extra = f" one of {list(s.choices)}" if s.choices else ""
        lines.append(f"  {s.name} = {s.default!r}{extra}  {s.help}")
    return "\n".join(lines)


class ProgressBar:
    """tqdm bar fed by ``core.jobs.Progress``: one tick per step, loss terms in the postfix."""

    def __init__(self, desc: str):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None
        self.desc = desc

    def __call__(self, p) -> None:
        total = p.total_steps or (p.n_epochs or 0) * (p.steps_per_epoch or 0) or None
        if self.bar is None:
            self.bar = self._tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr,
                                  dynamic_ncols=True, initial=max(p.global_step - 1, 0))
        elif self.bar.total is None and total:
            # the first reports (loading, building) may not know the step count yet
            self.bar.total = total
        self.bar.update(max(0, p.global_step - self.bar.n))
        post = {k: f"{v:.4g}" for k, v in p.losses.items()}
        if p.metrics:  # epoch-end figures stay in the bar until the next evaluation
            self.metrics = {k: f"{v:.3f}" for k, v in p.metrics.items()}
        post.update(getattr(self, "metrics", {}))
        post["ep"] = p.epoch
        if p.samples_per_s:
            post["smp/s"] = f"{p.samples_per_s:.1f}"
        self.bar.set_postfix(post, refresh=False)
        if p.message.startswith("WARNING"):  # e.g. DeepDiffusion's collapse warnings, once per epoch
            self.bar.write(p.message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
