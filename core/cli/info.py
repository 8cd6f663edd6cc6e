"""``latentmap info PROJECT``: what a project holds (counts by split, modality, kind, dataset, label)."""
from __future__ import annotations

from ._common import add_project_arg, open_project, project_arg


def register(sub) -> None:
    p = sub.add_parser("info", help="print what a project holds",
                       description="Counts by split, modality, kind, dataset and label; the "
                                   "development set, runs and stored arrays.")
    add_project_arg(p, positional=True)
    p.set_defaults(func=run_info)


def run_info(args) -> int:
    project = open_project(project_arg(args))
    for line in info_lines(project):
        print(line)
    return 0


def info_lines(project) -> list[str]:
    s = project.summary()
    lines = [f"project {s['name']} ({s['path']}), schema {s['schema_version']}"
             + (" (read-only: can be viewed, not changed)" if getattr(project, "read_only", False) else ""),
             f"samples: {s['n_samples']}"]
    for title, key in (("split", "by_split"), ("modality", "by_modality"), ("kind", "by_kind"),
                       ("dataset", "by_dataset"), ("label", "by_label")):
        counts = s[key]
        if not counts:
            lines.append(f"by {title}: (none)")
            continue
        lines.append(f"by {title}:")
        width = max(len(str(k)) for k in counts)
        for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            lines.append(f"  {str(k):<{width}}  {v}")
    lines.append(f"development set: {s['n_dev']} samples")
    runs = project.runs()
    lines.append(f"runs: {len(runs)}")
    for r in runs.itertuples():
        lines.append(f"  {r.id}: {r.method} {r.status}" + (f" ({r.message})" if r.message else ""))
    arrays = s["arrays"]
    meshes = [a for a in arrays if a.startswith("meshes/")]
    others = [a for a in arrays if not a.startswith("meshes/")]
    lines.append(f"arrays: {len(arrays)}" + (f" ({len(meshes)} meshes)" if meshes else ""))
    from ..workflows.derive import missing_point_ids

    missing = missing_point_ids(project)
    if missing:
        lines.append(f"  point clouds missing for {len(missing)} shape sample(s) (an import stopped "
                     "before its point step, or --no-points): the next import or training makes them")
    for name in others:
        lines.append(f"  {name}")
    return lines
