# scANVI experiments of seed 003, measured on our data through the R interface (the figures of
# issue 9's closing note). Each prints its table and writes its outputs under OUT.
#
#   seeds      kang_ifnb: seed labels from the committed literature marker table
#              (inst/extdata/pbmc_markers.csv, 50 cells per label), then scANVI from scVI vs
#              kNN (k = 10) on the scVI latent vs Leiden cluster vote; accuracy over the cells
#              that are not seeds (cells labelled "Unknown" excluded: no marker describes them).
#   hierarchy  zeisel: 7 classes / 48 subclasses, 5 seed cells per subclass; weighted accuracy of
#              hierarchical scANVI vs flat scANVI vs kNN on scVI (subclasses and classes).
#   query      kang_ifnb: reference = ctrl (scVI + scANVI with ctrl labels), query = stim mapped
#              with mapQuery(); vs scANVI trained de novo on both (ctrl labelled, stim not):
#              accuracy on stim, and both latents scored with scib-metrics
#              (../shared/peers/score_embeddings.py; the unintegrated baseline is the PCA that
#              bench/compare_scanvi.sh wrote, bench/out/scanvi/pca.tsv).
#
# usage: Rscript bench/scanvi_experiments.R seeds|hierarchy|query|all [OUT] [SCVI_EPOCHS]
#   defaults: bench/out/scanvi_experiments, 400 (scvi-tools' heuristic for these sizes)
suppressPackageStartupMessages({
    library(cellweave)
    library(SingleCellExperiment)
})
args <- commandArgs(trailingOnly = TRUE)
what <- if (length(args) >= 1) args[1] else "all"
out <- if (length(args) >= 2) args[2] else "bench/out/scanvi_experiments"
epochs <- if (length(args) >= 3) as.integer(args[3]) else 400L
shared <- Sys.getenv("SHARED", "../shared")
dir.create(out, recursive = TRUE, showWarnings = FALSE)
stamp <- function(...) message(format(Sys.time(), "%H:%M:%S "), ...)
accuracy <- function(pred, truth) mean(as.character(pred) == as.character(truth))
write_latent <- function(z, path) {
    utils::write.table(data.frame(cell_id = rownames(z), z, check.names = FALSE), path,
                       sep = "\t", quote = FALSE, row.names = FALSE)
}

kang <- function() {
    sce <- readRDS(file.path(shared, "data/kang_ifnb/kang_ifnb.rds"))
    hvg <- readLines(file.path(shared, "data/kang_ifnb/hvg2000.txt"))
    list(sce = sce, x = counts(sce)[hvg, ], batch = sce$batch, truth = sce$cell_type)
}

# scVI on all of kang (hvg2000), trained once and kept for the seeds and query experiments.
kang_scvi <- function(k) {
    path <- file.path(out, "kang_scvi.rds")
    if (file.exists(path)) return(readRDS(path))
    stamp("scVI on kang_ifnb, ", epochs, " epochs")
    z <- calculateSCVI(k$x, k$batch, max_epochs = epochs, seed = 0, verbose = FALSE)
    saveRDS(z, path)
    z
}

