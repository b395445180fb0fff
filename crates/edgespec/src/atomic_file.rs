//! Files written whole or not at all: through a temporary file in the same
//! folder, synced, renamed into place, the rename synced through the folder.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` with `write` through a temporary file beside it (named
/// after this process and call, so concurrent writers never share one): an
/// interrupted or failed write never leaves a partial file under `path`,
/// and the temporary file is removed on error. `io_err` turns the I/O
/// errors of creating, syncing and renaming into the caller's error type.
pub fn write_atomically<E>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), E>,
    io_err: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{file_name}.{}-{}.partial",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(&io_err)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(&io_err)?;
        std::fs::rename(&tmp, path).map_err(&io_err)?;
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(&io_err)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
