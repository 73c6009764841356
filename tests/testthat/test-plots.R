# plotEmbedding: one panel per annotation, UMAP coordinates kept, bad annotations refused.

test_that("plotEmbedding draws an embedding coloured by each annotation", {
    set.seed(1)
    emb <- matrix(rnorm(60 * 5), 60, 5)
    batch <- rep(c("a", "b"), 30)
    p <- plotEmbedding(emb[, 1:2], batch = batch, umap = FALSE)
    expect_s3_class(p, "ggplot")
    expect_identical(attr(p, "coordinates"), emb[, 1:2])
    u <- plotEmbedding(emb, batch = batch, n_neighbors = 5)
    expect_equal(dim(attr(u, "coordinates")), c(60L, 2L))
    expect_identical(attr(plotEmbedding(emb, batch = batch, n_neighbors = 5), "coordinates"),
                     attr(u, "coordinates"))
    expect_error(plotEmbedding(emb, batch = batch[-1]), "`batch` has length 59")
    expect_error(plotEmbedding(emb, batch), "named arguments")
})
