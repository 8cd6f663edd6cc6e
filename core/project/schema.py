"""SQLite schema of a project database and its version.

Bump ``SCHEMA_VERSION`` and add a step to ``MIGRATIONS`` whenever the tables change; a project
written by a newer LatentMap is refused with a clear message instead of being misread.
"""

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    id          TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL DEFAULT '',
    source_path TEXT NOT NULL DEFAULT '',
    modality    TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT '',       -- image2d | volume | mask | mesh
    split       TEXT NOT NULL DEFAULT '',       -- train | val | test | ''
    shape       TEXT NOT NULL DEFAULT '[]',     -- JSON list
    geometry    TEXT NOT NULL DEFAULT '{}',     -- JSON: spacing, origin, direction
    metadata    TEXT NOT NULL DEFAULT '{}',     -- JSON: tags, manifest columns
    data_file   TEXT,                           -- relative to the project folder
    data_index  INTEGER,                        -- row of a stacked array, or NULL
    mask_file   TEXT,                           -- associated label map / mask
    mask_index  INTEGER,
    dev         INTEGER NOT NULL DEFAULT 0,     -- member of the development set
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_split ON samples(split);
CREATE INDEX IF NOT EXISTS samples_dataset ON samples(dataset);

CREATE TABLE IF NOT EXISTS label_set (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL UNIQUE,
    color    TEXT,
    position INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS labels (
    sample_id TEXT NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
    label_id  INTEGER NOT NULL REFERENCES label_set(id) ON DELETE CASCADE,
    author    TEXT NOT NULL,
    time      TEXT NOT NULL,
    PRIMARY KEY (sample_id, label_id)
);
CREATE INDEX IF NOT EXISTS labels_label ON labels(label_id);

-- Undo/redo of user edits. A row is one user action; payload holds what to invert.
CREATE TABLE IF NOT EXISTS history (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    author  TEXT NOT NULL,
    time    TEXT NOT NULL,
    undone  INTEGER NOT NULL DEFAULT 0,
    session TEXT NOT NULL DEFAULT ''        -- sessions.id of the edit ('' before sessions existed)
);
-- Who has a project open for editing: undo/redo only reaches edits of the caller's own session,
-- of sessions that have ended (closed, or their process is gone), or of the same process, so
-- two people labelling at once never undo each other's edits.
CREATE TABLE IF NOT EXISTS sessions (
    id        TEXT PRIMARY KEY,
    author    TEXT NOT NULL,
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT
);

CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    method      TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'created',
    device      TEXT NOT NULL DEFAULT '',
    started_at  TEXT,
    finished_at TEXT,
    checkpoint  TEXT,
    metrics     TEXT NOT NULL DEFAULT '{}',
    message     TEXT NOT NULL DEFAULT '',
    pid         INTEGER,                         -- the process training it (core.jobs.recovery)
    host        TEXT NOT NULL DEFAULT '',
    process_started REAL                         -- that process's start time (pid reuse check)
);

CREATE TABLE IF NOT EXISTS clusterings (
    name       TEXT PRIMARY KEY,
    run_id     INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    n_clusters INTEGER NOT NULL,
    params     TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_assignments (
    clustering TEXT NOT NULL REFERENCES clusterings(name) ON DELETE CASCADE,
    sample_id  TEXT NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
    cluster    INTEGER NOT NULL,
    PRIMARY KEY (clustering, sample_id)
);
-- A cluster's label vector: 'algorithm1' from the development set, or 'manual' overrides.
CREATE TABLE IF NOT EXISTS cluster_labels (
    clustering TEXT NOT NULL REFERENCES clusterings(name) ON DELETE CASCADE,
    cluster    INTEGER NOT NULL,
    source     TEXT NOT NULL,
    vector     TEXT NOT NULL,                   -- JSON {label name: value}
    n_dev      INTEGER NOT NULL DEFAULT 0,
    author     TEXT NOT NULL,
    time       TEXT NOT NULL,
    PRIMARY KEY (clustering, cluster, source)
);

CREATE TABLE IF NOT EXISTS session_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# version -> SQL that upgrades a database from version-1 to version
MIGRATIONS: dict[int, str] = {}

# Columns added to existing tables without a schema version bump (a column with a default is
# read and written correctly by older LatentMap versions too): (table, column) -> declaration.
# ``Project.open`` adds those a database lacks; new tables come from ``SCHEMA``'s IF NOT EXISTS.
ADDED_COLUMNS: dict[tuple[str, str], str] = {
    ("history", "session"): "TEXT NOT NULL DEFAULT ''",
    ("runs", "pid"): "INTEGER",
    ("runs", "host"): "TEXT NOT NULL DEFAULT ''",
    ("runs", "process_started"): "REAL",
}


def statements(script: str) -> list[str]:
    """The SQL statements of a script, one by one (``executescript`` would commit first, and
    schema creation must be one transaction with its check)."""
    import sqlite3

    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip() and sqlite3.complete_statement(buf + ";"):
        out.append(buf.strip())
    return [s for s in out if s.strip(" ;\n")]
