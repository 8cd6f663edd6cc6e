"""Help › About: the version and the bundled sample data's licence (resources/sample/LICENSE.md),
in a non-modal dialog opened from the main window's Help menu."""
from __future__ import annotations


def test_about_dialog_shows_version_and_sample_licence(qtbot):
    from app._qt.about import SAMPLE_LICENCE, app_version
    from app._qt.main_window import MainWindow
    from core import __version__

    win = MainWindow(optional_panels=False)
    qtbot.addWidget(win)
    help_menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "Help")
    about = next(a for a in help_menu.actions() if a.text() == "About LatentMap")
    about.trigger()
    dlg = win.about_dialog
    assert dlg.isVisible() and not dlg.isModal()
    assert app_version() == __version__
    assert f"LatentMap {__version__}" in dlg.header.text()
    text = dlg.licence.toPlainText()
    assert SAMPLE_LICENCE.exists()
    assert "CC BY 4.0" in text and "MedMNIST" in text and "AdrenalMNIST3D" in text
    dlg.close()
