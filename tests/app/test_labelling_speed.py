"""Labelling at speed (issue 14 item 6): replace mode on single-label data, mixed selections
never lose a label, every label reachable from the type-to-search picker. On the shared-data
test project (AdrenalMNIST3D masks, labels normal / hyperplasia)."""
from qtpy.QtCore import Qt


def _panel(qtbot, model):
    from app._qt.labels_panel import LabelsPanel
    from app.components import Selection

    sel = Selection()
    panel = LabelsPanel(model, sel)
    qtbot.addWidget(panel)
    panel.show()
    return panel, sel


def test_single_label_key_replaces_in_one_keystroke_and_one_undo(qtbot, model):
    panel, sel = _panel(qtbot, model)
    assert panel.single_label_data() and panel.replace_mode
    labels = model.labels()
    normal = [i for i, v in labels.items() if v == ["normal"]][:3]
    sel.select(normal)
    panel.toggle_number(2)  # hyperplasia
    after = model.project.labels(normal)
    assert all(after[i] == ["hyperplasia"] for i in normal)
    model.undo()
    assert all(model.project.labels(normal)[i] == ["normal"] for i in normal)
    model.redo()
    assert all(model.project.labels(normal)[i] == ["hyperplasia"] for i in normal)


def test_mixed_selection_key_never_removes_a_label(qtbot, model):
    panel, sel = _panel(qtbot, model)
    labels = model.labels()
    has = [i for i, v in labels.items() if v == ["normal"]][:2]
    other = [i for i, v in labels.items() if v == ["hyperplasia"]][:2]
    unlabelled = [i for i, v in labels.items() if not v][:2]
    for replace in (True, False):
        panel.replace_box.setChecked(replace)
        sel.select(has + other + unlabelled)
        panel.toggle("normal")
        after = model.project.labels(has + other + unlabelled)
        assert all("normal" in after[i] for i in has + other + unlabelled)
        if replace:
            assert all(after[i] == ["normal"] for i in other)
        else:
            assert all(set(after[i]) == {"normal", "hyperplasia"} for i in other)
        model.undo()
        assert model.project.labels(has)[has[0]] == ["normal"]
    # a selection where every sample has the label: the key removes it (a toggle)
    sel.select(has)
    panel.toggle("normal")
    assert all(not model.project.labels(has)[i] for i in has)


def test_multi_label_data_switches_to_add_mode(qtbot, model):
    labels = model.labels()
    sid = next(i for i, v in labels.items() if v == ["normal"])
    model.set_label([sid], "hyperplasia", True)
    panel, sel = _panel(qtbot, model)
    assert not panel.single_label_data() and not panel.replace_mode


def test_type_to_search_picker_reaches_labels_beyond_key_9(qtbot, model):
    extra = [f"organ-{i:02d}" for i in range(12)] + ["pancreas", "femur-left"]
    for name in extra:
        model.add_label(name)
    panel, sel = _panel(qtbot, model)
    sid = model.samples.index[0]
    sel.select([sid])
    assert "femur-left" not in [b.text() for b in list(panel.buttons.values())[:9]]
    panel.focus_search()
    qtbot.keyClicks(panel.search, "femur")
    qtbot.keyClick(panel.search, Qt.Key_Return)
    assert model.project.labels([sid])[sid] == ["femur-left"]
    assert panel.search.text() == ""
    # the completer offers every label name
    names = [panel.completer.model().index(r, 0).data() for r in range(panel.completer.model().rowCount())]
    assert "pancreas" in names and "femur-left" in names
