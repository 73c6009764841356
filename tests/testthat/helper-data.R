# Small real data for tests: the bundled Kang IFN-beta subsample (2,000 HVGs x 3,000 cells).
kang_subsample <- function(n_cells = 300) {
    sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
    # Evenly spaced cells keep both batches (the object is sorted by batch).
    keep <- round(seq(1, ncol(sce), length.out = n_cells))
    sce[, keep]
}
