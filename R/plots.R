#' Plot cells in an embedding, coloured by cell annotations
#'
#' Draws a 2-D view of an embedding (its UMAP when it has more than two dimensions) once per
#' annotation, side by side: the usual way to look at an integration (batches mixed, cell types
#' apart).
#'
#' @param embedding A cells x dimensions matrix (e.g. from [calculateSCVI()]).
#' @param ... Named per-cell vectors to colour by, e.g. `batch = sce$batch,
#'   cell_type = sce$cell_type`.
#' @param umap Compute a UMAP (uwot) first when the embedding has more than two dimensions.
#' @param n_neighbors,min_dist UMAP settings.
#' @param point_size Point size.
#' @param seed Seed of the UMAP.
#' @return A ggplot (several combined with patchwork when it is installed, else a list of them).
#'   The 2-D coordinates are in the attribute `"coordinates"`.
#' @examples
#' z <- matrix(rnorm(400), 200, 2)
#' plotEmbedding(z, group = rep(c("a", "b"), 100), umap = FALSE)
#' @export
plotEmbedding <- function(embedding, ..., umap = TRUE, n_neighbors = 15, min_dist = 0.3,
                          point_size = 0.4, seed = 0) {
    embedding <- .check_embedding(embedding, "embedding")
    colours <- list(...)
    if (!length(colours) || is.null(names(colours)) || any(names(colours) == "")) {
        stop("give the annotations to colour by as named arguments, e.g. batch = sce$batch.",
             call. = FALSE)
    }
    for (nm in names(colours)) {
        if (length(colours[[nm]]) != nrow(embedding)) {
            .stop_arg(nm, "has length ", length(colours[[nm]]), " but the embedding has ",
                      nrow(embedding), " cells.")
        }
    }
    xy <- embedding
    if (ncol(embedding) > 2L && .check_flag(umap, "umap")) {
        if (!requireNamespace("uwot", quietly = TRUE)) {
            stop("a UMAP needs the uwot package (or pass umap = FALSE).", call. = FALSE)
        }
        old_seed <- get0(".Random.seed", envir = globalenv())
        on.exit(if (!is.null(old_seed)) assign(".Random.seed", old_seed, envir = globalenv()))
        set.seed(seed)
        xy <- uwot::umap(embedding, n_neighbors = n_neighbors, min_dist = min_dist,
                         n_threads = 1, verbose = FALSE)
    }
    axis <- if (ncol(embedding) > 2L && umap) c("UMAP 1", "UMAP 2") else colnames(embedding) %||% c("dim 1", "dim 2")
    plots <- lapply(names(colours), function(nm) {
        df <- data.frame(x = xy[, 1], y = xy[, 2], value = colours[[nm]])
        df <- df[sample.int(nrow(df)), ]  # no group painted last over the others
        ggplot2::ggplot(df, ggplot2::aes(x = .data$x, y = .data$y, colour = .data$value)) +
            ggplot2::geom_point(size = point_size) +
            ggplot2::labs(x = axis[1], y = axis[2], colour = nm, title = nm) +
            ggplot2::theme_bw() +
            ggplot2::guides(colour = ggplot2::guide_legend(override.aes = list(size = 3)))
    })
    out <- if (length(plots) == 1L) {
        plots[[1]]
    } else if (requireNamespace("patchwork", quietly = TRUE)) {
        patchwork::wrap_plots(plots, nrow = 1)
    } else {
        plots
    }
    attr(out, "coordinates") <- xy
    out
}
