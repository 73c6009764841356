//! What every bench command shares: peak memory and timing output.

/// Peak resident set size of this process in MiB (Linux VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}
