#!/usr/bin/env bash
# Smoke test of the built .deb, as a user would meet it:
#   1. unpack it into a clean root (`dpkg -x`), no system install;
#   2. start `latentmap app` from that root with a minimal environment (env -i: PATH, an empty
#      HOME, LANG) headless under Xvfb: the first start builds the sample project in
#      $HOME/.local/share/latentmap and shows it; the screenshot must not be blank;
#   3. a second start, `app --sample` as `make run` does (sample already built): wall time to
#      the first window;
#   4. `latentmap import` of real data from ../shared/data (the bundled sample cohort when
#      that folder is absent) and `latentmap train deepdiffusion --set epochs=1` on it;
#   5. `latentmap bundle-check` (run first, right after unpacking): the native libraries the
#      other steps do not reach (NIfTI, VTK/PLY meshes, parquet, torch autograd, numba, DICOM);
#   6. nothing was written into the install folder; bundle size reported.
# Usage: packaging/smoke_test.sh DEB [OUT_DIR]  (OUT_DIR keeps the screenshots and the log)
set -euo pipefail
deb=$(realpath "${1:?usage: smoke_test.sh DEB [OUT_DIR]}")
root_dir=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${2:-$root_dir/out/package}")
py=${SMOKE_PYTHON:-$root_dir/.venv/bin/python}  # only for the screenshot check (PIL, numpy)
shared=${SHARED_DATA:-$root_dir/../shared/data}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/latentmap-smoke.XXXXXX")
cleanup() { [ -n "${KEEP:-}" ] && echo "smoke: kept $work" || rm -rf "$work"; }
trap cleanup EXIT
say() { echo "smoke: $*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }  # reported next to every wall time
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }

say "unpacking $(basename "$deb") ($(du -h "$deb" | cut -f1)) into $work/root"
dpkg -x "$deb" "$work/root"
bin=$work/root/usr/bin/latentmap
[ -L "$bin" ] && [ -x "$bin" ] || fail "usr/bin/latentmap is not a working link"
for f in usr/share/applications/latentmap.desktop usr/share/icons/hicolor/scalable/apps/latentmap.svg \
         opt/latentmap/_internal/resources/sample/LICENSE.md; do
  [ -f "$work/root/$f" ] || fail "$f missing from the package"
done
command -v desktop-file-validate >/dev/null && desktop-file-validate "$work/root/usr/share/applications/latentmap.desktop"
size_mb=$(du -sm "$work/root/opt/latentmap" | cut -f1)
say "bundle size unpacked: ${size_mb} MB (/opt/latentmap); .deb $(du -m "$deb" | cut -f1) MB"
stamp=$work/install-stamp; touch "$stamp"; sleep 1

home=$work/home; mkdir -p "$home"
# The user's environment: nothing from this shell (no venv, no NUMBA_CACHE_DIR, no PYTHONPATH).
user() { env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" LANG=C.UTF-8 "$@"; }
xvfb() { user xvfb-run -a -s "-screen 0 1600x1000x24" "$@"; }

check_png() {  # not blank: a real window has many colours and a spread of grey levels
  "$py" - "$1" <<'EOF'
import sys
import numpy as np
from PIL import Image
im = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float32)
std = float(im.std()); colours = len(np.unique(im.reshape(-1, 3).astype(np.uint8), axis=0))
print(f"smoke: screenshot {sys.argv[1]}: {im.shape[1]}x{im.shape[0]}, std {std:.1f}, {colours} colours")
sys.exit(0 if std > 10 and colours > 200 and im.shape[0] > 300 else 1)
EOF
}

# first, as it is quick: a library missing from the bundle or broken by strip_bundle.py fails here
say "0/4 latentmap bundle-check (NIfTI, VTK/PLY meshes, parquet, torch autograd, numba, DICOM)"
user "$bin" bundle-check || fail "bundle-check"

say "1/4 first start (builds the sample project in \$HOME/.local/share/latentmap), headless"
t0=$(date +%s.%N)
xvfb "$bin" app --screenshot "$out/first-start.png" --quit-after 25 > "$work/first.log" 2>&1 \
  || { cat "$work/first.log"; fail "first start"; }
t1=$(date +%s.%N)
cat "$work/first.log"
[ -f "$home/.local/share/latentmap/sample-project/.sample-complete" ] || fail "sample project not built in HOME"
check_png "$out/first-start.png" || fail "first-start screenshot is blank"
say "first start incl. building the sample project: $(secs "$t0" "$t1") s (process wall time; load average $(load))"

# `app --sample`, as `make run` starts it: a later start with no project shows the empty window
say "2/4 second start of \`latentmap app --sample\` (cold process, sample ready): time to first window"
t0=$(date +%s.%N)
user env LATENTMAP_PRINT_FIRST_WINDOW=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
  "$bin" app --sample --screenshot "$out/installed-app.png" --quit-after 20 > "$work/second.log" 2>&1 \
  || { cat "$work/second.log"; fail "second start"; }
cat "$work/second.log"
t_win=$(sed -n 's/^latentmap: first window at //p' "$work/second.log" | head -1)
[ -n "$t_win" ] || fail "no 'first window' line"
check_png "$out/installed-app.png" || fail "screenshot is blank"
say "cold start to first window: $(secs "$t0" "$t_win") s (includes xvfb-run start-up; load average $(load))"

say "3/4 latentmap import"
src=$shared/vesselmnist3d/vesselmnist3d.npz
if [ ! -f "$src" ]; then
  say "$src absent: importing the bundled sample cohort instead"
  src=$work/root/opt/latentmap/_internal/resources/sample/adrenalmnist3d_64.npz
fi
t0=$(date +%s)
user "$bin" import "$src" --project "$home/cohort" 2>&1 | tail -8 || fail "import"
say "import: $(( $(date +%s) - t0 )) s (load average $(load))"

say "4/4 latentmap train deepdiffusion --set epochs=1"
t0=$(date +%s)
user "$bin" train deepdiffusion --project "$home/cohort" --set epochs=1 > "$work/train.log" 2>&1 \
  || { tail -30 "$work/train.log"; fail "train"; }
tail -5 "$work/train.log" | tr '\r' '\n' | tail -5
grep -qi "cannot cache\|no locator\|numba kernels unavailable" "$work/train.log" && fail "numba kernels not used or not cached"
say "train 1 epoch: $(( $(date +%s) - t0 )) s (load average $(load))"
user "$bin" info "$home/cohort" | head -20 || fail "info"

written=$(find "$work/root" -newer "$stamp" | head -5)
[ -z "$written" ] || fail "the app wrote into its install folder: $written"
# numba caches a frozen app's kernels per user under ~/.cache/numba (its UserWideCacheLocator:
# the bundle's code objects carry relative file names), else under NUMBA_CACHE_DIR
nbi=$(find "$home/.cache" -name '*.nbi' 2>/dev/null | wc -l)
[ "$nbi" -gt 0 ] || fail "no numba cache index under \$HOME/.cache"
say "numba cache per user: $nbi kernel index files under \$HOME/.cache ($(du -sh "$home/.cache" | cut -f1))"
say "PASSED (screenshots in $out)"
