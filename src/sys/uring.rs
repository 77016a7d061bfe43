//! fdatasync of many files at once through io_uring.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

/// Submission entries per ring; larger batches go in rounds.
const RING_ENTRIES: u32 = 256;

/// An io_uring instance for the syncer thread.
pub(crate) struct Ring {
    ring: IoUring,
    /// Tags each round's entries, so a completion left over from a round
    /// that gave up waiting is never taken for one of a later round.
    round: u32,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

impl Ring {
    /// Set up a ring; fails where the kernel refuses io_uring (too old,
    /// disabled by sysctl, blocked by seccomp).
    pub fn new() -> io::Result<Ring> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Fsync::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring has no fsync",
            ));
        }
        Ok(Ring { ring, round: 0 })
    }

    /// fdatasync every file at once; one result per file, in order.
    pub fn sync_all(&mut self, fds: &[RawFd]) -> Vec<io::Result<()>> {
        fds.chunks(RING_ENTRIES as usize)
            .flat_map(|chunk| self.round(chunk))
            .collect()
    }

    fn round(&mut self, fds: &[RawFd]) -> Vec<io::Result<()>> {
        self.round = self.round.wrapping_add(1);
        let tag = u64::from(self.round) << 32;
        let mut results: Vec<Option<io::Result<()>>> = (0..fds.len()).map(|_| None).collect();
        let mut queued = 0;
        for (i, &fd) in fds.iter().enumerate() {
            let entry = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(tag | i as u64);
            // SAFETY: an fsync entry refers to no memory, only to a file
            // descriptor, which the kernel resolves to its own reference to
            // the file when it takes the entry; nothing can dangle. The
            // queue holds RING_ENTRIES entries and each round pushes at most
            // that many after the previous round's were submitted.
            match unsafe { self.ring.submission().push(&entry) } {
                Ok(()) => queued += 1,
                Err(_) => {
                    results[i] = Some(Err(io::Error::other("io_uring submission queue full")))
                }
            }
        }
        let mut done = 0;
        while done < queued {
            if let Err(e) = self.ring.submit_and_wait(queued - done) {
                if e.kind() != io::ErrorKind::Interrupted {
                    let message = format!("io_uring wait: {e}");
                    for slot in results.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err(io::Error::new(e.kind(), message.clone())));
                    }
                    break;
                }
            }
            for cqe in self.ring.completion() {
                let (entry_tag, i) = (
                    cqe.user_data() & !0xffff_ffff,
                    (cqe.user_data() & 0xffff_ffff) as usize,
                );
                if entry_tag != tag || i >= results.len() || results[i].is_some() {
                    continue;
                }
                results[i] = Some(if cqe.result() < 0 {
                    Err(io::Error::from_raw_os_error(-cqe.result()))
                } else {
                    Ok(())
                });
                done += 1;
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("no io_uring completion"))))
            .collect()
    }
}
