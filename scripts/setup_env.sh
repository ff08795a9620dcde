# Sourced by the other scripts: creates the virtual environment on first use, installs
# requirements.txt (and requirements-nodeps.txt without their dependencies) and activates it.
# Re-installs when either file changes.
#   PYTHON=python3.12 bash scripts/test.sh   an environment of its own, .venv-python3.12
#   bash scripts/setup_env.sh --gpu          also installs CuPy 14.2 (CUDA 12: cupy-cuda12x; CUDA_MAJOR=13
#                                            for cupy-cuda13x) with CUDA's libraries from PyPI
#                                            (CUPY_CTK=0: use the machine's CUDA toolkit instead)
# chainer 7.8.1 ships only as source: its setup.py imports pkg_resources (removed from current
# setuptools), so numpy and an old setuptools go in first and chainer is built without build
# isolation.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The interpreter's real path: also a pyenv version that is installed but not selected (pyenv's
# shim then refuses to run it).
resolve_python() {
    "$1" -c 'import sys; print(sys.executable)' 2>/dev/null && return
    command -v pyenv >/dev/null || return 1
    local version exe
    for version in $(pyenv versions --bare | grep -E "^${1#python}(\.|$)" | sort -rV); do
        exe="$(pyenv root)/versions/$version/bin/$1"
        [ -x "$exe" ] && { echo "$exe"; return; }
    done
    return 1
}
if [ -n "${PYTHON:-}" ]; then
    PYTHON_BIN="$(resolve_python "$PYTHON")" || { echo "error: PYTHON=$PYTHON is not an interpreter on PATH" >&2; exit 1; }
    VENV="$ROOT/.venv-$(basename "$PYTHON")"
else
    PYTHON_BIN="$(command -v python3.11 || command -v python3)"
    VENV="$ROOT/.venv"
fi
STAMP="$VENV/.requirements.sha"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "setting up $VENV with $PYTHON_BIN (first run only) ..." >&2
    "$PYTHON_BIN" -m venv "$VENV" || { echo "error: could not create $VENV with $PYTHON_BIN" >&2; exit 1; }
    PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
    { "${PIP[@]}" "setuptools<70" wheel "$(grep -E '^numpy==' "$ROOT/requirements.txt")" \
        && "${PIP[@]}" --no-build-isolation -r "$ROOT/requirements.txt" \
        && "${PIP[@]}" --no-deps -r "$ROOT/requirements-nodeps.txt"; } \
        2> >(grep -v "is ignored: it is neither" >&2) \
        || { echo "error: installing the requirements into $VENV failed" >&2; exit 1; }
    echo "$WANT" > "$STAMP"
fi
if [ "${1:-}" = "--gpu" ]; then
    CUPY="cupy-cuda${CUDA_MAJOR:-12}x$([ "${CUPY_CTK:-1}" = 0 ] || echo '[ctk]')==14.2.*"
    echo "installing $CUPY into $VENV ..." >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "$CUPY" \
        || { echo "error: installing $CUPY into $VENV failed" >&2; exit 1; }
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
