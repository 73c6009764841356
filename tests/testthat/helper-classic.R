# Shared by test-harmony.R and test-mnn.R: a small slice of the bundled Kang data and direct
# measures of batch mixing and label purity (no dependency on the metrics module).

classic_data <- local({
    cache <- NULL
    function() {
        if (is.null(cache)) {
            sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
            keep <- c(which(sce$batch == "ctrl")[1:350], which(sce$batch == "stim")[1:350])
            sce <- sce[, keep]
            counts <- SingleCellExperiment::counts(sce)
            logexp <- log1p(Matrix::t(Matrix::t(counts) * (1e4 / Matrix::colSums(counts))))
            SummarizedExperiment::assay(sce, "logcounts") <- logexp
            # PCA of the 500 most variable genes (prcomp on a small dense matrix is quick).
            top <- order(-apply(as.matrix(logexp), 1, stats::var))[1:500]
            pcs <- stats::prcomp(t(as.matrix(logexp[top, ])), rank. = 20)$x
            SingleCellExperiment::reducedDim(sce, "PCA") <- pcs
            cache <<- list(sce = sce, logexp = logexp, pcs = pcs,
                           batch = as.character(sce$batch), label = as.character(sce$cell_type))
        }
        cache
    }
})

# Share of each cell's k nearest neighbours from another batch (mixing) or with the same
# label (purity).
neighbour_share <- function(z, group, k = 15, same = FALSE) {
    d <- as.matrix(stats::dist(z))
    diag(d) <- Inf
    nn <- t(apply(d, 1, function(row) order(row)[seq_len(k)]))
    hits <- matrix(group[nn], nrow(z)) == group
    mean(if (same) hits else !hits)
}

# Two batches of 4 cell types in 10 dimensions; batch "b" shifted by `shift` (within-type sd 1):
# the batches do not overlap at all.
shifted_batches <- function(n = 800, shift = 12, seed = 1) {
    set.seed(seed)
    centers <- matrix(stats::runif(40, -6, 6), 4)
    direction <- stats::rnorm(10)
    direction <- direction / sqrt(sum(direction^2))
    type <- rep(1:4, length.out = n)
    batch <- rep(c("a", "b"), each = 4, length.out = n)
    x <- centers[type, ] + matrix(stats::rnorm(n * 10), n) + outer(batch == "b", direction) * shift
    x <- scale(x, scale = FALSE)
    attributes(x)[c("scaled:center")] <- NULL
    dimnames(x) <- list(paste0("cell", seq_len(n)), paste0("PC", 1:10))
    list(x = x, batch = batch, label = as.character(type))
}
