//! Starting writeback early: `sync_file_range(SYNC_FILE_RANGE_WRITE)`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Ask the kernel to start writing `[offset, offset + len)` of `file` back
/// to the disk, without waiting and without any durability promise: a
/// later `fdatasync` then has less left to write.
pub(crate) fn start(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: a plain system call on a descriptor `file` keeps open for its
    // duration; it reads no memory of ours.
    let r = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
