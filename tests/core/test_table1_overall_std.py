"""Table 1's overall "Std" row is the pooled within-class standard deviation (issue 14 item 2):
it lies between the per-class stds, never far above them as the std over all queries did.
Real data: voxel PCA of 60 AdrenalMNIST3D test masks with their normal/hyperplasia labels."""
import numpy as np

from tests.conftest import DATA, need


def test_overall_std_is_pooled_within_class():
    from core.metrics.report import TABLE1_DEFINITIONS, table1_frame
    from core.metrics.table1 import METRICS, table1

    npz = np.load(need(DATA / "adrenalmnist3d" / "adrenalmnist3d_64.npz"))
    x = np.asarray(npz["test_images"][:60], dtype=np.float64).reshape(60, -1)
    y = np.asarray(npz["test_labels"][:60, 0])
    x -= x.mean(0)
    emb = x @ np.linalg.svd(x, full_matrices=False)[2][:16].T
    r = table1(emb, y, class_names=["normal", "hyperplasia"])
    for metric in METRICS:
        per = {c: np.array([q[metric] for q in r.per_query if q["label"] == c], dtype=np.float64)
               for c in r.classes}
        n = sum(len(v) for v in per.values())
        pooled = np.sqrt(sum(len(v) * v.std() ** 2 for v in per.values()) / n)
        got = r.table[f"std {metric}"]["overall"]
        assert got == __import__("pytest").approx(pooled, rel=1e-12)
        stds = [r.table[f"std {metric}"][c] for c in r.classes]
        assert min(stds) - 1e-12 <= got <= max(stds) + 1e-12
    frame = table1_frame(r)
    assert "Std Accuracy" in frame.index
    assert {"Max", "Mean", "Std", "Accuracy"} <= set(TABLE1_DEFINITIONS)
