//! The physical limit: memory bandwidth and the decode speed it allows.

use std::time::Instant;

use rayon::prelude::*;

/// Measures read bandwidth in bytes/s: `threads` threads sum a buffer much
/// larger than the caches, best of a few passes. Runs alone (no decode in
/// flight), so it does not fight llama.cpp for the cores.
pub fn read_bandwidth(threads: usize, bytes: usize) -> f64 {
    let words = (bytes / 8).max(1 << 16);
    let buffer: Vec<u64> = (0..words as u64).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build();
    let run = || {
        let chunk = words.div_ceil(threads.max(1));
        let mut best = 0.0f64;
        for _ in 0..5 {
            let start = Instant::now();
            let sum: u64 = buffer
                .par_chunks(chunk)
                .map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
                .sum();
            let secs = start.elapsed().as_secs_f64();
            std::hint::black_box(sum);
            if secs > 0.0 {
                best = best.max((words * 8) as f64 / secs);
            }
        }
        best
    };
    match pool {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    }
}

/// Peak resident set size of this process in bytes (VmHWM), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_and_rss_are_plausible() {
        let bw = read_bandwidth(1, 64 << 20);
        assert!(bw > 1e8 && bw < 1e13, "{bw} B/s");
        if let Some(rss) = peak_rss_bytes() {
            assert!(rss > 1 << 20);
        }
    }
}
