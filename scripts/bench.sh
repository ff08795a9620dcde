#!/usr/bin/env bash
# CPU benchmark of the full DIM encoder-decoder: this project's path vs stock Chainer and, when
# installed, PyTorch (see scripts/benchmark.py --help). Extra arguments go to the script.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
python -m scripts.benchmark "$@"
