#!/usr/bin/env bash
# The GPU check, for a machine with a GPU and no network: bash scripts/gpu_check.sh OUT_DIR
#   0. installs what the machine's Python lacks (Chainer, pymatting, setuptools<70 for Chainer's
#      pkg_resources, pytest and its needs) from wheels/ (made by scripts/gpu_wheels.sh) into a
#      folder of its own, leaving the machine's NumPy and CuPy in charge;
#   1. runs the GPU-marked tests (tests/test_gpu.py; a skip counts as a failure there);
#   2. trains the full-width network from the VGG16 start on generated data for $ITERS iterations
#      with snapshots, then resumes from the last snapshot for $RESUME_ITERS more;
#   3. runs demo.py on a 1920x1080 photo with the trained checkpoint, and times DIM.predict again;
# printing times and GPU memory. Log: OUT_DIR/gpu_check.log; results, one JSON line per step:
# OUT_DIR/results.jsonl; training outputs (log, snapshots, checkpoints): OUT_DIR/train.
# Each step has a time limit, and all of them together stay inside $BUDGET seconds (default 480:
# with the machine's start, well inside the device tool's 10-minute command and 15-minute lease).
#
# Settings (environment): PYTHON (default: python3, else python3.12), GPU_ID (default 0; -1 runs
# the same steps on the CPU, to test this script on a machine without a GPU), ITERS (300),
# RESUME_ITERS (20), BATCH (4), CROP (320), DEMO_SIZE (1920x1080), PREDICT_REPEATS (3),
# BUDGET (480), WHEELS (wheels/),
# VGG_WEIGHTS (the VGG16 start; default wheels/vgg16_hed_float16.npz, see scripts/gpu_wheels.sh),
# SITE (where the wheels are installed; default /tmp/dim_gpu_site).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 1 ] || { echo "usage: bash scripts/gpu_check.sh OUT_DIR" >&2; exit 2; }
OUT_DIR="$(mkdir -p "$1" && cd "$1" && pwd)" || { echo "error: cannot create $1" >&2; exit 1; }
GPU_ID="${GPU_ID:-0}" ITERS="${ITERS:-300}" RESUME_ITERS="${RESUME_ITERS:-20}"
BATCH="${BATCH:-4}" CROP="${CROP:-320}" DEMO_SIZE="${DEMO_SIZE:-1920x1080}"
PREDICT_REPEATS="${PREDICT_REPEATS:-3}" BUDGET="${BUDGET:-480}"
WHEELS="${WHEELS:-$ROOT/wheels}" SITE="${SITE:-/tmp/dim_gpu_site}"
VGG_WEIGHTS="${VGG_WEIGHTS:-$WHEELS/vgg16_hed_float16.npz}"
export GPU_CHECK_RESULTS="$OUT_DIR/results.jsonl" PYTHONUNBUFFERED=1
: > "$GPU_CHECK_RESULTS"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
START=$SECONDS
FAILED=()
step() { echo; echo "=== [$((SECONDS - START)) s] $*"; }
run_limited() {  # SECONDS NAME COMMAND...: SIGINT at the limit (train.py then exits cleanly)
    local limit=$1 name=$2 left=$((BUDGET - (SECONDS - START))); shift 2
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        echo "[gpu_check] $name: skipped, the ${BUDGET} s budget is spent"
        FAILED+=("$name (no time left)")
        return 1
    fi
    timeout -s INT -k 20 "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "[gpu_check] $name: stopped at its ${limit} s limit"
    [ $rc -ne 0 ] && FAILED+=("$name (exit $rc)")
    return $rc
}

step "machine and Python"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for candidate in python3 python3.12 python; do
        command -v "$candidate" >/dev/null && { PY="$(command -v "$candidate")"; break; }
    done
fi
[ -n "$PY" ] || { echo "error: no python3 on PATH (set PYTHON=)"; exit 1; }
"$PY" - <<'EOF' || { echo "error: $PY cannot import NumPy"; exit 1; }
import platform, numpy
print(f'python {platform.python_version()} ({__import__("sys").executable}), numpy {numpy.__version__}')
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    free, total = cupy.cuda.runtime.memGetInfo()
    print(f'cupy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, '
          f'GPU 0: {props["name"].decode()}, {total / 2 ** 30:.0f} GiB ({free / 2 ** 30:.0f} free)')
except Exception as e:
    print(f'cupy: not usable here ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})')
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

