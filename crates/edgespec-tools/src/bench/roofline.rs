//! The physical limit: memory bandwidth and the decode speed it allows.

use std::time::Instant;

use rayon::prelude::*;

/// What a bandwidth probe measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bandwidth {
    /// Fastest pass, bytes/s: the figure the roofline uses.
    pub best: f64,
    /// Median pass, bytes/s.
    pub median: f64,
    /// Slowest pass, bytes/s.
    pub worst: f64,
    /// Timed passes.
    pub passes: usize,
}

impl Bandwidth {
    /// Both probes' passes together (e.g. one before and one after a run).
    pub fn combine(a: &[f64], b: &[f64]) -> Option<Self> {
        let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
        all.sort_by(f64::total_cmp);
        let n = all.len();
        (n > 0).then(|| Self {
            best: all[n - 1],
            median: if n % 2 == 1 {
                all[n / 2]
            } else {
                (all[n / 2 - 1] + all[n / 2]) / 2.0
            },
            worst: all[0],
            passes: n,
        })
    }
}

/// Measures read bandwidth: `threads` threads sum a buffer of `bytes` (much
/// larger than the caches), pass after pass until `min_secs` have gone by
/// and at least five passes ran; returns each pass's bytes/s. Run it alone
/// (no decode in flight), so it does not fight llama.cpp for the cores.
pub fn read_bandwidth_passes(threads: usize, bytes: usize, min_secs: f64) -> Vec<f64> {
    let threads = threads.max(1);
    let words = (bytes / 8).max(1 << 16);
    let buffer: Vec<u64> = (0..words as u64).collect();
    let run = || {
        let chunk = words.div_ceil(threads);
        let started = Instant::now();
        let mut passes = Vec::new();
        while passes.len() < 5 || started.elapsed().as_secs_f64() < min_secs {
            let start = Instant::now();
            let sum: u64 = buffer.par_chunks(chunk).map(sum_words).sum();
            let secs = start.elapsed().as_secs_f64();
            std::hint::black_box(sum);
            if secs > 0.0 {
                passes.push((words * 8) as f64 / secs);
            }
            if passes.len() >= 1000 {
                break;
            }
        }
        passes
    };
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run),
        Err(_) => run(),
    }
}

/// Sums words with a plain fold, which the compiler unrolls into several
/// vector accumulators whatever the target CPU. (A hand-laned version ran at
/// a quarter of memory speed when built with `target-cpu=native`.)
fn sum_words(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

/// Peak resident set size of this process in bytes (VmHWM), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Starts this process's peak resident set size (VmHWM) afresh from what
/// is resident now (Linux: `/proc/self/clear_refs`), so a later
/// [`peak_rss_bytes`] measures what came after; false where it cannot.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_and_rss_are_plausible() {
        let passes = read_bandwidth_passes(1, 64 << 20, 0.0);
        assert!(passes.len() >= 5);
        let bw = Bandwidth::combine(&passes, &[]).unwrap();
        assert!(bw.best > 1e8 && bw.best < 1e13, "{bw:?}");
        assert!(bw.worst <= bw.median && bw.median <= bw.best);
        if let Some(rss) = peak_rss_bytes() {
            assert!(rss > 1 << 20);
            // The probe's 64 MB buffer is freed: a fresh peak lies below.
            if reset_peak_rss() {
                let fresh = peak_rss_bytes().unwrap();
                assert!(fresh < rss, "{fresh} after reset, {rss} before");
            }
        }
    }

    #[test]
    fn the_sum_takes_every_word() {
        for n in [0, 1, 7, 8, 9, 100] {
            let words: Vec<u64> = (1..=n).collect();
            assert_eq!(sum_words(&words), n * (n + 1) / 2);
        }
        assert_eq!(sum_words(&[u64::MAX, 2]), 1);
    }

    #[test]
    fn combining_probes_takes_best_median_and_worst() {
        let bw = Bandwidth::combine(&[3.0, 1.0], &[2.0, 4.0]).unwrap();
        assert_eq!(
            (bw.best, bw.median, bw.worst, bw.passes),
            (4.0, 2.5, 1.0, 4)
        );
        assert_eq!(Bandwidth::combine(&[], &[]), None);
    }
}
