#!/usr/bin/env bash
# Train: bash scripts/train.sh DATASET_ROOT [more train.py options]. Re-run to resume.
# NPROC=N: data-parallel over N ranks on this machine (mpiexec from the environment, adds
# --distributed); MPIEXEC_ARGS adds mpiexec options (e.g. "--hostfile hosts" for a cluster).
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "usage: [NPROC=N] bash scripts/train.sh DATASET_ROOT [more train.py options]  (--help for the options)" >&2
    [ $# -ge 1 ] && [[ "$1" == "-h" || "$1" == "--help" ]] && { source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"; python "$ROOT/train.py" --help; exit 0; }
    exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
root="$1"; shift
if [ -n "${NPROC:-}" ]; then
    as_root=(); [ "$(id -u)" = 0 ] && as_root=(--allow-run-as-root)
    # shellcheck disable=SC2086
    exec mpiexec "${as_root[@]}" ${MPIEXEC_ARGS:-} -n "$NPROC" \
        python "$ROOT/train.py" --dataset_root "$root" --distributed "$@"
fi
python "$ROOT/train.py" --dataset_root "$root" "$@"
