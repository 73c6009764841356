#!/usr/bin/env bash
# The cost of each batch-independence penalty per training step, relative to the unpenalised
# step of the same model (kang_ifnb hvg2000, one thread, run one after another so that they
# share the machine's state): ms per step from the trainer's profile over EPOCHS epochs.
#   bench/penalty_cost.sh [EPOCHS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
BIN=${CARGO_TARGET_DIR:-$HOME/.cache/cellweave-target}/release/cellweave-bench
DATA=../shared/data/kang_ifnb
ms() { "$BIN" cvae --data "$DATA" --genes "$DATA/hvg2000.txt" --model "$1" --penalty "$2" \
         --weight 1 --epochs "$EPOCHS" --threads 1 2>/dev/null | awk '/^ms per step/ {print $4}'; }
printf "%-6s %-7s %10s %8s\n" model penalty "ms/step" ratio
for model in cvae scvi; do
  base=$(ms "$model" none)
  printf "%-6s %-7s %10.1f %8.2f\n" "$model" none "$base" 1
  for p in mmd trvae comp mine hsic; do
    v=$(ms "$model" "$p")
    printf "%-6s %-7s %10.1f %8.2f\n" "$model" "$p" "$v" "$(echo "$v / $base" | bc -l)"
  done
done
