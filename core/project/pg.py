"""PostgreSQL back end of the project store (psycopg 3), for a team labelling one project.

A project's tables live on a PostgreSQL server, its arrays stay in a folder on a shared file
system. Name it as ``postgresql://user@host[:port]/db?folder=/shared/arrays`` wherever a project
folder is asked for, or put a ``project.toml`` in the folder::

    [database]
    url = "postgresql://user@host/db"

``Project`` runs the same SQL on both back ends: ``PgConnection`` is a ``sqlite3.Connection``
look-alike that translates the store's SQLite dialect (``?`` parameters, ``INSERT OR
REPLACE/IGNORE``, ``AUTOINCREMENT`` keys, ``rowid`` insertion order, ``lastrowid``, the schema
queries ``sqlite_master`` / ``PRAGMA table_info``) to PostgreSQL. The schema is
``core.project.schema`` (INTEGER as BIGINT, REAL as DOUBLE PRECISION, so nothing is narrowed),
with the same version record and migrations. ``BEGIN IMMEDIATE`` becomes ``BEGIN`` plus a
transaction-scoped advisory lock: writers take turns as on SQLite, so two annotators labelling
the same sample resolve in commit order (the later edit wins, both are in the history).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .schema import SCHEMA

#: the advisory lock every writing transaction of a project database holds (one per database)
WRITE_LOCK_KEY = 0x4C4D6170  # "LMap"

# pandas warns for any DB-API connection that is not sqlite3's; ours answers its calls.
warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy connectable")


def is_url(location) -> bool:
    return _url_text(location).startswith(("postgresql://", "postgres://"))


def _url_text(location) -> str:
    # Path("postgresql://u@h/db") collapses the double slash: accept that spelling too
    s = str(location)
    return re.sub(r"^(postgres(?:ql)?):/(?=[^/])", r"\1://", s)


def location(path) -> tuple[str, Path] | None:
    """``(connection URL without the folder, arrays folder)`` when ``path`` names a PostgreSQL
    project (a URL, or a folder whose project.toml names a server); None for a SQLite folder."""
    if is_url(path):
        path = _url_text(path)
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        folder = query.pop("folder", None)
        if not folder:
            raise ValueError(f"{_redact(path)}: add ?folder=/path/to/project/folder (where the "
                             "project's arrays live, on a file system every user can reach)")
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return url, Path(folder)
    toml = Path(path) / "project.toml"
    if toml.is_file():
        import tomllib

        try:
            cfg = tomllib.loads(toml.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{toml}: cannot read ({exc})") from exc
        url = (cfg.get("database") or {}).get("url")
        if not url or not is_url(url):
            raise ValueError(f"{toml}: [database] url must be a postgresql:// URL")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        folder = Path(query.pop("folder", path))
        return urlunsplit(parts._replace(query=urlencode(query))), folder
    return None


def _redact(url) -> str:
    """The URL without a password (for messages)."""
    p = urlsplit(str(url))
    if p.password:
        p = p._replace(netloc=p.netloc.replace(f":{p.password}@", ":***@"))
    return urlunsplit(p)


def open_project(cls, path, *, create: bool, name: str | None = None, exist_ok: bool = True,
                 read_only: bool | None = None):
    """``Project.create/open`` for a PostgreSQL location (called by them)."""
    from .store import ProjectError

    url, folder = location(path)
    try:
        conn = PgConnection(url)
    except Exception as exc:  # psycopg.OperationalError: server down, auth, unknown database
        raise ProjectError(f"{_redact(url)}: cannot connect ({str(exc).strip()})") from exc
    try:
        exists = _has_schema(conn)
        if create and exists and not exist_ok:
            raise ProjectError(f"{_redact(url)}: a project already exists in this database")
        if not create and not exists:
            raise ProjectError(f"{_redact(url)}: not a LatentMap project (no tables)")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        cls._prepare(conn, folder / "(postgresql)", create=create,
                     name=name or folder.name, exist_ok=exist_ok)
    except BaseException:
        conn.close()
        raise
    project = cls(folder, conn, read_only=bool(read_only))
    project.database_url = _redact(url)
    if not project.read_only:
        from ..jobs.recovery import mark_interrupted_runs

        mark_interrupted_runs(project)
    return project


def _has_schema(conn) -> bool:
    return bool(conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema=current_schema()"
        " AND table_name='meta'").fetchone())


# --------------------------------------------------------------------------- the schema
def _parse_schema(script: str):
    tables: dict[str, list[str]] = {}
    pks: dict[str, list[str]] = {}
    for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", script, re.S):
        name, body = m.group(1), m.group(2)
        cols, pk = [], []
        for line in body.splitlines():
            line = line.split("--")[0].strip().rstrip(",")
            if not line:
                continue
            pkm = re.match(r"PRIMARY KEY \(([^)]*)\)", line)
            if pkm:
                pk = [c.strip() for c in pkm.group(1).split(",")]
                continue
            col = line.split()[0]
            cols.append(col)
            if "PRIMARY KEY" in line:
                pk = [col]
        tables[name], pks[name] = cols, pk
    return tables, pks


TABLES, PRIMARY_KEYS = _parse_schema(SCHEMA)
IDENTITY_TABLES = {t for t, cols in TABLES.items() if PRIMARY_KEYS.get(t) == ["id"]
                   and re.search(rf"TABLE IF NOT EXISTS {t} \(\s*id\s+INTEGER PRIMARY KEY AUTOINCREMENT",
                                 SCHEMA)}


def _columns(table: str) -> list[str]:
    from .schema import ADDED_COLUMNS

    cols = list(TABLES.get(table, []))
    cols += [c for (t, c) in ADDED_COLUMNS if t == table and c not in cols]
    return cols


def translate_ddl(stmt: str) -> str:
    s = re.sub(r"--[^\n]*", "", stmt)
    s = re.sub(r"INTEGER PRIMARY KEY AUTOINCREMENT",
               "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", s)
    s = re.sub(r"\bINTEGER\b", "BIGINT", s)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    if re.match(r"\s*CREATE TABLE IF NOT EXISTS samples\b", s):
        # SQLite's rowid: the insertion order samples are listed in
        s = s.rstrip().rstrip(";").rstrip()
        s = s[:-1].rstrip() + ",\n    rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE\n)"
    return s


def translate(sql: str, has_params: bool) -> tuple[str, str | None]:
    """SQLite-dialect statement -> (PostgreSQL statement, the column whose value is returned as
    ``lastrowid`` or None)."""
    s = re.sub(r"^(\s*--[^\n]*\n)+", "", sql).strip()
    up = s.upper()
    if up.startswith(("CREATE ", "ALTER ")):
        return translate_ddl(s), None
    m = re.match(r"PRAGMA table_info\((\w+)\)", s, re.I)
    if m:
        return ("SELECT ordinal_position - 1, column_name FROM information_schema.columns WHERE "
                f"table_schema=current_schema() AND table_name='{m.group(1)}' AND column_name<>'rowid'"
                " ORDER BY ordinal_position"), None
    s = re.sub(r"sqlite_master WHERE type='table' AND name=",
               "information_schema.tables WHERE table_schema=current_schema() AND table_name=", s)
    s = re.sub(r"json_extract\((\w+(?:\.\w+)?), '\$\.(\w+)'\)", r"(\1::json ->> '\2')", s)
    s = re.sub(r"SELECT \* FROM samples\b", "SELECT " + ", ".join(_columns("samples")) + " FROM samples", s)
    returning = None
    m = re.match(r"INSERT OR (REPLACE|IGNORE) INTO (\w+)\s*(\(([^)]*)\))?\s*VALUES", s, re.I)
    if m:
        table = m.group(2)
        cols = ([c.strip() for c in m.group(4).split(",")] if m.group(4) else _columns(table))
        pk = PRIMARY_KEYS[table]
        s = f"INSERT INTO {table} ({', '.join(cols)}) VALUES" + s[m.end():]
        rest = [c for c in cols if c not in pk]
        if m.group(1).upper() == "IGNORE" or not rest:
            s += " ON CONFLICT DO NOTHING"
        else:
            s += (f" ON CONFLICT ({', '.join(pk)}) DO UPDATE SET "
                  + ", ".join(f"{c}=EXCLUDED.{c}" for c in rest))
    else:
        m = re.match(r"INSERT INTO (\w+)\b", s, re.I)
        if m and m.group(1) in IDENTITY_TABLES and "RETURNING" not in up:
            s += " RETURNING id"
            returning = "id"
    if has_params:
        s = s.replace("%", "%%").replace("?", "%s")
    return s, returning


# --------------------------------------------------------------------------- the connection
class PgCursor:
    def __init__(self, conn: "PgConnection"):
        self._conn = conn
        self._cur = conn.raw.cursor()
        self.lastrowid = None

    def execute(self, sql: str, params=None):
        params = tuple(params) if params else None
        if sql.strip().upper().startswith("BEGIN"):
            self._cur.execute("BEGIN")
            self._cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            return self
        text, returning = translate(sql, params is not None)
        self._cur.execute(text, params)
        if returning:
            self.lastrowid = self._cur.fetchone()[0]
        return self

    def executemany(self, sql: str, seq):
        seq = [tuple(r) for r in seq]
        if not seq:
            return self
        text, returning = translate(sql, True)
        if returning:
            text = text[: -len(" RETURNING id")]
        self._cur.executemany(text, seq)
        return self

    @property
    def description(self):
        return self._cur.description

    @property
    def rowcount(self):
        return self._cur.rowcount

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self):
        return self._cur.fetchall() if self._cur.description else []

    def fetchmany(self, size=None):
        return self._cur.fetchmany(size)

    def __iter__(self):
        return iter(self.fetchall())

    def close(self):
        self._cur.close()


class PgConnection:
    """What ``Project`` uses of a ``sqlite3.Connection``, over one psycopg 3 connection in
    autocommit mode (transactions are the explicit BEGIN ... COMMIT the store issues)."""

    backend = "postgresql"

    def __init__(self, url: str):
        import psycopg

        self.url = url
        self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def cursor(self) -> PgCursor:
        return PgCursor(self)

    def execute(self, sql: str, params=None) -> PgCursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq) -> PgCursor:
        return self.cursor().executemany(sql, seq)

    def executescript(self, script: str) -> None:
        from .schema import statements

        for stmt in statements(script):
            self.execute(stmt)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def commit(self) -> None:  # pandas calls these; our transactions are explicit
        pass

    def rollback(self) -> None:
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    def reset_identities(self) -> None:
        """Identity sequences past the largest ids (after rows were copied in with their ids)."""
        for table in sorted(IDENTITY_TABLES) + ["samples"]:
            col = "rowid" if table == "samples" else "id"
            self.raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'),"
                f" COALESCE((SELECT MAX({col}) FROM {table}), 0) + 1, false)")

    def close(self) -> None:
        self.raw.close()
