"""What tells one session that another changed the project (team labelling): a token over the
undo history and the label set, read with one query on either back end. Every user edit adds
a history row (or flips ``undone``); a new edit drops the redo branch (the count changes)."""
from __future__ import annotations


def change_token(project) -> tuple:
    """Equal tokens: nobody edited labels, the development set, cluster labels or the label set
    in between (as far as one poll can tell: an undo and its redo in between cancel out)."""
    row = project.query(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM history), (SELECT COUNT(*) FROM history),"
        " (SELECT COALESCE(SUM(undone), 0) FROM history),"
        " (SELECT COUNT(*) FROM label_set), (SELECT COALESCE(MAX(id), 0) FROM label_set)")[0]
    return tuple(int(v) for v in row)
