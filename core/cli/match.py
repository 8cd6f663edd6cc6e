"""``latentmap match --project DIR --clustering NAME [--dev-from dev|labels-fraction=F] [--seed S]``.

Algorithm 1 of the ultrasound paper on a stored clustering: each cluster gets the mean label
vector of its development-set members (the project's dev set, or a random fraction F of the
labelled training samples), stored in the project. Prints one row per cluster, and when other
samples carry labels, the per-class precision/recall/F1 of predicting each sample's labels from
its cluster's vector, with per-class thresholds chosen on the validation split to maximise F1
(the paper's protocol), evaluated on the test split.
"""
from __future__ import annotations

import numpy as np

from ._common import add_project_arg, open_project


def register(sub) -> None:
    p = sub.add_parser("match", help="name clusters from the development set (Algorithm 1)",
                       description="Algorithm 1: mean development-set label vector per cluster, stored in the "
                                   "project; with labels elsewhere, F1 of the resulting prediction.")
    add_project_arg(p)
    p.add_argument("--clustering", required=True, help="clustering name (see `latentmap info`)")
    p.add_argument("--dev-from", default="dev", metavar="dev|labels-fraction=F",
                   help="development set: the project's dev set (default), or a random fraction F of the "
                        "labelled training samples (e.g. labels-fraction=0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the labels-fraction draw")
    p.set_defaults(func=run_match)


def format_vector(vec: np.ndarray, names, top: int = 3) -> str:
    order = np.argsort(-vec, kind="stable")[:top]
    return ", ".join(f"{names[j]} {vec[j]:.2f}" for j in order if vec[j] > 0) or "-"


def run_match(args) -> int:
    from ..cluster.match import OTHER, fit_cluster_thresholds, predict_from_clusters
    from ..metrics.classification import per_class_scores, report_table
    from ..workflows.mapping import algorithm1

    project = open_project(args.project)
    r = algorithm1(project, args.clustering, dev_from=args.dev_from, seed=args.seed)
    ids, assign, y, dev, match, names, cols, other = (r.ids, r.assign, r.y, r.dev, r.match, r.label_names,
                                                      r.columns, r.other)
    k = len(match.counts)
    split = project.samples(ids=list(ids))["split"].astype(str).to_numpy()
    sizes = np.bincount(assign, minlength=k)

    print(f"clustering {args.clustering}: {len(ids)} samples, {k} clusters; development set: {r.dev_description}")
    print(f"{'cluster':>7} {'size':>6} {'n_dev':>6}  label vector (top 3)")
    for c in range(k):
        vec = "UNMATCHED (no development sample)" if not match.matched[c] else format_vector(match.vectors[c], cols)
        print(f"{c:>7} {sizes[c]:>6} {match.counts[c]:>6}  {vec}")
    n_un = len(match.unmatched)
    if n_un:
        print(f"{n_un} unmatched clusters ({int(sizes[match.unmatched].sum())} samples get no label)")
    print(f"vectors stored in {project.path} (clustering {args.clustering}, source algorithm1)")

    # evaluation on the labelled samples outside the development set
    rest = (y.sum(1) > 0) & ~dev
    if not rest.any():
        return 0
    val = rest & (split == "val")
    test = rest & (split == "test")
    if not val.any():
        val, val_desc = dev, "the development set"
    else:
        val_desc = f"the validation split ({int(val.sum())})"
    if not test.any():
        test = rest & ~val
    if not test.any():
        return 0
    th = fit_cluster_thresholds(match, assign[val], y[val], other=other)
    pred = predict_from_clusters(match, assign[test], th)
    truth = y[test] > 0
    if other:
        truth = np.hstack([truth, ~truth.any(1, keepdims=True)])
    table = per_class_scores(truth, pred, cols)
    if other and table.loc[OTHER, "n_labels"] == 0:
        table = table.drop(index=OTHER)
    print(f"\nprediction from cluster vectors on {int(test.sum())} labelled samples outside the development set "
          f"(thresholds maximising F1 on {val_desc}):")
    print(report_table(table))
    if (y[dev].sum(1) <= 1).all() and (y[test].sum(1) <= 1).all():
        in_matched = match.matched[assign[test]]
        scores = np.nan_to_num(match.vectors[assign[test]][:, :len(names)], nan=-1.0)
        hit = (scores.argmax(1) == y[test].argmax(1)) & in_matched
        print(f"single-label accuracy (the cluster's majority dev label): {hit.mean():.4f} "
              f"({in_matched.mean():.1%} of these samples are in matched clusters; the rest count as wrong)")
    return 0
