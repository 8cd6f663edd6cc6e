#!/usr/bin/env bash
# Register LatentMap with the desktop (menu entry and icon) for the current user.
# Run after `make run` or `make test` has created .venv; the entry calls the venv's latentmap.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
apps=${XDG_DATA_HOME:-$HOME/.local/share}/applications
icons=${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps
mkdir -p "$apps" "$icons"
cp "$root/resources/icons/latentmap.svg" "$icons/latentmap.svg"
sed "s|^Exec=latentmap|Exec=$root/.venv/bin/latentmap|" "$root/packaging/latentmap.desktop" > "$apps/latentmap.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$apps" || true
echo "installed $apps/latentmap.desktop"
