#!/usr/bin/env bash
# Times cellweave's metric suite against scib-metrics' Benchmarker (../shared/peers/
# score_embeddings.py) on the same five embeddings of 20,000 cells, one after the other on this
# machine, and prints both times, the ratio, peak memory and the largest difference per metric.
#
# usage: bench/compare_metrics.sh [OUT_DIR]      (default bench/out/metrics20k)
# Needs the peers' Python venv (../shared/peers/setup.sh; PEERS_VENV overrides its path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-bench/out/metrics20k}
PEERS=${PEERS:-$ROOT/../shared/peers}
VENV=${PEERS_VENV:-$HOME/.cache/cellweave-peers-venv}
PY="$VENV/bin/python"
export R_HOME=${R_HOME:-/usr/lib/R} R_INCLUDE_DIR=${R_INCLUDE_DIR:-/usr/share/R/include}
mkdir -p "$OUT"

if [ ! -f "$OUT/cells.tsv" ]; then
  echo "making the 20k-cell input in $OUT (a few minutes)"
  (cd "$OUT" && OMP_NUM_THREADS=1 "$PY" "$ROOT/bench/make_metrics_input.py" "$PEERS" .)
fi
# Reuse the target dir the Makefile uses when it exists (a clean build takes ~16 minutes).
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$HOME/.cache/cellweave-target" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/cellweave-target"
fi
cargo build --release --quiet -p cellweave-bench --manifest-path src/rust/Cargo.toml
BENCH=${CARGO_TARGET_DIR:-$ROOT/src/rust/target}/release/cellweave-bench

EMBS=(--emb pca10=pca10.tsv --emb pca30=pca30.tsv --emb harmony50=harmony50.tsv --emb centred50=centred50.tsv)
cd "$OUT"
echo "== cellweave (metrics scib-full: the Benchmarker's metrics + Leiden + classic batch silhouette)"
/usr/bin/time -v "$BENCH" metrics --cells cells.tsv --batch-key batch --label-key labels \
  --unintegrated pca50.tsv "${EMBS[@]}" --metrics scib-full --out cellweave.tsv \
  > cellweave.out 2> cellweave.err
tail -n 1 cellweave.out
echo "== scib-metrics 0.5.10 Benchmarker (score_embeddings.py)"
/usr/bin/time -v "$PY" "$PEERS/score_embeddings.py" --data . --batch-key batch --label-key labels \
  --unintegrated pca50.tsv "${EMBS[@]}" --out scib.csv > scib.out 2> scib.err
tail -n 1 scib.out

"$PY" - <<'PY'
import re
import pandas as pd

def wall(path):
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", open(path).read())
    parts = [float(p) for p in m.group(1).split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))

def rss(path):
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read()).group(1)) / 1024

ours_s = float(re.search(r"cellweave seconds: ([\d.]+)", open("cellweave.out").read()).group(1))
scib_s = float(re.search(r"benchmarker seconds: ([\d.]+)", open("scib.out").read()).group(1))
print(f"\nscoring time: cellweave {ours_s:.1f} s, scib-metrics Benchmarker {scib_s:.1f} s, ratio {scib_s / ours_s:.1f}x")
print(f"process wall time: cellweave {wall('cellweave.err'):.1f} s, scib-metrics {wall('scib.err'):.1f} s "
      f"(ratio {wall('scib.err') / wall('cellweave.err'):.1f}x; scib's includes the classic batch silhouette)")
print(f"peak RSS: cellweave {rss('cellweave.err'):.0f} MiB, scib-metrics {rss('scib.err'):.0f} MiB")
ours = pd.read_csv("cellweave.tsv", sep="\t", index_col=0).rename(columns={"Silhouette batch": "silhouette_batch_classic"})
ref = pd.read_csv("scib.csv", index_col=0).drop(index="Metric Type", errors="ignore").astype(float)
cols = [c for c in ref.columns if c in ours.columns]
diff = (ours.loc[ref.index, cols] - ref[cols]).abs()
print("\nlargest |cellweave - scib-metrics| per metric over the embeddings:")
print(diff.max().to_string(float_format=lambda v: f"{v:.5f}"))
PY