step "0. installing what $PY lacks from $WHEELS into $SITE"
du -ch "$WHEELS"/* 2>/dev/null | sed 's/^/  /'
missing=()
probe() {  # DIST PYTHON-CODE: DIST is needed when the code fails
    PYTHONPATH="$SITE" "$PY" -c "$2" >/dev/null 2>&1 || missing+=("$1")
}
has() { echo "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }
probe chainer "$(has chainer)"
probe pymatting "$(has pymatting)"
probe setuptools 'import pkg_resources'
probe six 'import six'
probe filelock 'import filelock'
probe typing_extensions 'import typing_extensions'
probe pytest 'import pytest'
if [[ " ${missing[*]} " == *" pytest "* ]]; then
    for dep in pluggy iniconfig packaging pygments; do probe "$dep" "import $dep"; done
fi
if [ ${#missing[@]} -gt 0 ]; then
    files=()
    for dist in "${missing[@]}"; do
        found=("$WHEELS/$dist"-[0-9]*.whl)
        [ -f "${found[0]}" ] || { echo "error: no $dist wheel in $WHEELS (run scripts/gpu_wheels.sh where there is a network)"; exit 1; }
        files+=("${found[0]}")
    done
    PIP=("$PY" -m pip)
    "$PY" -m pip --version >/dev/null 2>&1 || PIP=("$PY" "$(ls "$WHEELS"/pip-*.whl | head -1)/pip")
    echo "  installing: ${missing[*]}"
    "${PIP[@]}" install -q --no-index --no-deps --no-compile --disable-pip-version-check \
        --target "$SITE" --upgrade "${files[@]}" || { echo "error: installing the wheels failed"; exit 1; }
else
    echo "  nothing missing"
fi
export PYTHONPATH="$SITE:$ROOT"
cd "$ROOT"
"$PY" - <<'EOF' || { echo "error: Chainer does not import"; exit 1; }
import nnet.compat, chainer, chainer.backends.cuda as cuda
print(f'chainer {chainer.__version__}; CuPy usable by Chainer: {cuda.available}; cuDNN: '
      f'{cuda.cudnn_enabled} (CuPy 14 has none: Chainer then uses its own im2col + cuBLAS)')
EOF

step "1. GPU-marked tests"
if [ "$GPU_ID" -ge 0 ]; then export DIM_REQUIRE_GPU=1; fi
run_limited 150 "GPU tests" "$PY" -m pytest -q -rs -m gpu tests/test_gpu.py

step "2. training: full width from the VGG16 start ($VGG_WEIGHTS), $ITERS iterations"
DATA="$OUT_DIR/data"
roots=() pids=()
for seed in 1 2 3 4; do  # four generators side by side: each draws 8 foregrounds
    roots+=("$DATA/$seed")
    [ -d "$DATA/$seed/fg" ] && continue
    "$PY" -m utils.data.synthetic "$DATA/$seed" --count 8 --size 400 400 --seed "$seed" >/dev/null &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || FAILED+=("generating data (exit $?)"); done
echo "[gpu_check] data: $(ls "$DATA"/*/fg | grep -c png) foregrounds in ${#roots[@]} roots, $((SECONDS - START)) s so far"
LOG_ROOT="$OUT_DIR/train"
TRAIN=(train.py --dataset_root "${roots[@]}" --log_root "$LOG_ROOT" --gpu_id "$GPU_ID"
       --width 1.0 --vgg_weights "$VGG_WEIGHTS" --base_lr 1e-5 --batch_size "$BATCH"
       --H "$CROP" --log_frq 20 --ckpt_frq 150 --val_frq 150 --n_val 8 --seed 0)
run_limited 200 "training" "$PY" scripts/gpu_check.py run "${TRAIN[@]}" --max_iter "$ITERS"
"$PY" scripts/gpu_check.py train-speed "$LOG_ROOT"
LAST_SNAPSHOT="$(ls "$LOG_ROOT" 2>/dev/null | sed -n 's/^snapshot_iter_\([0-9]*\)$/\1/p' | sort -n | tail -1)"
step "2b. resuming from the last snapshot (${LAST_SNAPSHOT:-none}) for $RESUME_ITERS iterations"
if [ -n "$LAST_SNAPSHOT" ]; then
    run_limited 90 "resumed training" "$PY" scripts/gpu_check.py run "${TRAIN[@]}" \
        --max_iter "$((LAST_SNAPSHOT + RESUME_ITERS))"
else
    FAILED+=("resumed training (no snapshot)")
fi
CKPT="$LOG_ROOT/model_final.npz"
[ -f "$CKPT" ] || CKPT="$(ls -t "$LOG_ROOT"/model_iter_*.npz 2>/dev/null | head -1)"
ls -la "$LOG_ROOT" | sed 's/^/  /'

step "3. demo on a $DEMO_SIZE photo with ${CKPT:-no checkpoint}"
if [ -n "$CKPT" ]; then
    read -r IMG TRI < <("$PY" scripts/gpu_check.py image "$OUT_DIR/photo" "${DEMO_SIZE%x*}" "${DEMO_SIZE#*x}")
    run_limited 90 "demo" "$PY" scripts/gpu_check.py run demo.py "$IMG" "$TRI" --gpu_id "$GPU_ID" \
        --ckpt_path "$CKPT" --out_dir "$OUT_DIR/demo"
    run_limited 60 "predict timing" "$PY" scripts/gpu_check.py predict "$CKPT" "$IMG" "$TRI" \
        "$GPU_ID" "$PREDICT_REPEATS"
else
    FAILED+=("demo (no checkpoint from training)")
fi

step "summary ($((SECONDS - START)) s in all)"
grep -h "^\[gpu_check\]" "$OUT_DIR/gpu_check.log" | grep -v "note:"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "gpu check passed"
