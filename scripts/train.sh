#!/usr/bin/env bash
# Train: bash scripts/train.sh DATASET_ROOT [more train.py options]. Re-run to resume.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "usage: bash scripts/train.sh DATASET_ROOT [more train.py options]  (--help for the options)" >&2
    [ $# -ge 1 ] && [[ "$1" == "-h" || "$1" == "--help" ]] && { source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"; python "$ROOT/train.py" --help; exit 0; }
    exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
root="$1"; shift
python "$ROOT/train.py" --dataset_root "$root" "$@"