seeds_experiment <- function() {
    k <- kang()
    markers <- utils::read.csv(system.file("extdata", "pbmc_markers.csv", package = "cellweave"))
    # Marker scores use every gene's counts (totals over all genes, as the seed does).
    seeds <- seedLabels(k$sce, markers, n = 50)
    is_seed <- !is.na(seeds)
    seed_agreement <- accuracy(seeds[is_seed], k$truth[is_seed])
    stamp(sum(is_seed), " seed cells, ", round(100 * seed_agreement, 1), "% agree with cell_type")
    z_scvi <- kang_scvi(k)
    model_scvi <- attr(z_scvi, "model")
    stamp("scANVI from scVI on the seed labels")
    t0 <- proc.time()[["elapsed"]]
    z <- calculateSCANVI(k$x, k$batch, seeds, scvi = model_scvi, seed = 0, verbose = FALSE)
    scanvi_s <- proc.time()[["elapsed"]] - t0
    pred <- attr(z, "predictions")$label
    knn <- transferLabels(z_scvi[, ], seeds, k = 10)
    cluster <- transferLabels(z_scvi[, ], seeds, method = "cluster")
    scored <- !is_seed & k$truth != "Unknown"
    res <- data.frame(
        method = c("scANVI (from scVI)", "kNN k=10 on scVI", "Leiden cluster vote on scVI"),
        accuracy = c(accuracy(pred[scored], k$truth[scored]), accuracy(knn[scored], k$truth[scored]),
                     accuracy(cluster[scored], k$truth[scored])),
        weighted_accuracy = c(weightedAccuracy(pred[scored], k$truth[scored]),
                              weightedAccuracy(knn[scored], k$truth[scored]),
                              weightedAccuracy(cluster[scored], k$truth[scored])))
    cat(sprintf("\n== seed labelling, kang_ifnb: %d seeds (%d labels x 50, %.1f%% agree with cell_type); scored on %d non-seed cells (Unknown excluded)\n",
                sum(is_seed), length(unique(markers$label)), 100 * seed_agreement, sum(scored)))
    cat(sprintf("   %d Leiden clusters; scANVI %d epochs in %.1f s\n",
                nlevels(attr(cluster, "clusters")), nrow(attr(z, "model")$history), scanvi_s))
    print(res, digits = 4, row.names = FALSE)
    utils::write.csv(res, file.path(out, "seeds.csv"), row.names = FALSE)
    utils::write.csv(data.frame(cell_id = colnames(k$x), seed = seeds, scanvi = pred, knn = knn,
                                cluster = cluster, truth = k$truth),
                     file.path(out, "seeds_predictions.csv"), row.names = FALSE)
}

hierarchy_experiment <- function() {
    sce <- readRDS(file.path(shared, "data/zeisel/zeisel.rds"))
    parent <- sce$cell_type
    # "(none)" occurs under three classes: each class's own "(none)" is a subclass of its own.
    child <- ifelse(sce$cell_subtype == "(none)", paste0(parent, ":(none)"), sce$cell_subtype)
    tree <- unique(data.frame(parent = parent, child = child))
    set.seed(0)
    seeds <- rep(NA_character_, ncol(sce))
    for (l in unique(child)) {
        cells <- which(child == l)
        seeds[cells[sample.int(length(cells), min(5L, length(cells)))]] <- l
    }
    scored <- is.na(seeds)
    x <- counts(sce)
    stamp("scVI on zeisel (", nrow(x), " genes), ", epochs, " epochs")
    z_scvi <- calculateSCVI(x, max_epochs = epochs, seed = 0, verbose = FALSE)
    stamp("scANVI flat and hierarchical")
    flat <- calculateSCANVI(x, labels = seeds, scvi = attr(z_scvi, "model"), seed = 0, verbose = FALSE)
    hier <- calculateSCANVI(x, labels = seeds, scvi = attr(z_scvi, "model"), hierarchy = tree,
                            seed = 0, verbose = FALSE)
    knn <- transferLabels(z_scvi[, ], seeds, k = 10)
    parent_of <- stats::setNames(tree$parent, tree$child)
    preds <- list(
        "hierarchical scANVI" = attr(hier, "predictions")$label,
        "flat scANVI" = attr(flat, "predictions")$label,
        "kNN k=10 on scVI" = knn)
    res <- data.frame(
        method = names(preds),
        subclass_weighted_accuracy = vapply(preds, function(p) weightedAccuracy(p[scored], child[scored]), 0),
        subclass_accuracy = vapply(preds, function(p) accuracy(p[scored], child[scored]), 0),
        class_weighted_accuracy = vapply(preds, function(p) weightedAccuracy(parent_of[as.character(p)][scored], parent[scored]), 0))
    # The hierarchical model's own parent-level prediction (probabilities summed per class).
    hier_parent <- attr(hier, "predictions")$parent
    cat(sprintf("\n== hierarchy, zeisel: %d classes, %d subclasses, %d seed cells (5 per subclass); scored on the other %d\n",
                length(unique(parent)), length(unique(child)), sum(!scored), sum(scored)))
    print(res, digits = 4, row.names = FALSE)
    cat(sprintf("   hierarchical scANVI, parent-level prediction: weighted accuracy %.4f\n",
                weightedAccuracy(hier_parent[scored], parent[scored])))
    utils::write.csv(res, file.path(out, "hierarchy.csv"), row.names = FALSE)
}

