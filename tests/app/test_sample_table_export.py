"""Exports a user can use (issue 14 item 9): one per-sample table in the format the user picks,
unlabelled samples included, integer columns written as integers. On the test project."""
import pandas as pd


def test_sample_table_csv_and_parquet(model, tmp_path):
    from core.cluster.mapping import run_algorithm1
    from core.export import sample_table, write_table

    project = model.project
    run_algorithm1(project, model.active_clustering)
    df = sample_table(project)
    assert list(df.columns) == ["id", "split", "labels", "development_set", "cluster", "prediction",
                                "support", "score", "override"]
    assert len(df) == len(model.samples)                      # every sample, unlabelled too
    assert (df["labels"] == "").any()
    assert str(df["cluster"].dtype) == "Int64" and str(df["support"].dtype) == "Int64"
    for ext in ("csv", "parquet"):
        path = write_table(df, tmp_path / f"samples.{ext}")
        back = pd.read_csv(path) if ext == "csv" else pd.read_parquet(path)
        assert len(back) == len(df)
        clustered = back["cluster"].dropna()
        assert (clustered == clustered.round()).all()
        if ext == "csv":  # integers written as integers ("3", not "3.0")
            raw = pd.read_csv(path, dtype=str)
            assert not raw["cluster"].dropna().str.contains(r"\.").any()
            assert not raw["support"].dropna().str.contains(r"\.").any()
