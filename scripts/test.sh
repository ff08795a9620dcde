#!/usr/bin/env bash
# The test command: sets up .venv if needed and runs the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
python -m pytest -q "$@"
