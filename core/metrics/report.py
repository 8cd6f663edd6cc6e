"""Writers for metric tables and evaluation figures (CSV, markdown, PNG via matplotlib Agg).

Generic: any method's metrics given as ``{row: {column: value}}`` (or a pandas DataFrame) go
through ``write_table``; figures take plain arrays. ``write_retrieval_report`` assembles the
DeepDiffusion evaluation (retrieval mAP, Table 1, ROC/PR curves, distance matrix).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def to_frame(table, *, columns=None):
    """``{row: {column: value}}`` or a DataFrame -> DataFrame with rows in the given order."""
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        df = table
    else:
        df = pd.DataFrame.from_dict(table, orient="index")
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    return df


def markdown_table(table, *, columns=None, digits: int = 3, index_name: str = "") -> str:
    """A GitHub-style markdown table (no tabulate dependency)."""
    df = to_frame(table, columns=columns)

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    def count_column(col) -> bool:
        # counts (sizes, k, epochs) arrive as floats once pandas mixes them with NaN: print as ints
        v = np.asarray([x for x in col if isinstance(x, (int, float, np.number)) and not np.isnan(x)], float)
        return len(v) > 0 and np.all(v == np.round(v)) and np.abs(v).max() > 1

    ints = {c for c in df.columns if count_column(df[c].tolist())}
    head = [index_name] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for idx, row in df.iterrows():
        cells = [str(int(v)) if c in ints and isinstance(v, (float, np.floating)) and not np.isnan(v)
                 else fmt(v) for c, v in zip(df.columns, row.tolist())]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(out_dir, name: str, table, *, columns=None, digits: int = 3, title: str = "") -> list[Path]:
    """``name.csv`` (full precision) and ``name.md`` (rounded) in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = to_frame(table, columns=columns)
    csv = out / f"{name}.csv"
    df.to_csv(csv, index_label="metric")
    md = out / f"{name}.md"
    text = (f"## {title}\n\n" if title else "") + markdown_table(df, digits=digits)
    md.write_text(text)
    return [csv, md]


def _figure(**kw):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread

    return Figure(**kw)


