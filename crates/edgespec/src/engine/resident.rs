//! Weights resident once. llama.cpp maps the model file and faults all of it
//! in; the tensors ggml repacks for its batched kernels are then copied out
//! of the mapping, and the pages they were read from would stay resident
//! beside the copies (+610 MB for a 1.1 GB target). While a model loads,
//! [`LoadReleaser`] hands the mapping's pages back to the kernel as the
//! copies are made: they leave the process's resident set (the page cache
//! keeps them while memory allows), and the tensors that still read from the
//! mapping fault their pages back in on first use. Linux and Android only;
//! elsewhere it does nothing.

use std::ffi::c_void;
use std::path::Path;

/// Releases llama.cpp's mapping of one model file while that model loads,
/// from the loader's progress callback ([`LoadReleaser::callback`]).
#[derive(Debug)]
pub(super) struct LoadReleaser {
    /// The file's device and inode, as `/proc/self/maps` names them.
    file: Option<FileId>,
    /// Mappings of the file that existed before the load began (another
    /// model's, our own reader's): never touched.
    before: Vec<MappedRange>,
    /// Progress at the last release.
    released_at: f32,
    /// Bytes handed back at the last release (for the log).
    pub(super) last_released: usize,
}

/// Releases at least every this much of the load, so the copies and the
/// pages they were read from overlap by no more than this share of the file.
const RELEASE_EVERY: f32 = 1.0 / 32.0;

impl LoadReleaser {
    /// A releaser for `path` (inactive where the file cannot be identified
    /// or the platform is not Linux).
    pub(super) fn new(path: &Path) -> Self {
        let file = FileId::of(path);
        let before = file.map(|id| id.mapped_ranges()).unwrap_or_default();
        Self {
            file,
            before,
            released_at: f32::NEG_INFINITY,
            last_released: 0,
        }
    }

    /// llama.cpp's progress callback: `user_data` is a `*mut LoadReleaser`.
    /// Never cancels the load and never unwinds into C.
    pub(super) extern "C" fn callback(progress: f32, user_data: *mut c_void) -> bool {
        let releaser = user_data.cast::<LoadReleaser>();
        // SAFETY: Model::load passes a pointer to a LoadReleaser that lives
        // on its stack for the whole llama_model_load_from_file call, which
        // alone calls this, from its own thread.
        let Some(releaser) = (unsafe { releaser.as_mut() }) else {
            return true;
        };
        // A panic here must not cross into C; the load goes on without it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            releaser.on_progress(progress)
        }));
        true
    }

    fn on_progress(&mut self, progress: f32) {
        if progress < 1.0 && progress - self.released_at < RELEASE_EVERY {
            return;
        }
        self.released_at = progress;
        let Some(file) = self.file else {
            return;
        };
        let mut released = 0;
        for range in file.mapped_ranges() {
            if self.before.contains(&range) {
                continue;
            }
            // The range is a shared, read-only mapping of the model file that
            // llama.cpp's loader made during this load; only that loader,
            // which is waiting on this callback, unmaps it.
            if release(range) {
                released += range.end - range.start;
            }
        }
        self.last_released = released;
    }
}

/// A file's identity: device (major, minor) and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    major: u64,
    minor: u64,
    inode: u64,
}

/// One line of `/proc/self/maps`: an address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MappedRange {
    start: usize,
    end: usize,
}

impl FileId {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let dev = meta.dev();
        // glibc's and the kernel's encoding of a 64-bit dev_t.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        Some(Self {
            major,
            minor,
            inode: meta.ino(),
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn of(_path: &Path) -> Option<Self> {
        None
    }

    /// The shared, read-only mappings of this file in this process now.
    fn mapped_ranges(self) -> Vec<MappedRange> {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return Vec::new();
        };
        maps.lines()
            .filter_map(|line| parse_maps_line(line))
            .filter(|(id, perms, _)| *id == self && perms.starts_with("r-") && perms.ends_with('s'))
            .map(|(_, _, range)| range)
            .collect()
    }
}

/// Parses `start-end perms offset major:minor inode [path]` (hexadecimal
/// numbers but the inode).
fn parse_maps_line(line: &str) -> Option<(FileId, &str, MappedRange)> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode = fields.next()?.parse().ok()?;
    let range = MappedRange {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
    };
    let id = FileId {
        major: u64::from_str_radix(major, 16).ok()?,
        minor: u64::from_str_radix(minor, 16).ok()?,
        inode,
    };
    (range.end > range.start).then_some((id, perms, range))
}

/// Drops a shared, read-only file mapping's pages from this process; the
/// next read of one faults it back in from the page cache or the file, so
/// what the mapping reads is unchanged.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn release(range: MappedRange) -> bool {
    // SAFETY: the range is a whole, currently mapped, shared read-only file
    // mapping (from /proc/self/maps, page aligned); MADV_DONTNEED on such a
    // mapping discards no data, it only unmaps pages that are refaulted from
    // the file on the next access.
    unsafe {
        libc::madvise(
            range.start as *mut c_void,
            range.end - range.start,
            libc::MADV_DONTNEED,
        ) == 0
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn release(_range: MappedRange) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_and_name_the_file() {
        let line = "7f3a2c000000-7f3a6e9a5000 r--s 00000000 fd:01 1835052   /models/q.gguf";
        let (id, perms, range) = parse_maps_line(line).unwrap();
        assert_eq!(
            id,
            FileId {
                major: 0xfd,
                minor: 1,
                inode: 1_835_052
            }
        );
        assert_eq!(perms, "r--s");
        assert_eq!(range.end - range.start, 0x7f3a6e9a5000 - 0x7f3a2c000000);
        assert!(parse_maps_line("garbage").is_none());
        assert!(parse_maps_line("2000-1000 r--s 0 fd:01 7 /x").is_none());
    }

    /// A file mapped shared and read-only, faulted in, then released: its
    /// pages leave the resident set and read back the same bytes.
    #[cfg(target_os = "linux")]
    #[test]
    fn released_pages_leave_the_resident_set_and_read_back_unchanged() {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = (0..8 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
        file.write_all(&bytes).unwrap();
        file.flush().unwrap();
        let releaser = LoadReleaser::new(file.path());
        let id = releaser.file.unwrap();
        // SAFETY: test-only mapping of a temporary file nobody writes.
        let map = unsafe { memmap2::Mmap::map(file.as_file()) }.unwrap();
        let sum = |m: &[u8]| m.iter().map(|&b| u64::from(b)).sum::<u64>();
        let expected = sum(&bytes);
        assert_eq!(sum(&map), expected);
        let resident = |range: MappedRange| resident_kb(range);
        let ranges: Vec<_> = id
            .mapped_ranges()
            .into_iter()
            .filter(|r| !releaser.before.contains(r))
            .collect();
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        assert!(resident(ranges[0]) >= 8 << 10, "faulted in");
        let mut releaser = releaser;
        releaser.on_progress(1.0);
        assert_eq!(releaser.last_released, 8 << 20);
        assert!(resident(ranges[0]) < 1 << 10, "released");
        assert_eq!(sum(&map), expected, "reads back unchanged");
    }

    /// Resident kilobytes of one mapping (`/proc/self/smaps`).
    #[cfg(target_os = "linux")]
    fn resident_kb(range: MappedRange) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{:x}-{:x} ", range.start, range.end);
        let block = smaps.split_once(&head).unwrap().1;
        let rss = block.lines().find(|l| l.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
