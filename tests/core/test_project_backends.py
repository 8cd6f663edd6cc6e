"""The project store on both back ends: SQLite (a folder) and PostgreSQL (a real throw-away
server, ``tests/pg_cluster.py``: initdb + pg_ctl on a free loopback port). Same schema and
version, transactions, labels with author and time, undo/redo scoped to a session, two
annotators at once, runs and clusterings, ``project copy`` SQLite <-> PostgreSQL round trip."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from core.io import import_source
from core.project import NewerSchemaError, Project, ProjectError, SCHEMA_VERSION
from tests.conftest import DATA, ROOT, need


@pytest.fixture(scope="session")
def pg_server():
    from tests.pg_cluster import PgCluster, find_bin

    if not find_bin("initdb"):
        pytest.skip("PostgreSQL server binaries not found: `make setup` as root installs the "
                    "Debian package 'postgresql'")
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture()
def make_location(backend, tmp_path, request):
    """A function giving a fresh project location on the back end under test."""
    counter = iter(range(100))

    def make(name=None):
        folder = tmp_path / (name or f"proj{next(counter)}")
        if backend == "sqlite":
            return str(folder)
        server = request.getfixturevalue("pg_server")
        return f"{server.new_database()}?folder={folder}"

    return make


@pytest.fixture()
def dicom_project(make_location):
    loc = make_location()
    with Project.create(loc) as p:
        assert import_source(p, need(DATA / "dicom_samples")).imported == 6
    return loc


def test_schema_version_and_reopen(make_location, backend):
    loc = make_location()
    with Project.create(loc, name="team") as p:
        assert p.schema_version == SCHEMA_VERSION and p.name == "team"
    with pytest.raises(ProjectError, match="already"):
        Project.create(loc)
    with Project.open(loc) as p:
        assert p.meta("name") == "team"
        p.set_meta("schema_version", SCHEMA_VERSION + 1)
    with pytest.raises(NewerSchemaError):
        Project.open(loc)


def test_labels_author_time_and_undo_across_reopen(dicom_project, backend):
    with Project.open(dicom_project) as p:
        a, b, c = p.sample_ids()[:3]
        p.set_label([a, b], "artefact", author="alice")
        p.set_label([c], "normal", author="bob")
        p.set_label([a], "artefact", False, author="alice")
        # arrays stay in the folder on both back ends
        assert p.load_sample_array(a).ndim >= 2
    with Project.open(dicom_project) as p:
        assert p.labels([a, b, c]) == {a: [], b: ["artefact"], c: ["normal"]}
        author, time = p.label_author(b, "artefact")
        assert author == "alice" and time.startswith("20")
        assert p.undo()["label"] == "artefact"
        assert p.labels([a])[a] == ["artefact"]
        assert p.undo()["label"] == "normal" and p.can_redo()
        p.redo()
        assert p.labels([c])[c] == ["normal"]


def test_transaction_rolls_back(make_location):
    with Project.create(make_location()) as p:
        p.add_label("kept")
        with pytest.raises(RuntimeError):
            with p.transaction() as c:
                c.execute("INSERT INTO label_set (name, position) VALUES (?, ?)", ("lost", 5))
                raise RuntimeError("boom")
        assert p.label_names() == ["kept"]


def test_runs_clusterings_and_state(dicom_project):
    with Project.open(dicom_project) as p:
        ids = p.sample_ids()
        r1 = p.create_run("pica", {"lr": 1e-4, "layers": [1, 2]})
        r2 = p.create_run("deepcluster", {})
        assert (r1, r2) == (1, 2)
        p.update_run(r1, status="finished", metrics={"nmi": 0.5}, finished=True)
        assert p.run(r1)["params"] == {"lr": 1e-4, "layers": [1, 2]}
        assert p.run(r1)["metrics"] == {"nmi": 0.5}
        p.save_clustering("k3", ids[::-1], np.arange(len(ids)) % 3, run_id=r1)
        got_ids, assign = p.load_clustering("k3")
        assert got_ids == ids                                # samples' insertion order
        assert assign.tolist() == (np.arange(len(ids)) % 3)[::-1].tolist()
        p.set_cluster_label("k3", 1, {"artefact": 1.0}, author="carol")
        assert p.cluster_vectors("k3")["vector"].tolist() == [{"artefact": 1.0}]
        p.save_state("view", {"zoom": 2.5})
        assert p.load_state("view") == {"zoom": 2.5}


class Annotator:
    """Another person labelling the same project at the same time: a separate process."""

    def __init__(self, location):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.core.annotator", location],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def __call__(self, op, **kw):
        import json

        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"annotator process ended (status {self.proc.poll()})"
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self("close")
                self.proc.wait(60)
            except Exception:  # noqa: BLE001 - make sure it is gone
                self.proc.kill()
                self.proc.wait()


def test_two_annotators_undo_their_own_edits_later_edit_wins(dicom_project):
    alice, bob = Project.open(dicom_project), Annotator(dicom_project)
    try:
        a, b = alice.sample_ids()[:2]
        alice.set_label([a], "artefact", author="alice")
        bob("set_label", ids=[b], label="normal", author="bob")
        # both label the same sample: the later edit wins, both are in the history
        alice.set_label([b], "tumour", author="alice")
        bob("set_label", ids=[b], label="tumour", value=False, author="bob")
        assert alice.labels([b])[b] == ["normal"]
        assert alice.history()["author"].tolist() == ["alice", "bob", "alice", "bob"]
        # each one's undo reaches their own edits only
        assert bob("undo")["label"] == "tumour"
        assert sorted(alice.labels([b])[b]) == ["normal", "tumour"]
        assert alice.undo()["label"] == "tumour"
        assert bob("labels", ids=[a, b]) == {a: ["artefact"], b: ["normal"]}
        assert alice.undo()["label"] == "artefact"
        assert alice.undo() is None                         # bob's edit is not alice's to undo
        assert bob("labels", ids=[a, b]) == {a: [], b: ["normal"]}
        assert bob("undo")["label"] == "normal"
        assert alice.labels([a, b]) == {a: [], b: []}
    finally:
        bob.close()
        alice.close()


def test_concurrent_writers_history_replays_to_labels(dicom_project):
    """4 threads, each its own connection, label at once; every edit is in the history and a
    replay of the history gives the labels."""
    with Project.open(dicom_project) as p:
        ids = p.sample_ids()
        for i in range(3):
            p.add_label(f"L{i}")
    errors = []

    def writer(k):
        try:
            with Project.open(dicom_project) as p:
                for i in range(10):
                    sid = ids[(k + i) % len(ids)]
                    p.set_label([sid], f"L{i % 3}", bool((k + i) % 2), author=f"w{k}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with Project.open(dicom_project) as p:
        assert replay_history(p) == {s: sorted(v) for s, v in p.labels(ids).items()}


def replay_history(p) -> dict:
    import json

    state: dict[str, set] = {s: set() for s in p.sample_ids()}
    for _, row in p.history().iterrows():
        if row["kind"] != "label" or row["undone"]:
            continue
        payload = json.loads(row["payload"])
        for sid, _old, new in payload["changes"]:
            (state[sid].add if new else state[sid].discard)(payload["label"])
    return {s: sorted(v) for s, v in state.items()}


def test_copy_round_trip_sqlite_postgresql_sqlite(tmp_path, pg_server):
    from core.project.copy import dump

    src = tmp_path / "src"
    with Project.create(src) as p:
        import_source(p, need(DATA / "dicom_samples"))
        ids = p.sample_ids()
        p.set_label(ids[:2], "artefact", author="alice")
        p.set_dev(ids[1:3])
        rid = p.create_run("pica", {"seed": 3})
        p.update_run(rid, status="finished", checkpoint="runs/0001/checkpoint.pt")
        p.save_clustering("run-0001-head", ids, np.arange(len(ids)) % 2, run_id=rid)
        p.set_cluster_label("run-0001-head", 0, {"artefact": 1.0}, author="bob")
        p.arrays.save("embeddings/run-0001", np.eye(len(ids), dtype=np.float32), ids=ids)
        p.undo()
    with Project.open(src) as p:
        before = dump(p)
    url = f"{pg_server.new_database()}?folder={tmp_path / 'shared'}"
    out = subprocess.run([sys.executable, "-m", "core.cli", "project", "copy", str(src), url],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    back = tmp_path / "back"
    out = subprocess.run([sys.executable, "-m", "core.cli", "project", "copy", url, str(back)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with Project.open(url) as p:
        on_pg = dump(p)
        assert p.redo()["kind"] == "cluster_label"          # the history still works there
        assert p.create_run("x", {}) == rid + 1            # ids continue after the copied ones
    with Project.open(back) as p:
        after = dump(p)
        np.testing.assert_array_equal(p.arrays.load("embeddings/run-0001")[1],
                                      np.eye(len(ids), dtype=np.float32))
    assert on_pg == before
    assert after == before


def test_app_model_picks_up_another_annotators_edits(dicom_project):
    """The app's project model (polled by a timer in the window) reloads labels another
    session wrote, without reopening the project."""
    from app.components import ProjectModel

    model = ProjectModel.open(dicom_project)
    bob = Annotator(dicom_project)
    try:
        a = model.samples.index[0]
        seen = []
        model.labels_changed.connect(seen.append)
        assert model.poll_external_changes() is False       # first poll: the starting point
        assert model.labels()[a] == []
        bob("set_label", ids=[a], label="artefact", author="bob")
        assert model.poll_external_changes() is True
        assert seen == [None] and model.labels()[a] == ["artefact"]
        assert model.poll_external_changes() is False       # nothing new since
    finally:
        bob.close()
        model.close()
