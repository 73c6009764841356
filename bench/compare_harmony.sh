#!/usr/bin/env bash
# Harmony in cellweave vs harmonypy on the same PCA (50 PCs of the log-normalised 2,000 HVGs of
# kang_ifnb), one after the other, REPEATS times each; prints both run times and their ratio,
# runs cellweave's fastMNN, then scores the unintegrated PCA and every embedding with the
# scib-metrics Benchmarker (../shared/peers/score_embeddings.py) and prints the table.
#
# usage: bench/compare_harmony.sh            (from the repository root)
# env:   DATA (default ../shared/data/kang_ifnb), OUT (bench/out/harmony), THREADS (1),
#        REPEATS (3), PEERS_PY (the peers venv's python), SKIP_SCORES=1 to time only.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/kang_ifnb}
OUT=${OUT:-bench/out/harmony}
THREADS=${THREADS:-1}
REPEATS=${REPEATS:-3}
PEERS_PY=${PEERS_PY:-$HOME/.cache/cellweave-peers-venv/bin/python}
export R_HOME=${R_HOME:-/usr/lib/R} R_INCLUDE_DIR=${R_INCLUDE_DIR:-/usr/share/R/include}
mkdir -p "$OUT"

# Reuse the target dir the Makefile uses when it exists (a clean build takes ~16 minutes).
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$HOME/.cache/cellweave-target" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/cellweave-target"
fi
cargo build --release --quiet -p cellweave-bench --manifest-path src/rust/Cargo.toml
BENCH=${CARGO_TARGET_DIR:-src/rust/target}/release/cellweave-bench

echo "== PCA (cellweave): log-normalised, HVGs of $DATA/hvg2000.txt, 50 components"
"$BENCH" pca --data "$DATA" --genes "$DATA/hvg2000.txt" --n-comps 50 --out "$OUT/pca50.tsv"

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Wall and CPU seconds (process CPU time: on a busy machine it measures the work better).
for f in cellweave harmonypy harmonypy_matched; do : > "$OUT/wall_$f.txt"; : > "$OUT/cpu_$f.txt"; done
record() { # record NAME LOG: append the times printed in LOG
    grep " seconds:" "$2" | grep -v cpu | awk '{print $NF}' >> "$OUT/wall_$1.txt"
    grep "cpu seconds:" "$2" | awk '{print $NF}' >> "$OUT/cpu_$1.txt"
}
for r in $(seq "$REPEATS"); do
    echo "== repeat $r/$REPEATS ($THREADS thread(s); load: $(cut -d' ' -f1-3 /proc/loadavg))"
    RAYON_NUM_THREADS=$THREADS "$BENCH" harmony --embedding "$OUT/pca50.tsv" --cells "$DATA/cells.tsv" \
        --out "$OUT/harmony_cellweave.tsv" 2>/dev/null > "$OUT/log.txt"
    grep -v "seconds:" "$OUT/log.txt"; record cellweave "$OUT/log.txt"
    for mode in defaults matched; do
        name=$([ "$mode" = defaults ] && echo harmonypy || echo harmonypy_matched)
        OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$PEERS_PY" bench/run_harmonypy.py \
            "$OUT/pca50.tsv" "$DATA/cells.tsv" "$OUT/$name.tsv" "$mode" "$THREADS" > "$OUT/log.txt"
        grep -v "seconds:" "$OUT/log.txt"; record "$name" "$OUT/log.txt"
    done
done
echo "== Harmony run time, median of $REPEATS, $THREADS thread(s), $(( $(wc -l < "$OUT/pca50.tsv") - 1 )) cells x 50 PCs"
for kind in wall cpu; do
    cw=$(median < "$OUT/${kind}_cellweave.txt")
    hp=$(median < "$OUT/${kind}_harmonypy.txt")
    hpm=$(median < "$OUT/${kind}_harmonypy_matched.txt")
    awk -v k="$kind" -v cw="$cw" -v hp="$hp" -v hpm="$hpm" 'BEGIN {
        printf "%-4s cellweave %.2f s | harmonypy (its defaults) %.2f s | harmonypy (cellweave settings) %.2f s", k, cw, hp, hpm
        printf " | ratio cellweave/harmonypy %.2f (defaults), %.2f (same settings)\n", cw / hp, cw / hpm }'
done

echo "== fastMNN (cellweave): cosine normalisation, multi-batch PCA (d = 50), k = 20"
RAYON_NUM_THREADS=$THREADS "$BENCH" mnn --data "$DATA" --genes "$DATA/hvg2000.txt" --out "$OUT/fastmnn_cellweave.tsv"

if [ "${SKIP_SCORES:-0}" = 1 ]; then exit 0; fi
echo "== scIB metrics (scib-metrics Benchmarker; takes minutes)"
"$PEERS_PY" ../shared/peers/score_embeddings.py --data "$DATA" --batch-key batch --label-key cell_type \
    --unintegrated "$OUT/pca50.tsv" \
    --emb "harmony_cellweave=$OUT/harmony_cellweave.tsv" \
    --emb "harmonypy=$OUT/harmonypy.tsv" \
    --emb "harmonypy_matched=$OUT/harmonypy_matched.tsv" \
    --emb "fastmnn_cellweave=$OUT/fastmnn_cellweave.tsv" \
    --out "$OUT/metrics.csv" > "$OUT/scores.txt" 2>"$OUT/scores.err"
cat "$OUT/scores.txt"
