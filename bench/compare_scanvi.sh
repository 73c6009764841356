#!/usr/bin/env bash
# scANVI side by side: cellweave vs scvi-tools 1.4.2 (SCVI, then SCANVI.from_scvi_model), same
# genes, epochs, thread count and hidden labels: 20% of the cells' labels hidden, stratified by
# label, exactly as ../shared/peers/run_peer.py --hide-frac --seed hides them (the mask is
# recomputed here with run_peer.py's code and checked against the peer's scanvi_predictions.csv).
# The two run at the same time, one thread each (the machine has 2 cores). Prints accuracy on the
# hidden cells, seconds per scANVI epoch and their ratio, then scores both scANVI latents with
# scib-metrics (../shared/peers/score_embeddings.py; the peer's PCA is the unintegrated baseline).
#
# usage: bench/compare_scanvi.sh [-d DATA_DIR] [-g GENES] [-e SCVI_EPOCHS] [-f HIDE_FRAC] [-s SEED] [-o OUT] [-k]
#   defaults: ../shared/data/kang_ifnb, its hvg2000.txt, 400 epochs, 0.2, seed 0, bench/out/scanvi
#   -k: keep the peer's results already in OUT/peer (a run started earlier with the same options)
# needs: the peer venv ($PEERS_VENV, made by ../shared/peers/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$here/../shared}
data=$shared/data/kang_ifnb
genes=
epochs=400
hide=0.2
seed=0
out=$here/bench/out/scanvi
keep_peer=
while getopts "d:g:e:f:s:o:k" opt; do
  case $opt in
    d) data=$OPTARG ;; g) genes=$OPTARG ;; e) epochs=$OPTARG ;; f) hide=$OPTARG ;;
    s) seed=$OPTARG ;; o) out=$OPTARG ;; k) keep_peer=1 ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
genes=${genes:-$data/hvg2000.txt}
venv=${PEERS_VENV:-$HOME/.cache/cellweave-peers-venv}
py=$venv/bin/python
peers=$shared/peers
mkdir -p "$out"
export R_HOME=${R_HOME:-/usr/lib/R} R_INCLUDE_DIR=${R_INCLUDE_DIR:-/usr/share/R/include}
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$HOME/.cache/cellweave-target" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/cellweave-target"
fi
cargo build --release --quiet -p cellweave-bench --manifest-path "$here/src/rust/Cargo.toml"
bench_bin=${CARGO_TARGET_DIR:-$here/src/rust/target}/release/cellweave-bench

# The labels scANVI sees: run_peer.py's stratified mask (same rng, same order of labels).
"$py" - "$data/cells.tsv" "$hide" "$seed" "$out/labels.tsv" <<'PY'
import sys, numpy as np, pandas as pd
cells, frac, seed, dest = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
obs = pd.read_csv(cells, sep="\t", index_col=0)
labels = obs["cell_type"].astype(str).values
rng = np.random.default_rng(seed)
hidden = np.zeros(len(labels), dtype=bool)
for lab in np.unique(labels):
    idx = np.flatnonzero(labels == lab)
    k = int(round(frac * len(idx)))
    if k > 0:
        hidden[rng.choice(idx, size=k, replace=False)] = True
pd.DataFrame({"label": np.where(hidden, "", labels)}, index=obs.index.rename("cell_id")).to_csv(dest, sep="\t")
PY

peer_pid=
if [ -n "$keep_peer" ] && [ -f "$out/peer/timings.json" ]; then
  echo "== scvi-tools: keeping the results in $out/peer"
else
  echo "== scvi-tools SCVI ($epochs epochs) + SCANVI, in the background"
  [ -f "$out/input.h5ad" ] || "$py" "$peers/to_h5ad.py" "$data" "$out/input.h5ad" > /dev/null
  "$py" "$peers/run_peer.py" --input "$out/input.h5ad" --batch-key batch --label-key cell_type \
    --epochs "$epochs" --genes "$genes" --hide-frac "$hide" --seed "$seed" \
    --skip harmony,scanorama,metrics --threads 1 --out "$out/peer" > "$out/peer.log" 2>&1 &
  peer_pid=$!
fi

echo "== cellweave scVI ($epochs epochs) + scANVI"
# scVI is trained here; its weights are kept for reruns of the scANVI stage alone.
rm -f "$out/cellweave_scvi_weights.bin"
"$bench_bin" scanvi --data "$data" --genes "$genes" --labels "$out/labels.tsv" \
  --scvi-epochs "$epochs" --seed "$seed" --threads 1 --out-dir "$out/cellweave" \
  --scvi-weights "$out/cellweave_scvi_weights.bin" \
  2> "$out/cellweave.log" | tee "$out/cellweave.txt"
