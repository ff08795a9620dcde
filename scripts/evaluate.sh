#!/usr/bin/env bash
# Score mattes: bash scripts/evaluate.sh DATASET_ROOT [DATASET_ROOT ...] [more evaluate.py options]
# (--help for the options). Each DATASET_ROOT is a seed-layout dataset (input/ gt/ trimap/<set>/, or
# image/ alpha/ trimap*/). Composition-1k from Adobe's release and PASCAL VOC 2012:
#   bash scripts/evaluate.sh --comp1k Combined_Dataset/Test_set --voc VOC2012/JPEGImages [options]
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/evaluate.sh DATASET_ROOT [more evaluate.py options], or --comp1k TEST_SET --voc JPEGIMAGES [options]  (--help for the options)" >&2
    exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python "$ROOT/evaluate.py" "$@"
