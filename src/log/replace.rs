//! Replacing a segment file with a changed copy (a repair, a redaction):
//! the copy is written beside it as `<segment>.tmp`, made durable, and
//! renamed over it. A crash leaves the old file or the new one, never a
//! mix (a writable open deletes a leftover `.tmp`), and no byte of the old
//! file changes, so a reader's map of it stays sound (docs/UNSAFE.md).

use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use crate::io::backend::{Backend, OpenMode};

/// Bytes to write at an offset of the copy.
pub(crate) struct Patch<'a> {
    pub at: u64,
    pub bytes: &'a [u8],
}

/// Replace the segment at `path` with `len` bytes: `bytes` (zeros past its
/// end), with `patches` written over them; then fsync its folder.
pub(crate) fn replace_segment(
    backend: &dyn Backend,
    path: &Path,
    bytes: &[u8],
    len: u64,
    patches: &[Patch<'_>],
) -> Result<()> {
    let temp = temp_path(path);
    let _ = backend.remove_file(&temp);
    let out = backend
        .open(&temp, OpenMode::CreateNew)
        .map_err(io_err("create", &temp))?;
    let copied = len.min(bytes.len() as u64) as usize;
    out.write_all_at(&bytes[..copied], 0)
        .map_err(io_err("write", &temp))?;
    out.set_len(len).map_err(io_err("truncate", &temp))?;
    for p in patches.iter().filter(|p| p.at < len) {
        out.write_all_at(p.bytes, p.at)
            .map_err(io_err("write", &temp))?;
    }
    out.sync_data().map_err(io_err("fdatasync", &temp))?;
    backend
        .rename(&temp, path)
        .map_err(io_err("rename", &temp))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    backend
        .sync_dir(dir)
        .map_err(io_err("fsync directory", dir))
}

/// Where a segment's changed copy is written before its rename.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
