# Shared input checks. Each stops with a message that names the user's argument.

.stop_arg <- function(arg, ...) {
    stop(sprintf("`%s` %s", arg, paste0(...)), call. = FALSE)
}

.check_scalar_int <- function(value, arg, min = -Inf, max = Inf) {
    if (!is.numeric(value) || length(value) != 1L || is.na(value) ||
        value != round(value)) {
        .stop_arg(arg, "must be a single whole number, not ", .describe(value), ".")
    }
    if (value < min) .stop_arg(arg, "must be >= ", min, ", not ", value, ".")
    if (value > max) .stop_arg(arg, "must be <= ", max, ", not ", value, ".")
    as.integer(value)
}

.check_scalar_num <- function(value, arg, min = -Inf, max = Inf, min_inclusive = TRUE) {
    if (!is.numeric(value) || length(value) != 1L || is.na(value) || !is.finite(value)) {
        .stop_arg(arg, "must be a single finite number, not ", .describe(value), ".")
    }
    if (if (min_inclusive) value < min else value <= min) {
        .stop_arg(arg, "must be ", if (min_inclusive) ">= " else "> ", min, ", not ", value, ".")
    }
    if (value > max) .stop_arg(arg, "must be <= ", max, ", not ", value, ".")
    as.numeric(value)
}

.check_flag <- function(value, arg) {
    if (!is.logical(value) || length(value) != 1L || is.na(value)) {
        .stop_arg(arg, "must be TRUE or FALSE, not ", .describe(value), ".")
    }
    value
}

.check_choice <- function(value, arg, choices) {
    if (!is.character(value) || length(value) != 1L || is.na(value) || !value %in% choices) {
        .stop_arg(arg, "must be one of ", paste0('"', choices, '"', collapse = ", "),
                  ", not ", .describe(value), ".")
    }
    value
}

.describe <- function(value) {
    if (is.null(value)) return("NULL")
    if (length(value) != 1L) return(sprintf("a %s of length %d", class(value)[1], length(value)))
    if (is.character(value)) return(sprintf('"%s"', value))
    format(value)
}

# Counts: a dgCMatrix or a numeric matrix (genes x cells) of non-negative whole numbers with
# no NA and no empty cell. Returns a dgCMatrix (never densifies a sparse input).
.check_counts <- function(x, arg = "x", allow_non_integer = FALSE) {
    if (is.matrix(x) && is.numeric(x)) {
        x <- methods::as(Matrix::Matrix(x, sparse = TRUE), "CsparseMatrix")
    }
    if (methods::is(x, "sparseMatrix") && !methods::is(x, "dgCMatrix")) {
        x <- methods::as(methods::as(x, "CsparseMatrix"), "generalMatrix")
        x <- methods::as(x, "dMatrix")
    }
    if (!methods::is(x, "dgCMatrix")) {
        .stop_arg(arg, "must be a genes x cells count matrix (dgCMatrix or numeric matrix), not a ",
                  class(x)[1], ".")
    }
    if (ncol(x) < 1L || nrow(x) < 1L) .stop_arg(arg, "has no cells or no genes.")
    v <- x@x
    if (anyNA(v)) .stop_arg(arg, "contains NA values.")
    if (any(!is.finite(v))) .stop_arg(arg, "contains infinite values.")
    if (any(v < 0)) .stop_arg(arg, "contains negative values: counts must be >= 0.")
    if (any(v != round(v))) {
        if (!allow_non_integer) {
            .stop_arg(arg, "contains non-integer values: pass raw counts ",
                      "(or set allow_non_integer = TRUE to model them anyway).")
        }
        warning(sprintf("`%s` contains non-integer values; modelling them as counts.", arg),
                call. = FALSE)
    }
    totals <- Matrix::colSums(x)
    if (any(totals <= 0)) {
        bad <- which(totals <= 0)
        .stop_arg(arg, "has ", length(bad), " cell(s) with zero total counts (e.g. column ",
                  bad[1], if (!is.null(colnames(x))) sprintf(" '%s'", colnames(x)[bad[1]]),
                  "): remove them first.")
    }
    x
}

# A per-cell grouping (batch, label): one value per cell, no NA. Returns a factor with unused
# levels dropped.
.check_grouping <- function(value, n_cells, arg, min_levels = 1L) {
    if (is.null(value)) .stop_arg(arg, "is required.")
    if (is.data.frame(value)) .stop_arg(arg, "must be a vector, not a data.frame.")
    if (length(value) != n_cells) {
        .stop_arg(arg, "has length ", length(value), " but there are ", n_cells, " cells.")
    }
    if (anyNA(value)) .stop_arg(arg, "contains NA (", sum(is.na(value)), " cells).")
    f <- droplevels(as.factor(value))
    if (nlevels(f) < min_levels) {
        .stop_arg(arg, "has ", nlevels(f), " level(s); at least ", min_levels, " are needed.")
    }
    f
}

# An embedding: numeric matrix, cells x dimensions, finite.
.check_embedding <- function(x, arg = "x", n_cells = NULL) {
    if (is.data.frame(x)) x <- as.matrix(x)
    if (!is.matrix(x) || !is.numeric(x)) {
        .stop_arg(arg, "must be a numeric matrix (cells x dimensions), not a ", class(x)[1], ".")
    }
    if (nrow(x) < 2L || ncol(x) < 1L) .stop_arg(arg, "needs at least 2 cells and 1 dimension.")
    if (anyNA(x) || any(!is.finite(x))) .stop_arg(arg, "contains NA or infinite values.")
    if (!is.null(n_cells) && nrow(x) != n_cells) {
        .stop_arg(arg, "has ", nrow(x), " rows but there are ", n_cells, " cells.")
    }
    storage.mode(x) <- "double"
    x
}

# The compute device. "cpu" is the default; "cpu:flex"/"cpu:ndarray" pick a CPU backend.
.check_device <- function(device) {
    .check_choice(device, "device", c("cpu", "cpu:flex", "cpu:ndarray", "cuda"))
}

# Gets a column of colData / meta.data by name, or checks a per-cell vector.
.resolve_cell_vector <- function(value, cell_data, n_cells, arg) {
    if (is.character(value) && length(value) == 1L && n_cells != 1L) {
        if (!value %in% colnames(cell_data)) {
            .stop_arg(arg, sprintf('names no column of the cell metadata ("%s" not found).', value))
        }
        return(cell_data[[value]])
    }
    value
}

# The Seurat interface needs SeuratObject (a suggested package).
.require_seurat <- function() {
    if (!requireNamespace("SeuratObject", quietly = TRUE)) {
        stop("the Seurat interface needs the SeuratObject package.", call. = FALSE)
    }
}

`%||%` <- function(a, b) if (is.null(a)) b else a
