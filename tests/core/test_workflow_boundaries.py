"""Workflow steps live in ``core/workflows`` only: no CLI command, widget or other module calls
the point-cloud step, k-means, Algorithm 1 or stores a clustering on its own (each did once, with
its own rules, and they drifted apart)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: function -> the modules allowed to call it (besides core/workflows)
STEPS = {
    "compute_points": set(),
    "kmeans": set(),
    "match_clusters": set(),
    "save_match": set(),
    "save_clustering": set(),
    "mask_to_points": {"core/preprocess/shapes.py"},
    "pca_project": set(),
    "umap_project": set(),
    "import_steps": {"core/io/importer.py"},   # import_source: the same steps run to the end
}


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in STEPS:
                yield name, node.lineno


def test_workflow_steps_are_called_only_from_core_workflows():
    offenders = []
    for top in ("core", "app"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("core/workflows/"):
                continue
            for name, line in _calls(path):
                if rel not in STEPS[name]:
                    offenders.append(f"{rel}:{line} calls {name}()")
    assert not offenders, "re-implemented workflow steps (call core.workflows instead):\n" + "\n".join(offenders)
