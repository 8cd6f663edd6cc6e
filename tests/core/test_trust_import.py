"""Import under faults and bad inputs: a kill during the point-cloud step, a label map whose
scan is unreadable, link loops, face-less meshes, odd DICOM slices, npz label counts, a full
disk, and a selection exported as a manifest and imported back."""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from core.cli import main as cli_main
from core.io import import_source
from core.project import Project
from core.project.store import DB_NAME
from tests.conftest import DATA, ROOT, need

PY = sys.executable
LATENTMAP = [PY, "-m", "core.cli"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    return env


def _vessel_subset(tmp_path, n):
    """The first ``n`` VesselMNIST3D training masks (real data) as their own small .npz."""
    d = np.load(need(DATA / "vesselmnist3d" / "vesselmnist3d.npz"))
    path = tmp_path / "vessels.npz"
    np.savez(path, train_images=d["train_images"][:n], train_labels=d["train_labels"][:n])
    return path


# ------------------------------------------------------------------------------ item 6
def test_reimport_after_a_kill_during_points_completes_every_point_cloud(tmp_path):
    src = _vessel_subset(tmp_path, 300)
    proj = tmp_path / "proj"
    proc = subprocess.Popen(LATENTMAP + ["import", str(src), "--project", str(proj)], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = threading.Event()

    def watch():
        buf = b""
        while True:
            chunk = proc.stderr.read1(256) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
            if not chunk:
                return
            buf = (buf + chunk)[-2000:]
            if b"points:" in buf:
                seen.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        assert seen.wait(timeout=300), "the import never reached its point-cloud step"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        t.join(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with Project.open(proj) as p:
        assert p.count() == 300
        have = set()
        if p.arrays.exists("points"):
            have = set(map(str, p.arrays.load("points")[0]))
        assert len(have) < 300          # the kill left samples without point clouds
    # a temp file as a killed atomic write leaves it (no writer holds its lock)
    orphan = proj / "arrays" / ".points.npz.k1ll3d00.tmp"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"partial")
    os.utime(orphan, (1e9, 1e9))

    assert cli_main(["import", str(src), "--project", str(proj)]) == 0
    assert not orphan.exists()
    from core.dataset import from_project

    with Project.open(proj) as p:
        ids, pts = p.arrays.load("points")
        assert sorted(map(str, ids)) == sorted(p.sample_ids()) and pts.shape == (300, 1024, 3)
        data = from_project(p, kind="points")
        assert len(data) == 300 and np.isfinite(data.x).all()


def test_a_sample_whose_file_is_missing_is_imported_again(tmp_path):
    proj = Project.create(tmp_path / "p")
    assert import_source(proj, need(DATA / "dicom_samples" / "CT_small.dcm")).imported == 1
    sid = proj.sample_ids()[0]
    (proj.path / proj.sample(sid)["data_file"]).unlink()       # as a killed import leaves it
    report = import_source(proj, DATA / "dicom_samples" / "CT_small.dcm")
    assert report.imported == 1 and report.already == 0
    assert proj.load_sample_array(sid).shape == (128, 128)
    proj.close()


# ------------------------------------------------------------------------------ item 7
def test_label_map_of_an_unreadable_scan_goes_to_no_other_patient(tmp_path):
    src = tmp_path / "cohort"
    src.mkdir()
    ct = need(DATA / "totalseg_example" / "example_ct_sm.nii.gz")
    shutil.copy(ct, src / "patientB_ct.nii.gz")
    (src / "patientA_ct.nii.gz").write_bytes(ct.read_bytes()[:3000])       # unreadable
    shutil.copy(DATA / "totalseg_example" / "example_seg.nii.gz", src / "patientA_seg.nii.gz")
    with Project.create(tmp_path / "p") as p:
        report = import_source(p, src)
        df = p.samples().set_index("source_path")
        b = df.loc[str(src / "patientB_ct.nii.gz")]
        assert b["kind"] == "volume" and not isinstance(b["mask_file"], str)   # nothing attached to B
        a_seg = df.loc[str(src / "patientA_seg.nii.gz")]
        assert a_seg["kind"] == "mask"
    ((path, why),) = report.unpaired
    assert path.endswith("patientA_seg.nii.gz") and "patientB_ct.nii.gz" in why
    text = "\n".join(report.summary_lines())
    assert "patientA_seg.nii.gz attached to no volume" in text and "patientB_ct.nii.gz" in text
    assert any(p.endswith("patientA_ct.nii.gz") for p, _ in report.skipped)


def test_label_map_pairs_by_name_and_refuses_a_tie(tmp_path):
    from core.io.labelmaps import pair_label_map

    grid = ((30, 101, 122), {"spacing": [3, 3, 3], "origin": [0, 0, 0]})
    cands = [("patientB_ct.nii.gz", *grid), ("patientA_ct.nii.gz", *grid)]
    assert pair_label_map("patientA_seg.nii.gz", *grid, cands) == (1, "")
    idx, why = pair_label_map("patientA_seg.nii.gz", *grid,
                              [("patientA_ct.nii.gz", *grid), ("patientA_mr.nii.gz", *grid)])
    assert idx is None and "patientA_ct.nii.gz" in why and "patientA_mr.nii.gz" in why
    assert pair_label_map("seg.nii.gz", *grid, cands[:1]) == (0, "")   # a name with no words


# ------------------------------------------------------------------------------ item 8
def test_link_loops_faceless_meshes_and_odd_inputs_are_reported_and_the_rest_imports(tmp_path):
    src = tmp_path / "incoming"
    src.mkdir()
    shutil.copy(need(DATA / "dicom_samples" / "CT_small.dcm"), src / "good_ct.dcm")
    shutil.copy(DATA / "nifti_samples" / "anatomical.nii", src / "good_t1.nii")
    os.symlink("self", src / "self")
    os.symlink("loop.dcm", src / "loop.dcm")
    os.symlink("b.nii", src / "a.nii")
    os.symlink("a.nii", src / "b.nii")
    (src / "cloud.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                   "property float y\nproperty float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
    (src / "cloud.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with Project.create(tmp_path / "p") as p:
        report = import_source(p, src)
        assert report.imported == 2
    reasons = {Path(k).name: v for k, v in report.skipped}
    for name in ("self", "loop.dcm", "a.nii", "b.nii"):
        assert "symbolic link loop" in reasons[name]
    for name in ("cloud.ply", "cloud.obj"):
        assert "no faces" in reasons[name] and "3 vertices" in reasons[name]


def test_dicom_series_with_one_slice_of_another_size_names_it(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import generate_uid

    base = need(DATA / "dicom_samples" / "CT_small.dcm")
    folder = tmp_path / "series"
    folder.mkdir()
    uid = generate_uid()
    for i in range(5):
        ds = pydicom.dcmread(base)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + 5.0 * i]
        if i == 2:      # the real slice at half resolution
            arr = np.ascontiguousarray(ds.pixel_array[::2, ::2])
            ds.Rows, ds.Columns = arr.shape
            ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"IM{i:04d}.dcm")
    with Project.create(tmp_path / "p") as p:
        report = import_source(p, folder)
    ((where, why),) = report.skipped
    assert "IM0002.dcm is 64x64" in why and "128x128" in why
    assert uid not in why


def test_npz_with_a_wrong_label_count_says_so(tmp_path):
    d = np.load(need(DATA / "breastmnist" / "breastmnist.npz"))
    path = tmp_path / "odd.npz"
    np.savez(path, train_images=d["train_images"][:10], train_labels=d["train_labels"][:7])
    with Project.create(tmp_path / "p") as p:
        report = import_source(p, path)
    ((where, why),) = report.skipped
    assert why == "train_labels has 7 labels for 10 train_images: one label row per image expected"


# ------------------------------------------------------------------------------ item 9
def test_import_on_a_full_disk_says_so_and_leaves_no_partial_files(tmp_path):
    """RLIMIT_FSIZE in a subprocess makes every write past 1.5 MB fail as a full disk does
    (Python ignores SIGXFSZ, so the write raises EFBIG); MR2_UNCR.dcm (2 MB) cannot be stored."""
    src = need(DATA / "dicom_samples")
    proj = tmp_path / "proj"
    limit = 1_500_000
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
        from core.cli import main
        sys.exit(main(["import", {str(src)!r}, "--project", {str(proj)!r}]))
    """)
    r = subprocess.run([PY, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True, encoding="utf-8",
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "cannot rollback" not in r.stderr
    assert "disk full" in r.stderr and "MR2_UNCR" in r.stderr
    files = [f for f in proj.rglob("*") if f.is_file()]
    assert not [f for f in files if f.name.endswith(".tmp")]
    with Project.open(proj) as p:
        recorded = {p.path / f for f in p.samples()["data_file"]}
        data_files = {f for f in files if "data" in f.relative_to(proj).parts}
        assert data_files == recorded               # nothing written for samples not recorded
        n_before = p.count()
    assert cli_main(["import", str(src), "--project", str(proj), "--no-points"]) == 0
    with Project.open(proj) as p:
        assert p.count() == 6 > n_before


def test_transaction_reports_a_full_disk_not_cannot_rollback(tmp_path):
    proj = tmp_path / "proj"
    with Project.create(proj) as p:
        assert import_source(p, need(DATA / "dicom_samples" / "CT_small.dcm")).imported == 1
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from core.project import DiskFullError, Project, SampleRecord
        p = Project.open({str(proj)!r})
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
        recs = [SampleRecord(id=f"s{{i}}", metadata={{"note": "x" * 20000}}) for i in range(50)]
        try:
            p.add_samples(recs)
        except DiskFullError as exc:
            print("DISKFULL", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        print("COUNT", p.count())
        p.set_label([p.sample_ids()[0]], "still-works")
        print("LABELS", p.labels()[p.sample_ids()[0]])
    """)
    r = subprocess.run([PY, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True, encoding="utf-8",
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DISKFULL disk full: cannot write" in r.stdout and DB_NAME in r.stdout
    assert "COUNT 1" in r.stdout and "LABELS ['still-works']" in r.stdout


# ------------------------------------------------------------------------------ item 12
def test_selection_manifest_reimports_exactly_the_selected_samples(tmp_path):
    from core.export import selection_manifest, write_table

    src = need(DATA / "breastmnist" / "breastmnist.npz")
    with Project.create(tmp_path / "a") as a:
        import_source(a, src)
        chosen = [a.sample_ids()[i] for i in (3, 400, 700)]
        a.set_label(chosen[:1], "checked", author="tester")
        manifest = write_table(selection_manifest(a, chosen), tmp_path / "sel.csv")
        want = {s: a.load_sample_array(s) for s in chosen}
    with Project.create(tmp_path / "b") as b:
        report = import_source(b, manifest)
        assert report.imported == 3 and not report.skipped
        assert sorted(b.sample_ids()) == sorted(chosen)
        for s in chosen:
            np.testing.assert_array_equal(b.load_sample_array(s), want[s])
        assert "checked" in b.labels([chosen[0]])[chosen[0]]


def test_training_data_computes_point_clouds_an_import_left_out(tmp_path):
    from core.dataset import from_project

    src = _vessel_subset(tmp_path, 12)
    assert cli_main(["import", str(src), "--project", str(tmp_path / "p"), "--no-points"]) == 0
    from core.cli.info import info_lines

    with Project.open(tmp_path / "p") as p:
        assert not p.arrays.exists("points")
        assert any("point clouds missing for 12 shape sample(s)" in ln for ln in info_lines(p))
        data = from_project(p, kind="points")
        assert data.x.shape == (12, 1024, 3) and np.isfinite(data.x).all()
        assert sorted(map(str, p.arrays.load("points")[0])) == sorted(p.sample_ids())
