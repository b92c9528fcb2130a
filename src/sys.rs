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

/// CPU time this process has used so far (user + system, every thread, live or exited), in
/// seconds; `None` where `/proc` is absent. Resolution is the kernel's clock tick (10 ms).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // its closing parenthesis, where `state` is field 3, so utime (14) and stime (15) are the
    // 12th and 13th.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    // USER_HZ, which `/proc` counts in, is 100 on every Linux architecture rag builds for.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_and_grows_with_work() {
        let Some(before) = super::cpu_seconds() else { panic!("/proc/self/stat could not be read or parsed") };
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Spin until 0.1 s more is counted (10 clock ticks); a parse of the wrong fields would
        // not move, or would not move with this thread's work.
        while super::cpu_seconds().is_some_and(|now| now - before < 0.1) && start.elapsed().as_secs() < 20 {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let used = super::cpu_seconds().unwrap_or_default() - before;
        assert!((0.1..20.0).contains(&used), "{used} s of CPU counted after {:?} of spinning", start.elapsed());
    }
}
