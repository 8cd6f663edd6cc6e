"""``latentmap project copy SRC DST``: copy a project between back ends (SQLite folder <->
PostgreSQL), every table with its keys and the folder's files."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("project", help="project maintenance (copy between SQLite and PostgreSQL)",
                       description="Project maintenance. A project is a folder (SQLite), a "
                                   "postgresql://user@host/db?folder=/shared/folder URL, or a "
                                   "folder whose project.toml names the server.")
    psub = p.add_subparsers(dest="project_command", metavar="ACTION")
    psub.required = True
    c = psub.add_parser("copy", help="copy a project to another location or back end",
                        description="Copy every table (with its ids, the undo history and runs) "
                                    "and, when the folders differ, the project's files. DST must "
                                    "not hold a project yet.")
    c.add_argument("src", help="source project (folder or postgresql:// URL)")
    c.add_argument("dst", help="destination (folder or postgresql://...?folder=...)")
    c.set_defaults(func=run_copy)


def run_copy(args) -> int:
    from ..project.copy import copy_project
    from ..project.pg import _redact

    counts = copy_project(args.src, args.dst)
    print(f"copied {_redact(args.src)} -> {_redact(args.dst)}")
    for table, n in counts.items():
        print(f"  {table}: {n} rows")
    return 0
