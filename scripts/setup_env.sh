# Sourced by the other scripts: creates .venv (git-ignored) on first use, installs requirements.txt
# and activates it. Re-installs when requirements.txt changes.
# chainer 7.8.1 ships only as source: its setup.py imports pkg_resources (removed from current
# setuptools) and it needs numpy<2, so numpy and an old setuptools go in first and chainer is built
# without build isolation.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="$(command -v python3.11 || command -v python3)"
STAMP="$VENV/.requirements.sha"
WANT="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "setting up $VENV (first run only) ..." >&2
    "$PYTHON_BIN" -m venv "$VENV" || { echo "error: could not create $VENV with $PYTHON_BIN" >&2; exit 1; }
    "$VENV/bin/pip" install -q --disable-pip-version-check "setuptools<70" wheel "$(grep -E '^numpy==' "$ROOT/requirements.txt")" \
        && "$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation -r "$ROOT/requirements.txt" \
        2> >(grep -v "is ignored: it is neither" >&2) \
        || { echo "error: installing requirements.txt into $VENV failed" >&2; exit 1; }
    echo "$WANT" > "$STAMP"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
