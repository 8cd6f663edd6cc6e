"""The engine must run headless: nothing under core/ may import Qt or a Qt-based package."""
import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
QT_PACKAGES = ("PySide6", "PyQt5", "PyQt6", "qtpy", "pyvistaqt", "superqt", "pyqtgraph", "napari.qt",
               "napari._qt", "pytestqt")


def test_core_sources_import_no_qt():
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                if any(n == q or n.startswith(q + ".") for q in QT_PACKAGES):
                    offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno} imports {n}")
    assert not offenders, "core/ must not import Qt:\n" + "\n".join(offenders)


def test_importing_the_engine_loads_no_qt_module():
    code = (
        "import sys, importlib, pkgutil, core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6','PyQt5','PyQt6','qtpy')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=CORE.parent, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"Qt modules loaded by core: {out.stdout}"
