"""``latentmap`` command line. One module per sub-command, each with ``register(subparsers)``.

A package rather than one ``cli.py`` so each sub-command lives next to nothing it does not need
and importing the CLI stays cheap (torch is imported only by the commands that train).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["import_cmd", "info", "app", "train", "finetune", "embed", "cluster", "match", "evaluate", "query",
            "project_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentmap",
        description="Unsupervised representation learning, clustering and labelling of medical images and shapes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = int(args.func(args) or 0)
        if argv is None and rc == 0 and getattr(args, "fast_exit", False):
            # the command line process of a command that has written and closed everything
            # (``fast_exit``): leave without the interpreter's teardown (unloading torch & co.
            # costs ~0.5 s of CPU). In-process callers (tests: ``main([...])``) return normally.
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return rc
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback, for users
        from ..project import ProjectError

        if isinstance(exc, (ProjectError, FileNotFoundError, KeyError, ValueError)):
            print(f"latentmap {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
