# Scores issue 10's side-by-side run (bench/cvae_experiments.sh): the scIB and seed metrics of
# every latent (integrationMetrics(metrics = c("scib", "seed"))), de-novo MINE
# (mineEstimate(), seed 000's network and learning rate, MINE_EPOCHS epochs), and the
# counterfactual R^2 tables. (The cost of each penalty per step: bench/penalty_cost.sh.)
#   Rscript bench/cvae_metrics.R [OUT=bench/out/cvae] [MINE_EPOCHS=30]
suppressPackageStartupMessages(library(cellweave))
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "bench/out/cvae"
mine_epochs <- if (length(args) >= 2) as.integer(args[2]) else 30L
shared <- Sys.getenv("SHARED", "../shared")
cells <- utils::read.delim(file.path(shared, "data/kang_ifnb/cells.tsv"), check.names = FALSE)
models <- c("cvae", "cvae_mmd", "trvae_mmd", "cvae_comp", "cvae_comp_leave_out", "cvae_mine",
            "scvi", "scvi_hsic")
read_latent <- function(path) {
    z <- utils::read.delim(path, row.names = 1, check.names = FALSE)
    as.matrix(z[cells$cell_id, , drop = FALSE])
}
present <- models[file.exists(file.path(out, paste0(models, ".latent.tsv")))]
latents <- stats::setNames(lapply(file.path(out, paste0(present, ".latent.tsv")), read_latent), present)
# The unintegrated baseline for PCR comparison: the PCA bench/compare_scanvi.sh wrote, else
# 50 principal components of the log-normalised HVGs.
pca_path <- "bench/out/scanvi/pca.tsv"
if (file.exists(pca_path)) {
    pca <- read_latent(pca_path)
} else {
    sce <- readRDS(file.path(shared, "data/kang_ifnb/kang_ifnb.rds"))
    hvg <- readLines(file.path(shared, "data/kang_ifnb/hvg2000.txt"))
    x <- SingleCellExperiment::counts(sce)[hvg, cells$cell_id]
    logx <- log1p(t(t(x) / Matrix::colSums(x)) * 1e4)
    pca <- irlba::prcomp_irlba(Matrix::t(logx), n = 50)$x
}
started <- proc.time()[["elapsed"]]
res <- integrationMetrics(latents, cells$batch, cells$cell_type, unintegrated = pca,
                          metrics = c("scib", "seed"), local_condition = "stim")
message(sprintf("metrics: %.0f s", proc.time()[["elapsed"]] - started))

started <- proc.time()[["elapsed"]]
mine <- t(vapply(latents, function(z) mineEstimate(z, cells$batch, epochs = mine_epochs), c(0, 0)))
message(sprintf("de-novo MINE: %.0f s", proc.time()[["elapsed"]] - started))
res$`de-novo MINE (held-out)` <- mine[, "heldout"]
res$`de-novo MINE (train)` <- mine[, "train"]
utils::write.csv(res, file.path(out, "metrics.csv"), row.names = FALSE)
show <- c("iLISI", "KBET", "kBET rejection", "kNN silhouette", "m-kBET", "Batch entropy",
          "kNN MI", "de-novo MINE (held-out)", "cLISI", "Silhouette label", "KMeans NMI",
          "KMeans ARI", "Isolated labels", "Batch correction", "Bio conservation", "Total")
print(format(res[, intersect(show, colnames(res))], digits = 3), right = TRUE)
cat("\nall metrics:\n")
print(format(res[, setdiff(colnames(res), "embedding")], digits = 3))

scores <- function(suffix) {
    files <- file.path(out, paste0(models, suffix, ".scores.tsv"))
    keep <- file.exists(files)
    tabs <- lapply(files[keep], utils::read.delim, check.names = FALSE)
    r2 <- Reduce(function(a, b) merge(a, b, by = "cell_type", all = TRUE),
                 Map(function(t, m) stats::setNames(t[, c("cell_type", "r2_top50")], c("cell_type", m)),
                     tabs, models[keep]))
    bias <- Reduce(function(a, b) merge(a, b, by = "cell_type", all = TRUE),
                   Map(function(t, m) stats::setNames(t[, c("cell_type", "bias_up")], c("cell_type", m)),
                       tabs, models[keep]))
    list(r2 = r2, bias_up = bias)
}
for (suffix in c("", "_ood")) {
    s <- scores(suffix)
    label <- if (suffix == "") "in distribution" else "CD14 Mono stimulated cells held out"
    cat(sprintf("\ncounterfactual R^2 of the top-50 log fold changes, %s:\n", label))
    print(format(s$r2, digits = 3), right = TRUE)
    cat(sprintf("\nmean error on the top-50 genes going up (negative: underestimated), %s:\n", label))
    print(format(s$bias_up, digits = 3), right = TRUE)
    utils::write.csv(s$r2, file.path(out, paste0("counterfactual_r2", suffix, ".csv")), row.names = FALSE)
    utils::write.csv(s$bias_up, file.path(out, paste0("counterfactual_bias_up", suffix, ".csv")), row.names = FALSE)
}

# Does de-novo MINE rank the models as the mixing metrics do? Spearman's rho between MINE and
# each mixing metric over the models; it agrees when its sign says that less information about
# the condition goes with better mixing (a negative rho for metrics where higher mixes better).
higher_mixes_better <- c(iLISI = TRUE, KBET = TRUE, `Batch entropy` = TRUE,
                         `Batch correction` = TRUE, `kBET rejection` = FALSE,
                         `kNN silhouette` = FALSE, `m-kBET` = FALSE, `kNN MI` = FALSE)
mixing <- intersect(names(higher_mixes_better), colnames(res))
rho <- vapply(mixing, function(m) stats::cor(res$`de-novo MINE (held-out)`, res[[m]],
                                               method = "spearman", use = "complete.obs"), 0)
agrees <- ifelse(higher_mixes_better[mixing], rho < 0, rho > 0)
cat("\nSpearman rho of de-novo MINE with each mixing metric over the models:\n")
print(data.frame(metric = mixing, rho = round(rho, 3), agrees = agrees), row.names = FALSE)
cat("\nmodels ranked by de-novo MINE (least dependent first):",
    paste(rownames(res)[order(res$`de-novo MINE (held-out)`)], collapse = " < "), "\n")
