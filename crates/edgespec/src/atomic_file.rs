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

/// Why [`write_envelope`] wrote nothing.
#[derive(Debug)]
pub enum EnvelopeError {
    /// A file at the path does not start with the magic: someone else's
    /// data, never replaced.
    NotOurs,
    /// Reading or writing failed.
    Io(std::io::Error),
}

/// Writes edgespec's file envelope to `path` atomically: `magic`, `format`
/// (u32), the CRC-32 of `payload` (u32), little-endian, then `payload`.
/// A file already at `path` is replaced only when it starts with `magic`.
pub fn write_envelope(
    path: &Path,
    magic: &[u8; 8],
    format: u32,
    payload: &[u8],
) -> Result<(), EnvelopeError> {
    match File::open(path) {
        Ok(mut file) => {
            let mut found = [0u8; 8];
            if std::io::Read::read_exact(&mut file, &mut found).is_err() || &found != magic {
                return Err(EnvelopeError::NotOurs);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EnvelopeError::Io(e)),
    }
    write_atomically(
        path,
        |out| {
            use std::io::Write;
            out.write_all(magic)?;
            out.write_all(&format.to_le_bytes())?;
            out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
            out.write_all(payload)
        },
        |e| e,
    )
    .map_err(EnvelopeError::Io)
}
