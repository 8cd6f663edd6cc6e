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
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
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


#: training orchestration -> the modules allowed to do it (besides core/workflows and core/jobs):
#: the Qt runner wraps every job of the app in one ``Job``
TRAINING = {
    "Job": {"app/_qt/jobs.py"},
    "RankJob": set(),
    "load_run_checkpoint": set(),
    "LoadThenTrain": set(),
}


def test_cli_and_widgets_leave_train_resume_apply_to_core_workflows():
    """Train -> resume -> apply is ``core.workflows.training`` (``train_run`` / ``TrainingRun``):
    no CLI command or widget builds the training ``Job`` or reads a run's checkpoint itself."""
    offenders = []
    for path in sorted([*(ROOT / "core" / "cli").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in TRAINING and rel not in TRAINING[name]:
                    offenders.append(f"{rel}:{node.lineno} calls {name}()")
    assert not offenders, "training orchestrated outside core.workflows.training:\n" + "\n".join(offenders)