query_experiment <- function() {
    k <- kang()
    ctrl <- k$batch == "ctrl"
    labels_ctrl <- ifelse(ctrl, as.character(k$truth), NA)
    scored <- !ctrl & k$truth != "Unknown"
    stamp("reference: scVI on ctrl, ", epochs, " epochs, then scANVI")
    ref_scvi <- calculateSCVI(k$x[, ctrl], k$batch[ctrl], max_epochs = epochs, seed = 0, verbose = FALSE)
    ref <- calculateSCANVI(k$x[, ctrl], k$batch[ctrl], labels_ctrl[ctrl], scvi = attr(ref_scvi, "model"),
                           seed = 0, verbose = FALSE)
    stamp("mapping stim onto it")
    t0 <- proc.time()[["elapsed"]]
    mapped <- mapQuery(attr(ref, "model"), k$x[, !ctrl], batch = k$batch[!ctrl], seed = 0, verbose = FALSE)
    map_s <- proc.time()[["elapsed"]] - t0
    z_map <- rbind(ref[, ], mapped[, ])[colnames(k$x), ]
    stamp("de novo: scANVI from scVI on both, ctrl labelled")
    z_scvi <- kang_scvi(k)
    denovo <- calculateSCANVI(k$x, k$batch, labels_ctrl, scvi = attr(z_scvi, "model"), seed = 0, verbose = FALSE)
    pred_map <- attr(mapped, "predictions")$label
    pred_new <- attr(denovo, "predictions")$label[!ctrl]
    res <- data.frame(
        method = c("mapQuery (ctrl reference, stim query)", "scANVI de novo on both"),
        stim_accuracy = c(accuracy(pred_map, k$truth[!ctrl]), accuracy(pred_new, k$truth[!ctrl])),
        stim_accuracy_known = c(accuracy(pred_map[scored[!ctrl]], k$truth[scored]),
                                accuracy(pred_new[scored[!ctrl]], k$truth[scored])),
        stim_weighted_accuracy = c(weightedAccuracy(pred_map[scored[!ctrl]], k$truth[scored]),
                                   weightedAccuracy(pred_new[scored[!ctrl]], k$truth[scored])))
    cat(sprintf("\n== query mapping, kang_ifnb: reference ctrl (%d cells), query stim (%d cells); query training %d epochs in %.1f s\n",
                sum(ctrl), sum(!ctrl), nrow(attr(mapped, "model")$history), map_s))
    print(res, digits = 4, row.names = FALSE)
    utils::write.csv(res, file.path(out, "query.csv"), row.names = FALSE)
    write_latent(z_map, file.path(out, "query_mapped_latent.tsv"))
    write_latent(denovo[, ], file.path(out, "query_denovo_latent.tsv"))
    python <- file.path(Sys.getenv("PEERS_VENV", path.expand("~/.cache/cellweave-peers-venv")), "bin/python")
    pca <- "bench/out/scanvi/pca.tsv"
    if (file.exists(python) && file.exists(pca)) {
        cat("\n== scIB metrics of the two latents (all 13,999 cells)\n")
        system2(python, c(file.path(shared, "peers/score_embeddings.py"),
                          "--data", file.path(shared, "data/kang_ifnb"), "--batch-key", "batch",
                          "--label-key", "cell_type", "--unintegrated", pca,
                          "--emb", paste0("mapQuery=", file.path(out, "query_mapped_latent.tsv")),
                          "--emb", paste0("de_novo=", file.path(out, "query_denovo_latent.tsv")),
                          "--out", file.path(out, "query_scores.csv")), stderr = FALSE)
    } else {
        message("scIB scoring skipped: needs the peer venv and ", pca, " (bench/compare_scanvi.sh)")
    }
}

if (what %in% c("seeds", "all")) seeds_experiment()
if (what %in% c("hierarchy", "all")) hierarchy_experiment()
if (what %in% c("query", "all")) query_experiment()