def save_curves_png(path, curves: dict, *, kind: str = "roc", title: str = "") -> Path:
    """One line per class: kind "roc" uses keys fpr/tpr, "pr" uses recall/precision."""
    if kind not in ("roc", "pr"):
        raise ValueError(f"save_curves_png: kind must be roc or pr, got {kind!r}")
    fig = _figure(figsize=(5, 4.5), dpi=120)
    ax = fig.add_subplot(111)
    xk, yk = ("fpr", "tpr") if kind == "roc" else ("recall", "precision")
    for name, c in curves.items():
        ax.plot(c[xk], c[yk], label=str(name), lw=1.5)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1)
    ax.set_xlabel("false positive rate" if kind == "roc" else "recall")
    ax.set_ylabel("true positive rate" if kind == "roc" else "precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title or ("mean ROC per class" if kind == "roc" else "mean precision-recall per class"))
    ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def save_distance_matrix_png(path, distances: np.ndarray, labels=None, *, class_names=None,
                             title: str = "pairwise cosine distance") -> Path:
    """The distance matrix with samples grouped by class (class boundaries drawn)."""
    d = np.asarray(distances)
    order = np.arange(len(d))
    lab = None
    if labels is not None:
        lab = np.asarray(labels)
        order = np.argsort(lab, kind="stable")
    fig = _figure(figsize=(5.5, 5), dpi=120)
    ax = fig.add_subplot(111)
    im = ax.imshow(d[np.ix_(order, order)], cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if lab is not None:
        sl = lab[order]
        edges = np.flatnonzero(sl[1:] != sl[:-1]) + 0.5
        for e in edges:
            ax.axhline(e, color="w", lw=0.6)
            ax.axvline(e, color="w", lw=0.6)
        starts = np.r_[0, edges + 0.5]
        ends = np.r_[edges + 0.5, len(sl)]
        names = [str(class_names[int(c)]) if class_names is not None else str(c)
                 for c in sl[starts.astype(int)]]
        ax.set_xticks((starts + ends) / 2 - 0.5, names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks((starts + ends) / 2 - 0.5, names, fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


#: what every Table 1 row means (printed under the table in reports and shown in the app)
TABLE1_DEFINITIONS = {
    "query": "each test sample in turn is the centre of a growing cosine-kNN cluster "
             "(k = 1, 2, ... until the whole of its class is inside); figures are per query",
    "Accuracy": "(TP + TN) / (N - 1) at the stopping point (the smallest k that holds the query's whole class)",
    "ROC-AUC": "area under the query's ROC curve over all k",
    "AP": "retrieval average precision of the query's ranking (its mean over all queries is the retrieval mAP)",
    "F1-score": "best F1 over k up to the stopping point",
    "PR-AUC": "area under the query's precision-recall curve",
    "Max": "class column: the best query of that class; overall: the support-weighted mean of the per-class maxima",
    "Mean": "class column: the mean over that class's queries; overall: the mean over all queries",
    "Std": "class column: the standard deviation over that class's queries; overall: the pooled "
           "within-class standard deviation sqrt(sum_c n_c std_c^2 / N), not the spread of the class means",
}


def table1_definitions_markdown() -> str:
    """The definitions above as a markdown list (appended under Table 1 in reports)."""
    return "\n".join(f"- **{k}**: {v}" for k, v in TABLE1_DEFINITIONS.items()) + "\n"


def table1_frame(result) -> "object":
    """Table 1 as the paper lays it out: metric rows, class columns + overall ("mean ± std")."""
    import pandas as pd

    cols = list(result.classes) + ["overall"]
    rows = {}
    for metric, label in (("accuracy", "Accuracy"), ("roc_auc", "ROC-AUC"), ("ap", "AP"),
                          ("f1", "F1-score"), ("pr_auc", "PR-AUC")):
        rows[f"Max {label}"] = {c: result.table[f"max {metric}"][c] for c in cols}
        rows[f"Mean {label}"] = {c: result.table[f"mean {metric}"][c] for c in cols}
        rows[f"Std {label}"] = {c: result.table[f"std {metric}"][c] for c in cols}
    return pd.DataFrame.from_dict(rows, orient="index")[cols]


def write_retrieval_report(out_dir, embedding, labels, *, class_names=None, title: str = "",
                           retrieval=None, table1_result=None) -> dict:
    """Retrieval mAP + Table 1 as CSV/markdown, ROC/PR curves and the distance matrix as PNG.

    Returns {"retrieval": RetrievalResult, "table1": Table1Result, "files": [paths]}.
    """
    from .retrieval import cosine_distances, retrieval_map
    from .table1 import table1

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist = cosine_distances(embedding)
    ret = retrieval or retrieval_map(embedding, labels, class_names=class_names, distances=dist)
    t1 = table1_result or table1(embedding, labels, class_names=class_names, distances=dist)
    files = []
    mrows = {"mAP (class-balanced)": {"value": ret.map_balanced, "n": sum(ret.support.values())},
             "mAP (overall)": {"value": ret.map, "n": sum(ret.support.values())}}
    for c, v in ret.map_per_class.items():
        mrows[f"mAP {c}"] = {"value": v, "n": ret.support[c]}
    files += write_table(out, "retrieval_map", mrows, title=f"{title} retrieval mAP".strip())
    if ret.recall is not None:
        files += write_table(out, "retrieval_pr_curve",
                             {f"{r:.2f}": {"precision": p} for r, p in zip(ret.recall, ret.precision)},
                             digits=4, title="interpolated precision at recall")
    t1_files = write_table(out, "table1", table1_frame(t1), title=f"{title} Table 1 (inner-ear protocol)".strip())
    md = t1_files[1]
    md.write_text(md.read_text() + "\nRows:\n\n" + table1_definitions_markdown())
    files += t1_files
    files.append(save_curves_png(out / "roc_curves.png", t1.curves, kind="roc"))
    files.append(save_curves_png(out / "pr_curves.png", t1.curves, kind="pr"))
    files.append(save_distance_matrix_png(out / "cosine_distance.png", dist, labels, class_names=class_names))
    return {"retrieval": ret, "table1": t1, "files": files}
