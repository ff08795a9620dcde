#!/usr/bin/env bash
# Score mattes: bash scripts/evaluate.sh DATASET_ROOT [DATASET_ROOT ...] [more evaluate.py options]
# (--help for the options). Each DATASET_ROOT is a seed-layout dataset (input/ gt/ trimap/<set>/, or
# image/ alpha/ trimap*/).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/evaluate.sh DATASET_ROOT [more evaluate.py options]  (--help for the options)" >&2
    exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python "$ROOT/evaluate.py" "$@"
