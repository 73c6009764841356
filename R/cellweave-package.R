#' cellweave: single-cell data integration with a Rust core
#'
#' scVI, Harmony, fastMNN and the scIB integration metrics for SingleCellExperiment and
#' Seurat objects, on CPU, without Python.
#'
#' @keywords internal
#' @useDynLib cellweave, .registration = TRUE
"_PACKAGE"
