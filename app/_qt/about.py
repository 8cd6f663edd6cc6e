"""Help › About: the version of LatentMap (and of the libraries it runs on), where it is
installed, where it keeps the user's data, and the licence and attribution of the bundled
sample data (``resources/sample/LICENSE.md``, shown as written)."""
from __future__ import annotations

import sys
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout

from app.main import ROOT, user_data_dir

SAMPLE_LICENCE = ROOT / "resources" / "sample" / "LICENSE.md"


def app_version() -> str:
    """The installed distribution's version; the package's own when run from a source tree."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("latentmap")
    except (ImportError, PackageNotFoundError):  # a checkout without `pip install -e .`
        from core import __version__

        return __version__


def library_versions() -> dict[str, str]:
    """Versions of the main libraries, read from their modules (no heavy import is forced:
    only those already loaded, or cheap to load, are listed)."""
    out = {"Python": sys.version.split()[0]}
    for name, mod in (("Qt", "qtpy"), ("PyTorch", "torch"), ("napari", "napari"), ("VTK", "vtkmodules")):
        m = sys.modules.get(mod)
        if m is None:
            continue
        if mod == "qtpy":
            out[name] = f"{getattr(m, 'QT_VERSION', '?')} ({getattr(m, 'API_NAME', '?')})"
        else:
            out[name] = str(getattr(m, "__version__", getattr(m, "VTK_VERSION", "?")))
    return out


def sample_licence_text() -> str:
    try:
        return SAMPLE_LICENCE.read_text(encoding="utf-8")
    except OSError as exc:
        return f"The sample data's licence file could not be read ({SAMPLE_LICENCE}: {exc})."


def about_text(panel_errors: dict | None = None) -> str:
    """The dialog's header as HTML (also used by tests)."""
    frozen = getattr(sys, "frozen", False)
    lines = [
        f"<h3>LatentMap {app_version()}</h3>",
        "<p>Unsupervised learning, clustering and labelling of medical images and shapes.<br>"
        "Views: latent scatter, image (napari), mesh (PyVista), neighbours, labels.<br>"
        "LatentMap is released under the MIT licence.</p>",
        "<p>" + " · ".join(f"{k} {v}" for k, v in library_versions().items()) + "</p>",
        f"<p>{'Installed bundle' if frozen else 'Running from'}: {Path(sys.executable).parent if frozen else ROOT}"
        f"<br>Your data (sample project): {user_data_dir()}</p>",
    ]
    if panel_errors:
        lines.append("<p>" + "<br>".join(f"{k}: not loaded ({v})" for k, v in panel_errors.items()) + "</p>")
    return "\n".join(lines)


class AboutDialog(QDialog):
    def __init__(self, parent=None, panel_errors: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("About LatentMap")
        self.setMinimumSize(620, 520)
        layout = QVBoxLayout(self)
        self.header = QLabel(about_text(panel_errors))
        self.header.setTextFormat(Qt.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.header)
        layout.addWidget(QLabel("<b>Bundled sample data: licence and attribution</b>"))
        self.licence = QTextBrowser()
        self.licence.setOpenExternalLinks(True)
        self.licence.setMarkdown(sample_licence_text())
        layout.addWidget(self.licence, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


def show_about(parent=None, panel_errors: dict | None = None) -> AboutDialog:
    dlg = AboutDialog(parent, panel_errors)
    dlg.setAttribute(Qt.WA_DeleteOnClose)
    dlg.show()
    return dlg
