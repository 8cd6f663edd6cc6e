"""A sample project built by an older recipe is rebuilt, and the old one is kept aside with the
user's work in it (never deleted). Folders here are empty stand-ins: only the marker and the
move are under test; building the real sample is covered by tests/app/test_main_window.py."""
from __future__ import annotations


def test_older_recipe_is_not_complete_and_is_kept_aside_on_rebuild(tmp_path):
    from core import sample_project as sp

    dest = tmp_path / "sample-project"
    dest.mkdir()
    (dest / sp.MARKER).write_text("ok\n")          # the marker before recipes existed
    (dest / "user-labels.txt").write_text("mine")
    assert not sp.is_complete(dest)                # stale: the next start rebuilds it
    built = tmp_path / "sample-project.building"
    built.mkdir()
    (built / sp.MARKER).write_text(f"recipe {sp.RECIPE}\n")
    said = []
    sp._install(built, dest, said.append)
    assert sp.is_complete(dest) and not built.exists()
    aside = tmp_path / "sample-project.recipe-1"
    assert (aside / "user-labels.txt").read_text() == "mine"
    assert said and str(aside) in said[0]
    assert not sp.is_complete(tmp_path / "nothing-here")
