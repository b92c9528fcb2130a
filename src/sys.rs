//! Facts about this process that reports include.

/// Peak resident set size of this process (`VmHWM`), in MiB; `None` where `/proc` is absent.
pub fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// Resident set size of this process now (`VmRSS`), in MiB; `None` where `/proc` is absent.
pub fn rss_mb() -> Option<f64> {
    status_mb("VmRSS:")
}

/// A `kB` line of `/proc/self/status`, in MiB.
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix(key))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}
