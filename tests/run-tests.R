# Runs the testthat suite against the installed package: from the repository root (make test-r)
# or from tests/ (R CMD check).
library(testthat)
library(cellweave)
test_path <- if (dir.exists("tests/testthat")) "tests/testthat" else "testthat"
res <- test_dir(test_path, package = "cellweave", load_package = "installed",
                reporter = "summary", stop_on_failure = TRUE)
