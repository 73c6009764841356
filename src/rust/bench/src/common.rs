//! What every bench command shares: thread count, peak memory, options, gene lists.

/// Peak resident set size of this process in MiB (Linux VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Caps every thread pool the core uses (rayon's and the ndarray backend's matrix product).
/// Call first thing, before any pool starts.
pub fn set_threads(n: usize) {
    // SAFETY: called at start-up, before any other thread exists.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", n.to_string()) };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

/// The name of the next `--option` (or `-h` as "help"); `None` at the end of the arguments.
pub fn option_name(parser: &mut lexopt::Parser, usage: &str) -> Result<Option<String>, String> {
    match parser.next().map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(lexopt::Arg::Long(name)) => Ok(Some(name.to_string())),
        Some(lexopt::Arg::Short('h')) => Ok(Some("help".to_string())),
        Some(other) => Err(format!("{}\n{usage}", other.unexpected())),
    }
}

/// The value of the current option, as text.
pub fn value(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "arguments must be UTF-8".to_string())
}

/// The value of the current option, as a whole number.
pub fn number(parser: &mut lexopt::Parser, name: &str) -> Result<usize, String> {
    let v = value(parser)?;
    v.parse()
        .map_err(|_| format!("--{name} takes a whole number, not `{v}`"))
}

/// CPU seconds this process has used (user + system, all threads), from /proc/self/stat.
/// On a shared machine this, unlike wall time, does not count other processes' load.
pub fn process_cpu_seconds() -> f64 {
    // Fields after the command name (which may hold spaces, so split after the last ')'):
    // utime and stime are the 12th and 13th, in clock ticks of 1/100 s on Linux.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// Columns of `gene_ids` (genes.tsv order) for the genes listed in the file `path` (first
/// column), in the file's order.
pub fn gene_columns(gene_ids: &[String], path: &std::path::Path) -> Result<Vec<usize>, String> {
    let index: std::collections::HashMap<&str, usize> = gene_ids
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let wanted = cellweave_core::data::mtx::read_first_column(path).map_err(|e| e.to_string())?;
    wanted
        .iter()
        .map(|g| {
            index.get(g.as_str()).copied().ok_or(format!(
                "gene `{g}` of {} is not in genes.tsv",
                path.display()
            ))
        })
        .collect()
}

/// A data folder's counts (cells x genes; on the genes listed in `genes` when given, in that
/// file's order) and its cells.tsv table.
pub fn read_folder(
    dir: &std::path::Path,
    genes: Option<&std::path::Path>,
) -> Result<
    (
        cellweave_core::data::CsrMatrix,
        cellweave_core::data::mtx::Table,
    ),
    String,
> {
    use cellweave_core::data::mtx::{Table, read_first_column, read_mtx_genes_by_cells};
    let err = |e: cellweave_core::Error| e.to_string();
    let mut counts = read_mtx_genes_by_cells(&dir.join("counts.mtx.gz")).map_err(err)?;
    if let Some(path) = genes {
        let gene_ids = read_first_column(&dir.join("genes.tsv")).map_err(err)?;
        counts = counts.select_cols(&gene_columns(&gene_ids, path)?);
    }
    let cells = Table::read(&dir.join("cells.tsv")).map_err(err)?;
    Ok((counts, cells))
}
