"""Embeddings of a 20,000-cell synthetic data set for the metrics benchmark.

usage: python make_metrics_input.py PEERS_DIR OUT_DIR
Makes the peers' `nb_large` set (20,000 cells x 2,000 genes, 2 batches, 5 labels; make_data.py)
and writes OUT_DIR/cells.tsv (cell_id, batch, labels) and five embeddings as TSV (cell_id first):
pca50 (log-normalised counts, arpack), pca10, pca30, harmony50 (harmonypy on pca50) and
centred50 (pca50 with each batch's mean removed, a crude integration).
"""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import scanpy as sc

peers, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
h5 = os.path.join(out, "data", "nb_20k_2k.h5ad")
if not os.path.exists(h5):
    os.makedirs(os.path.dirname(h5), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(peers, "make_data.py"), "nb_large"], cwd=out, check=True)
a = sc.read_h5ad(h5)
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
sc.tl.pca(a, n_comps=50, svd_solver="arpack", random_state=0)
pca = a.obsm["X_pca"].astype(np.float64)
import harmonypy

ho = harmonypy.run_harmony(pca, a.obs, "batch", random_state=0, max_iter_harmony=20)
harmony = np.asarray(ho.Z_corr)
if harmony.shape[0] != pca.shape[0]:
    harmony = harmony.T
centred = pca.copy()
for b in a.obs["batch"].unique():
    m = (a.obs["batch"] == b).to_numpy()
    centred[m] -= centred[m].mean(0)
a.obs.index.name = "cell_id"
a.obs[["batch", "labels"]].to_csv(os.path.join(out, "cells.tsv"), sep="\t")


def write(name, x):
    cols = [f"d{i + 1}" for i in range(x.shape[1])]
    pd.DataFrame(x, index=a.obs_names, columns=cols).rename_axis("cell_id").to_csv(
        os.path.join(out, f"{name}.tsv"), sep="\t", float_format="%.6g")


write("pca50", pca)
write("pca10", pca[:, :10])
write("pca30", pca[:, :30])
write("harmony50", harmony)
write("centred50", centred)
print("wrote", out)
