#!/usr/bin/env bash
# Export a checkpoint to ONNX: bash scripts/export_onnx.sh [CKPT] OUT.onnx  (default CKPT: the shipped one).
# Any height and width that are multiples of 32; the pre-processing is in the file's metadata.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m scripts.export_onnx "$@"
