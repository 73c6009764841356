#!/usr/bin/env bash
# Issue 10's side-by-side run on kang_ifnb (hvg2000, condition = batch, label = cell_type):
# CVAE, CVAE+MMD (z), trVAE-style MMD (decoder's first layer), CVAE+CoMP (both forms), CVAE+MINE, scVI and
# scVI+HSIC, each trained on all cells (latent, counterfactual scores) and with the stimulated
# CD14 monocytes held out (counterfactual scores). Two queues, one thread each. Then
# bench/cvae_metrics.R scores the latents (scIB and seed metrics, de-novo MINE).
#   bench/cvae_experiments.sh [OUT=bench/out/cvae]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/cvae}
mkdir -p "$OUT"
BIN=${CARGO_TARGET_DIR:-$HOME/.cache/cellweave-target}/release/cellweave-bench
DATA=../shared/data/kang_ifnb
CVAE_EPOCHS=${CVAE_EPOCHS:-40}
SCVI_EPOCHS=${SCVI_EPOCHS:-100}
# name model penalty weight [extra flag]; cvae_comp_leave_out: CoMP with the cell left out of
# its own mixture (the form that diverged with the CD14 monocytes held out).
MODELS="cvae:cvae:none:0
cvae_mmd:cvae:mmd:100
trvae_mmd:cvae:trvae:100
cvae_comp:cvae:comp:1
cvae_comp_leave_out:cvae:comp:1:--comp-leave-self-out
cvae_mine:cvae:mine:100
scvi:scvi:none:0
scvi_hsic:scvi:hsic:100"

run() { # name model penalty weight suffix extra...
  local name=$1 model=$2 penalty=$3 weight=$4 suffix=$5; shift 5
  local epochs=$CVAE_EPOCHS; [ "$model" = scvi ] && epochs=$SCVI_EPOCHS
  "$BIN" cvae --data "$DATA" --genes "$DATA/hvg2000.txt" --model "$model" --penalty "$penalty" \
    --weight "$weight" --epochs "$epochs" --threads 1 --seed 0 \
    --out-scores "$OUT/$name$suffix.scores.tsv" "$@" > "$OUT/$name$suffix.txt" 2> "$OUT/$name$suffix.log"
}

(
  for m in $MODELS; do IFS=: read -r name model penalty weight extra <<< "$m"
    run "$name" "$model" "$penalty" "$weight" "" --out-latent "$OUT/$name.latent.tsv" $extra
  done
) &
(
  for m in $MODELS; do IFS=: read -r name model penalty weight extra <<< "$m"
    run "$name" "$model" "$penalty" "$weight" "_ood" --holdout-type "CD14 Mono" $extra
  done
) &
wait
echo "done: $OUT"
