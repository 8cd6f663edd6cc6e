"""Privacy: DICOM patient and study identifiers stay out of a project unless asked for, out of
logs and exports always; files a project writes are readable by the group, not the world."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from core.io import import_source
from core.io.deid import IDENTIFYING_TAGS
from core.project import Project
from tests.conftest import DATA, ROOT, need

pydicom = pytest.importorskip("pydicom")

TAGS = ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyInstanceUID",
        "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber")


def _identifiers(folder) -> set[str]:
    """The identifying values of the real DICOM samples (each at least 6 characters long, so
    a match is not a coincidence)."""
    out = set()
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for tag in TAGS:
            v = str(ds.get(tag, "") or "").strip()
            if len(v) >= 6:
                out.add(v)
    return out


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    return env


def test_default_import_keeps_no_identifier_anywhere(tmp_path):
    src = need(DATA / "dicom_samples")
    ids = _identifiers(src)
    assert len(ids) >= 10          # the samples do carry identifiers to lose
    proj, out = tmp_path / "proj", tmp_path / "export"
    script = textwrap.dedent(f"""
        from core.cli import main
        from core.export import export_all, selection_manifest, write_table
        from core.project import Project
        assert main(["import", {str(src)!r}, "--project", {str(proj)!r}]) == 0
        assert main(["info", {str(proj)!r}]) == 0
        with Project.open({str(proj)!r}) as p:
            p.set_label(p.sample_ids()[:2], "reviewed")
            export_all(p, {str(out)!r})
            write_table(selection_manifest(p, p.sample_ids()), {str(out / "selection.csv")!r})
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, encoding="utf-8", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with Project.open(proj) as p:
        df = p.samples()
        assert len(df) == 6
        for meta in df["metadata"]:
            assert not IDENTIFYING_TAGS & set(meta)
            assert meta["Modality"] and meta["Rows"]          # what describes the image stays
        assert "PixelSpacing" in df.set_index("modality").loc["CT", "metadata"]
    blobs = {"stdout": r.stdout, "stderr": r.stderr}
    for f in list(proj.rglob("*")) + list(out.rglob("*")):
        if f.is_file():
            blobs[str(f)] = f.read_bytes().decode("latin-1")
    leaks = [(where, v) for where, text in blobs.items() for v in ids if v in text]
    assert not leaks


def test_keep_identifiers_keeps_them(tmp_path):
    src = need(DATA / "dicom_samples")
    with Project.create(tmp_path / "p") as p:
        import_source(p, src / "CT_small.dcm", keep_identifiers=True)
        meta = p.samples().iloc[0]["metadata"]
    ds = pydicom.dcmread(src / "CT_small.dcm", stop_before_pixels=True)
    assert meta["PatientID"] == ds.PatientID and meta["StudyInstanceUID"] == ds.StudyInstanceUID
    assert meta["PatientName"] == str(ds.PatientName)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o640, 0o750), (0o002, 0o660, 0o770)])
def test_project_files_are_group_readable_and_not_world(tmp_path, umask, file_mode, dir_mode):
    proj = tmp_path / "proj"
    script = textwrap.dedent(f"""
        import os
        os.umask({umask})
        from core.cli import main
        assert main(["import", {str(need(DATA / "dicom_samples"))!r}, "--project", {str(proj)!r}]) == 0
        from core.project import Project
        import numpy as np
        with Project.open({str(proj)!r}) as p:
            p.arrays.save("embeddings/test", np.zeros((6, 2)), ids=p.sample_ids())
            p.set_label(p.sample_ids()[:1], "x")
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, encoding="utf-8", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    files = [f for f in proj.rglob("*") if f.is_file()]
    dirs = [d for d in proj.rglob("*") if d.is_dir()] + [proj]
    assert len(files) >= 8
    modes = {str(f.relative_to(proj)): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(file_mode)}, modes
    assert {oct(stat.S_IMODE(d.stat().st_mode)) for d in dirs} == {oct(dir_mode)}
