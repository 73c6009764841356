"""scvi-tools SCANVI's accuracy on hidden labels over several scANVI seeds, from one SCVI.

The spread of the scANVI stage alone, to set cellweave's against (cellweave-bench scanvi
--scvi-weights ... --seed S). Same input, genes, SCVI seed and hidden mask as
bench/compare_scanvi.sh (its labels.tsv: an empty label is hidden).

usage: $PEERS_VENV/bin/python bench/peer_scanvi_seeds.py INPUT.h5ad GENES LABELS.tsv [SEEDS] [EPOCHS]
  defaults: seeds 0,1,2,3,4; SCVI epochs 400; one torch thread
"""
import sys

import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch

path, genes_path, labels_path = sys.argv[1:4]
seeds = [int(s) for s in (sys.argv[4] if len(sys.argv) > 4 else "0,1,2,3,4").split(",")]
epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 400
torch.set_num_threads(1)
adata = sc.read_h5ad(path)
genes = [g.strip() for g in open(genes_path) if g.strip()]
adata = adata[:, genes].copy()
adata.layers["counts"] = adata.X.copy()
adata.obs["batch"] = adata.obs["batch"].astype(str).astype("category")
given = pd.read_csv(labels_path, sep="\t", index_col=0, keep_default_na=False)["label"]
given = given.reindex(adata.obs_names)
hidden = (given == "").values
truth = adata.obs["cell_type"].astype(str).values
adata.obs["_labels"] = np.where(hidden, "__unlabeled__", truth)
common = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False)

scvi.settings.seed = 0
scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key="batch")
model = scvi.model.SCVI(adata)
model.train(max_epochs=epochs, batch_size=128, **common)
rows = []
for s in seeds:
    scvi.settings.seed = s
    smodel = scvi.model.SCANVI.from_scvi_model(model, unlabeled_category="__unlabeled__", labels_key="_labels")
    smodel.train(batch_size=128, **common)
    pred = np.asarray(smodel.predict()).astype(str)
    acc = float(np.mean(pred[hidden] == truth[hidden]))
    rows.append((s, acc))
    print(f"seed {s} scvi-tools SCANVI accuracy hidden {acc:.4f}", flush=True)
accs = np.array([a for _, a in rows])
print(f"mean {accs.mean():.4f}  min {accs.min():.4f}  max {accs.max():.4f}  ({len(accs)} seeds, {int(hidden.sum())} hidden cells)")
