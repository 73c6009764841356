library(testthat)
library(cellweave)
test_check("cellweave")
