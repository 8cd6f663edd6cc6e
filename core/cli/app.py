"""``latentmap app [PROJECT] [--sample] [--screenshot PNG] [--quit-after SECONDS]``: the desktop app.

The Qt application lives in ``app/``; it is imported only when this command runs, so the rest of
the CLI (and ``core`` as a whole) stays importable without Qt.
"""
from __future__ import annotations

from ._common import add_project_arg, project_arg


def register(sub) -> None:
    p = sub.add_parser(
        "app", help="open the desktop app",
        description="Open the LatentMap window on a project (or on the bundled sample project).")
    add_project_arg(p, positional=True, required=False,
                    help="project folder (optional: File > Open later)")
    p.add_argument("--sample", action="store_true",
                   help="open the bundled sample project (copied to a user folder the first time)")
    p.add_argument("--screenshot", metavar="PNG",
                   help="once the window has rendered, save a screenshot here and print its path")
    p.add_argument("--quit-after", metavar="SECONDS", type=float,
                   help="close the app after this many seconds (for scripted runs)")
    p.set_defaults(func=run)


def run(args) -> int:
    project = project_arg(args)
    if project and args.sample:
        raise ValueError("give either a PROJECT or --sample, not both")
    if args.quit_after is not None and args.quit_after <= 0:
        raise ValueError("--quit-after must be positive")
    from app.main import run_app  # Qt is imported here, never at CLI start-up

    return run_app(project, screenshot=args.screenshot, quit_after=args.quit_after,
                   sample=args.sample)
