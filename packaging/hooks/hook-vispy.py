"""vispy (napari's canvas): GLSL shaders and fonts are data files, and the Qt backend is
chosen by name at run time (``vispy.app.backends._pyside6``), so PyInstaller cannot see it."""
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

_OTHER_BACKENDS = ("_pyqt5", "_pyqt6", "_pyside2", "_pyside", "_pyqt4", "_glfw", "_sdl2", "_wx",
                   "_tk", "_pyglet", "_osmesa", "_egl", "_jupyter_rfb", "_ipynb", "_template", "_test")


def _keep(name: str) -> bool:
    parts = name.split(".")
    if "tests" in parts or "_tests" in parts:
        return False
    return not (len(parts) > 3 and parts[2] == "backends" and parts[3] in _OTHER_BACKENDS)


hiddenimports = collect_submodules("vispy", filter=_keep) + [
    "vispy.app.backends._pyside6", "vispy.app.backends._qt"]
datas = collect_data_files("vispy", excludes=["**/tests/**"])
