"""harmonypy on an embedding TSV, timed; writes the corrected embedding as TSV.

usage: python run_harmonypy.py EMBEDDING.tsv CELLS.tsv OUT.tsv (defaults|matched) NCORES [BATCH_KEY]
defaults: harmonypy 2.1.0's own defaults (what its users get); matched: cellweave's defaults
(lambda 1, 20 clustering iterations, tolerances 1e-5 / 1e-4), for a like-for-like timing.
Prints "harmonypy seconds: S" (wall) and "harmonypy cpu seconds: C" (process CPU time, all
threads) of the run_harmony call only, not the file reading.
"""
import sys
import time

import numpy as np
import pandas as pd
import harmonypy

emb, cells, out, mode, ncores = sys.argv[1:6]
key = sys.argv[6] if len(sys.argv) > 6 else "batch"
x = pd.read_csv(emb, sep="\t", index_col=0)
x.index = x.index.astype(str)
meta = pd.read_csv(cells, sep="\t", index_col=0, dtype=str).loc[x.index]
kw = {} if mode == "defaults" else dict(lamb=1.0, max_iter_kmeans=20, epsilon_cluster=1e-5, epsilon_harmony=1e-4)
start = time.perf_counter()
cpu_start = time.process_time()
ho = harmonypy.run_harmony(x.to_numpy(), meta, key, random_state=0, verbose=False, ncores=int(ncores), **kw)
seconds = time.perf_counter() - start
cpu = time.process_time() - cpu_start
z = np.asarray(ho.Z_corr)
cols = [f"harmony_{i + 1}" for i in range(z.shape[1])]
pd.DataFrame(z, index=x.index, columns=cols).to_csv(out, sep="\t", float_format="%.7f", index_label="cell_id")
print(f"harmonypy ({mode}, ncores={ncores}): {len(ho.kmeans_rounds)} rounds, "
      f"{sum(ho.kmeans_rounds)} clustering iterations, {seconds:.2f} s")
print(f"harmonypy seconds: {seconds:.3f}")
print(f"harmonypy cpu seconds: {cpu:.3f}")
