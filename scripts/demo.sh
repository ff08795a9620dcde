#!/usr/bin/env bash
# Matte one photo: bash scripts/demo.sh IMAGE TRIMAP [more demo.py options]  (--help for the options).
# With no arguments it runs on the bundled imgs/astronaut_image.png and imgs/astronaut_trimap.png.
# Needs a trained checkpoint: the default one in ckpt/ (options.DEFAULT_CHECKPOINT) or --ckpt_path FILE.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python "$ROOT/demo.py" "$@"
