#!/usr/bin/env bash
# scVI side by side: cellweave vs scvi-tools on the same genes, epochs and thread count, one
# after the other; prints both per-epoch times and their ratio, then scores both latents with
# scib-metrics (../shared/peers/score_embeddings.py; the peer's PCA of the same genes is the
# unintegrated baseline) and prints the table.
#
# usage: bench/compare_scvi.sh [-d DATA_DIR] [-g GENES] [-e EPOCHS] [-t THREADS] [-o OUT]
#   defaults: ../shared/data/kang_ifnb, its hvg2000.txt, 400 epochs, 1 thread, bench/out/scvi
# needs: the peer venv ($PEERS_VENV, made by ../shared/peers/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$here/../shared}
data=$shared/data/kang_ifnb
genes=
epochs=400
threads=1
out=$here/bench/out/scvi
while getopts "d:g:e:t:o:" opt; do
  case $opt in
    d) data=$OPTARG ;; g) genes=$OPTARG ;; e) epochs=$OPTARG ;; t) threads=$OPTARG ;; o) out=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
genes=${genes:-$data/hvg2000.txt}
venv=${PEERS_VENV:-$HOME/.cache/cellweave-peers-venv}
peers=$shared/peers
mkdir -p "$out"
export R_HOME=${R_HOME:-/usr/lib/R} R_INCLUDE_DIR=${R_INCLUDE_DIR:-/usr/share/R/include}
# Reuse the target dir the Makefile uses when it exists (a clean build takes ~16 minutes).
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$HOME/.cache/cellweave-target" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/cellweave-target"
fi
cargo build --release --quiet -p cellweave-bench --manifest-path "$here/src/rust/Cargo.toml"
bench_bin=${CARGO_TARGET_DIR:-$here/src/rust/target}/release/cellweave-bench

echo "== cellweave scVI: $(basename "$data"), $(wc -l < "$genes") genes, $epochs epochs, $threads thread(s)"
"$bench_bin" scvi --data "$data" --genes "$genes" --epochs "$epochs" --threads "$threads" \
  --out "$out/cellweave_latent.tsv" | tee "$out/cellweave.txt"

echo "== scvi-tools SCVI: same input"
[ -f "$out/input.h5ad" ] || "$venv/bin/python" "$peers/to_h5ad.py" "$data" "$out/input.h5ad" > /dev/null
"$venv/bin/python" "$peers/run_peer.py" --input "$out/input.h5ad" --batch-key batch --label-key cell_type \
  --epochs "$epochs" --genes "$genes" --skip scanvi,harmony,scanorama,metrics --threads "$threads" \
  --out "$out/peer" > "$out/peer.log" 2>&1
"$venv/bin/python" - "$out" <<'PY'
import json, sys, numpy as np, pandas as pd
out = sys.argv[1]
e = np.load(f"{out}/peer/embeddings.npz", allow_pickle=True)
for key, name in [("scVI", "scvi_tools_latent"), ("Unintegrated", "pca")]:
    m = e[key]
    pd.DataFrame(m, index=e["obs_names"], columns=[f"{key}_{i+1}" for i in range(m.shape[1])]) \
      .rename_axis("cell_id").to_csv(f"{out}/{name}.tsv", sep="\t")
PY

peer_epoch=$("$venv/bin/python" -c "import json;t=json.load(open('$out/peer/timings.json'));print(t['scvi']['median_epoch_s'])")
peer_rss=$("$venv/bin/python" -c "import json;t=json.load(open('$out/peer/timings.json'));print(t['stages']['scvi_train']['rss_peak_mib'])")
peer_cpu=$("$venv/bin/python" -c "import json;t=json.load(open('$out/peer/timings.json'));print(t['stages']['scvi_train']['cpu_s'] / t['scvi']['epochs_run'])")
cw_cpu=$(awk '/^cpu seconds\/epoch/ {print $3}' "$out/cellweave.txt")
cw_epoch=$(awk '/^seconds\/epoch/ {print $2}' "$out/cellweave.txt")
cw_rss=$(awk '/^peak RSS MiB/ {print $4}' "$out/cellweave.txt")
echo
echo "== seconds per epoch (median), $threads thread(s)"
printf "  cellweave   %8.3f s   peak RSS %6s MiB\n" "$cw_epoch" "$cw_rss"
printf "  scvi-tools  %8.3f s   peak RSS %6s MiB (training stage)\n" "$peer_epoch" "$peer_rss"
awk -v a="$peer_epoch" -v b="$cw_epoch" 'BEGIN { printf "  cellweave is %.2fx faster per epoch (wall)\n", a / b }'
echo "== CPU seconds per epoch (process CPU time; robust to other load on the machine)"
printf "  cellweave   %8.3f s\n  scvi-tools  %8.3f s\n" "$cw_cpu" "$peer_cpu"
awk -v a="$peer_cpu" -v b="$cw_cpu" 'BEGIN { printf "  cellweave is %.2fx faster per epoch (CPU time)\n", a / b }'

echo
echo "== scIB metrics (scib-metrics 0.5.10) of both latents"
"$venv/bin/python" "$peers/score_embeddings.py" --data "$data" --batch-key batch --label-key cell_type \
  --unintegrated "$out/pca.tsv" \
  --emb "cellweave=$out/cellweave_latent.tsv" --emb "scvi-tools=$out/scvi_tools_latent.tsv" \
  --out "$out/scores.csv" 2>/dev/null | tee "$out/scores.txt"
