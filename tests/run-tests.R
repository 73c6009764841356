# Runs the testthat suite against the installed package (make test-r).
library(testthat)
library(cellweave)
res <- test_dir("tests/testthat", package = "cellweave", load_package = "installed",
                reporter = "summary", stop_on_failure = TRUE)
