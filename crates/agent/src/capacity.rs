//! What this host can hold, as it declares it in its heartbeats: `cpu` (hardware threads)
//! and `memory` (MiB, from `/proc/meminfo`'s MemTotal).

use std::collections::BTreeMap;

/// This host's capacity; a value that cannot be read is left out (and the scheduler sets
/// no limit for it).
pub fn local() -> BTreeMap<String, u64> {
    let mut capacity = BTreeMap::new();
    if let Ok(threads) = std::thread::available_parallelism() {
        capacity.insert("cpu".to_string(), threads.get() as u64);
    }
    if let Some(mib) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_mib(&text))
    {
        capacity.insert("memory".to_string(), mib);
    }
    capacity
}

fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    (kib >= 1024).then_some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_mib_and_garbage_is_left_out() {
        assert_eq!(
            mem_total_mib("MemTotal:       16315828 kB\nMemFree: 1 kB\n"),
            Some(15933)
        );
        assert_eq!(mem_total_mib("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total_mib(""), None);
        let here = local();
        assert!(here.get("cpu").is_some_and(|cpu| *cpu >= 1), "{here:?}");
    }
}
