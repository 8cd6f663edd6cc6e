"""A second annotator in its own process (undo is scoped per process session): reads one JSON
command per line on stdin, answers one JSON line on stdout.

    {"op": "set_label", "ids": [...], "label": "x", "value": true, "author": "bob"}
    {"op": "undo"} | {"op": "labels", "ids": [...]} | {"op": "close"}
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    from core.project import Project

    project = Project.open(sys.argv[1])
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "set_label":
            out = project.set_label(cmd["ids"], cmd["label"], cmd.get("value", True), author=cmd["author"])
        elif op == "undo":
            out = project.undo()
        elif op == "labels":
            out = project.labels(cmd["ids"])
        elif op == "close":
            project.close()
            print(json.dumps(None), flush=True)
            return 0
        else:
            raise ValueError(f"unknown op {op!r}")
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
