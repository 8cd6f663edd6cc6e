#!/usr/bin/env bash
# Wrap the PyInstaller one-folder bundle (dist/latentmap) as a Debian package:
#   /opt/latentmap/                                  the bundle (read-only for users)
#   /usr/bin/latentmap -> ../../opt/latentmap/latentmap  (relative: also works after `dpkg -x`)
#   /usr/share/applications/latentmap.desktop        menu entry (`latentmap app`)
#   /usr/share/icons/hicolor/scalable/apps/latentmap.svg
# Usage: packaging/build_deb.sh [BUNDLE_DIR] [OUT_DIR]; prints the path of the .deb.
# DEB_COMPRESS=zstd|xz|gzip (default zstd: dpkg >= 1.21.18, i.e. Debian 12 / Ubuntu 21.10 and
# later; use xz for older systems).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=${1:-$root/dist/latentmap}
outdir=${2:-$root/dist}
compress=${DEB_COMPRESS:-zstd}
name=${DEB_NAME:-latentmap}  # latentmap-cuda for the GPU flavour (packaging/README.md)
[ -x "$bundle/latentmap" ] || { echo "build_deb: no bundle at $bundle (run pyinstaller first)" >&2; exit 1; }

version=$(python3 -c "import tomllib; print(tomllib.load(open('$root/pyproject.toml', 'rb'))['project']['version'])")
arch=$(dpkg --print-architecture)
stage=$root/build/deb/${name}_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
         "$stage/usr/share/icons/hicolor/scalable/apps" "$stage/usr/share/doc/latentmap"
# hard links: no second copy of ~2 GB on disk (falls back to a copy across file systems)
cp -al "$bundle" "$stage/opt/latentmap" 2>/dev/null || cp -a "$bundle" "$stage/opt/latentmap"
ln -s ../../opt/latentmap/latentmap "$stage/usr/bin/latentmap"
cp "$root/packaging/latentmap.desktop" "$stage/usr/share/applications/latentmap.desktop"
cp "$root/resources/icons/latentmap.svg" "$stage/usr/share/icons/hicolor/scalable/apps/latentmap.svg"
cp "$root/resources/sample/LICENSE.md" "$stage/usr/share/doc/latentmap/SAMPLE-DATA-LICENSE.md"
printf 'LatentMap %s. MIT licence.\nBundled sample data: see SAMPLE-DATA-LICENSE.md (CC BY 4.0).\n' \
  "$version" > "$stage/usr/share/doc/latentmap/copyright"

size_kb=$(du -sk "$stage" | cut -f1)
extra=""
if [ "$name" != latentmap ]; then
  extra="Conflicts: latentmap
Replaces: latentmap
Provides: latentmap
"
fi
if find "$stage/opt/latentmap" -name 'libtorch_cuda*.so' | grep -q .; then
  extra="${extra}Recommends: nvidia-driver | nvidia-driver-535 | nvidia-kernel-dkms
"
fi
# The Qt xcb platform plugin and VTK/napari's OpenGL come from the system (as for the venv:
# packaging/setup.sh); everything else is inside the bundle.
cat > "$stage/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: LatentMap developers <latentmap@invalid>
Installed-Size: $size_kb
Section: science
Priority: optional
Depends: libc6 (>= 2.28), libgl1, libegl1, libglx-mesa0, libgl1-mesa-dri, libfontconfig1, libdbus-1-3,
 libxkbcommon-x11-0, libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0,
 libxcb-render-util0, libxcb-randr0, libxcb-shape0, libxcb-xfixes0, libxcb-xinerama0, libxcb-xkb1,
 fonts-dejavu-core
Suggests: xvfb
${extra}Description: unsupervised representation learning and labelling of medical images and shapes
 LatentMap imports a cohort of medical images (CT, MRI, ultrasound) or anatomical shapes,
 learns a latent space without labels (DeepDiffusion, PICA, DeepCluster, SSL baselines) and
 lets you browse, cluster and label it: latent scatter linked to the image (napari), the mesh
 (VTK), the nearest cases and the clusters. Self-contained bundle with the CPU build of PyTorch,
 installed in /opt/latentmap; the sample project is built in ~/.local/share/latentmap on first
 start.
EOF
find "$stage" -type d -exec chmod 0755 {} +
deb=$outdir/${name}_${version}_${arch}.deb
mkdir -p "$outdir"
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >&2
rm -rf "$stage"
echo "$deb"
