"""Strip the symbol tables and debug sections of the bundle's own shared libraries (Linux).

    python packaging/strip_bundle.py dist/latentmap

Many wheels ship unstripped libraries: libtorch_cpu (415 -> 330 MB), llvmlite (171 -> 153 MB),
VTK's (a third of each), libtorch_python ... ``strip --strip-unneeded`` keeps the dynamic symbol
table (``.dynsym``) that loading and linking use and drops only the static symbols and debug
information, so nothing changes at run time except the size (and symbol names in native crash
backtraces).

Left alone: libraries under ``*.libs/`` folders (auditwheel's copies, rewritten by patchelf; a
strip after patchelf has broken such files before), symbolic links, and any file whose stripped
copy is not smaller. PyInstaller's own ``strip=True`` strips every binary, those included, so the
spec does not use it. Each file is stripped into a copy that replaces the original only when
``strip`` succeeded. Prints the MB saved.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def is_shared_library(path: Path) -> bool:
    name = path.name
    if not (name.endswith(".so") or ".so." in name):
        return False
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == ELF_MAGIC


def candidates(bundle: Path):
    for dirpath, dirnames, filenames in os.walk(bundle):
        dirnames[:] = [d for d in dirnames if not d.endswith(".libs")]
        for f in filenames:
            p = Path(dirpath) / f
            if is_shared_library(p):
                yield p


def strip_file(path: Path, strip: str) -> int:
    """Strip ``path`` in place (through a copy); return the bytes saved (0 when left alone)."""
    tmp = path.with_name(path.name + ".stripping")
    before = path.stat().st_size
    try:
        subprocess.run([strip, "--strip-unneeded", "-o", str(tmp), str(path)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except subprocess.CalledProcessError as exc:
        tmp.unlink(missing_ok=True)
        sys.stderr.write(f"strip_bundle: left {path} as is: {exc.stderr.decode(errors='replace').strip()}\n")
        return 0
    after = tmp.stat().st_size
    if after >= before:
        tmp.unlink()
        return 0
    shutil.copymode(path, tmp)
    os.replace(tmp, path)
    return before - after


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: strip_bundle.py BUNDLE_DIR\n")
        return 2
    bundle = Path(argv[0])
    if not bundle.is_dir():
        sys.stderr.write(f"strip_bundle: {bundle}: no such folder\n")
        return 1
    strip = shutil.which("strip")
    if strip is None:
        sys.stderr.write("strip_bundle: no `strip` (binutils); bundle left unstripped\n")
        return 0
    saved = n = 0
    for p in candidates(bundle):
        s = strip_file(p, strip)
        saved += s
        n += s > 0
    print(f"strip_bundle: stripped {n} libraries, {saved / 2**20:.0f} MB saved")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
