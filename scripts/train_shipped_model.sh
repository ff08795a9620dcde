#!/usr/bin/env bash
# Reproduces ckpt/dim_w025.npz, the shipped model: synthetic data + the alphamatting.com photographs
# in ../shared/data (not part of this repository), the paper's three stages, on the CPU.
# Usage: bash scripts/train_shipped_model.sh [LOG_DIR]   (default logs/shipped; re-run to resume)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
LOG="${1:-logs/shipped}"
DATA=../shared/data
if [ ! -d "$DATA/alphamatting" ]; then
    echo "error: $DATA/alphamatting not found (the photographs are not part of this repository)" >&2
    exit 1
fi
[ -d "$LOG/synthetic/fg" ] || python -m utils.synthetic "$LOG/synthetic" --count 240 --size 400 400 --seed 1
A=$DATA/alphamatting  # listed four times: real photographs are about a quarter of each epoch
COMMON=(--dataset_root "$LOG/synthetic" $A $A $A $A --bg_dir "$DATA/backgrounds/image" --n_bg 4
        --val_names GT01 GT09 GT14 GT20 GT25 --n_val 20 --width 0.25 --batch_size 4
        --trimap_kernel 3 25 --seed 0 --base_lr 1e-4 --log_frq 20)
python train.py "${COMMON[@]}" --stage 1 --max_iter 1400 --ckpt_frq 200 --val_frq 200 --log_root "$LOG/stage1"
python train.py "${COMMON[@]}" --stage 2 --max_iter 150 --ckpt_frq 50 --val_frq 50 \
    --init_from "$LOG/stage1/model_final.npz" --log_root "$LOG/stage2"
python train.py "${COMMON[@]}" --stage 3 --max_iter 600 --ckpt_frq 100 --val_frq 100 \
    --init_from "$LOG/stage2/model_final.npz" --log_root "$LOG/stage3"
cp "$LOG/stage3/model_final.npz" ckpt/dim_w025.npz
echo "wrote ckpt/dim_w025.npz"