[ -z "$peer_pid" ] || wait "$peer_pid" || { echo "the peer run failed: see $out/peer.log"; exit 1; }

"$py" - "$out" <<'PY'
import json, sys, numpy as np, pandas as pd
out = sys.argv[1]
ours = pd.read_csv(f"{out}/labels.tsv", sep="\t", index_col=0, keep_default_na=False)
peer = pd.read_csv(f"{out}/peer/scanvi_predictions.csv", index_col=0)
assert (ours.index == peer.index).all(), "cell order differs from the peer's"
assert ((ours["label"] == "").values == peer["hidden"].values).all(), "hidden mask differs from the peer's"
print(f"hidden mask identical to the peer's ({int(peer['hidden'].sum())} cells)")
e = np.load(f"{out}/peer/embeddings.npz", allow_pickle=True)
for key, name in [("scANVI", "scvi_tools_scanvi"), ("scVI", "scvi_tools_scvi"), ("Unintegrated", "pca")]:
    m = e[key]
    pd.DataFrame(m, index=e["obs_names"], columns=[f"{key}_{i+1}" for i in range(m.shape[1])]) \
      .rename_axis("cell_id").to_csv(f"{out}/{name}.tsv", sep="\t")
t = json.load(open(f"{out}/peer/timings.json"))
s = t["scanvi"]
times = s["epoch_times_s"]
with open(f"{out}/peer.txt", "w") as f:
    f.write(f"scANVI epochs          {s['epochs_run']}\n")
    f.write(f"scANVI seconds/epoch   {np.median(times):.4f} (mean {np.mean(times):.4f})\n")
    f.write(f"scANVI cpu s/epoch     {t['stages']['scanvi_train']['cpu_s'] / s['epochs_run']:.4f}\n")
    f.write(f"accuracy unlabelled    {s['accuracy_hidden']:.4f} (balanced {s['balanced_accuracy_hidden']:.4f})\n")
PY

# The first number after the label `$1` in the report `$2`.
num() { awk -v k="$1" 'index($0, k) == 1 { $0 = substr($0, length(k) + 1); print $1; exit }' "$2"; }
echo
echo "== scANVI: accuracy on the $(awk -F'\t' 'NR > 1 && $2 == ""' "$out/labels.tsv" | wc -l) cells whose label was hidden"
printf "  %-12s accuracy %s   s/epoch %s   CPU s/epoch %s   epochs %s\n" \
  cellweave "$(num 'accuracy unlabelled' "$out/cellweave.txt")" "$(num 'scANVI seconds/epoch' "$out/cellweave.txt")" \
  "$(num 'scANVI cpu s/epoch' "$out/cellweave.txt")" "$(num 'scANVI epochs' "$out/cellweave.txt")"
printf "  %-12s accuracy %s   s/epoch %s   CPU s/epoch %s   epochs %s\n" \
  scvi-tools "$(num 'accuracy unlabelled' "$out/peer.txt")" "$(num 'scANVI seconds/epoch' "$out/peer.txt")" \
  "$(num 'scANVI cpu s/epoch' "$out/peer.txt")" "$(num 'scANVI epochs' "$out/peer.txt")"
awk -v a="$(num 'scANVI seconds/epoch' "$out/peer.txt")" -v b="$(num 'scANVI seconds/epoch' "$out/cellweave.txt")" \
  'BEGIN { printf "  cellweave is %.2fx faster per scANVI epoch (wall)\n", a / b }'
awk -v a="$(num 'scANVI cpu s/epoch' "$out/peer.txt")" -v b="$(num 'scANVI cpu s/epoch' "$out/cellweave.txt")" \
  'BEGIN { printf "  cellweave is %.2fx faster per scANVI epoch (CPU time)\n", a / b }'

echo
echo "== scIB metrics (scib-metrics 0.5.10) of the latents"
"$py" "$peers/score_embeddings.py" --data "$data" --batch-key batch --label-key cell_type \
  --unintegrated "$out/pca.tsv" \
  --emb "cellweave_scANVI=$out/cellweave/scanvi_latent.tsv" --emb "scvi-tools_scANVI=$out/scvi_tools_scanvi.tsv" \
  --emb "cellweave_scVI=$out/cellweave/scvi_latent.tsv" --emb "scvi-tools_scVI=$out/scvi_tools_scvi.tsv" \
  --out "$out/scores.csv" 2>/dev/null | tee "$out/scores.txt"
