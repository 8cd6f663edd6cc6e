"""napari in a PyInstaller bundle: its plugin manifests are found through package metadata
(entry points ``napari.manifest``; the builtin reader/writer is ``napari_builtins/builtins.yaml``),
its icons, themes and translations are data files, and many submodules are imported lazily."""
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata


def _keep(name: str) -> bool:
    return not any(part in ("_tests", "tests", "_testsupport", "benchmarks", "_vendor_tests")
                   for part in name.split("."))


hiddenimports = []
datas = []
for pkg in ("napari", "napari_builtins", "napari_svg", "napari_resources", "npe2", "app_model",
            "magicgui", "superqt", "in_n_out", "psygnal"):
    try:
        hiddenimports += collect_submodules(pkg, filter=_keep)
        datas += collect_data_files(pkg, excludes=["**/_tests/**", "**/tests/**"])
    except Exception:  # noqa: BLE001 - an optional companion package that is not installed
        pass
# recursive: napari and npe2 compare the versions of what they depend on at start-up
datas += copy_metadata("napari", recursive=True)
for dist in ("napari-svg", "npe2", "app-model", "magicgui", "superqt", "psygnal"):
    try:
        datas += copy_metadata(dist)
    except Exception:  # noqa: BLE001
        pass
