//! Wall-clock time as tokens count it: whole seconds since the UNIX epoch.

/// Seconds since the UNIX epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
