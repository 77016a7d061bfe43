//! fdatasync of many files at once through io_uring.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

/// Submission entries per ring; larger batches go in rounds.
const RING_ENTRIES: u32 = 256;

/// An io_uring instance for the syncer thread.
pub(crate) struct Ring {
    /// `None` once a wait failed: entries of that round may still be queued
    /// or in flight, so the ring is never used again.
    ring: Option<IoUring>,
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
        Ok(Ring { ring: Some(ring) })
    }

    /// fdatasync every file at once; one result per file, in order.
    pub fn sync_all(&mut self, fds: &[RawFd]) -> Vec<io::Result<()>> {
        fds.chunks(RING_ENTRIES as usize)
            .flat_map(|chunk| self.round(chunk))
            .collect()
    }

    fn round(&mut self, fds: &[RawFd]) -> Vec<io::Result<()>> {
        let Some(ring) = &mut self.ring else {
            return fds
                .iter()
                .map(|_| {
                    Err(io::Error::other(
                        "io_uring was shut down after a failed wait",
                    ))
                })
                .collect();
        };
        let mut results: Vec<Option<io::Result<()>>> = (0..fds.len()).map(|_| None).collect();
        let mut queued = 0;
        for (i, &fd) in fds.iter().enumerate() {
            let entry = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(i as u64);
            // SAFETY: an fsync entry refers to no memory, only to a file
            // descriptor, which the kernel resolves to its own reference to
            // the file when it takes the entry; nothing can dangle. Every
            // round starts with an empty submission queue: an earlier round
            // either submitted all its entries and reaped all their
            // completions, or its wait failed and the ring was discarded
            // (below). A round pushes at most RING_ENTRIES entries (the
            // queue's size); a push that still fails is reported, not retried.
            match unsafe { ring.submission().push(&entry) } {
                Ok(()) => queued += 1,
                Err(_) => {
                    results[i] = Some(Err(io::Error::other("io_uring submission queue full")))
                }
            }
        }
        let mut done = 0;
        while done < queued {
            if let Err(e) = ring.submit_and_wait(queued - done) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let message = format!("io_uring wait: {e}");
                for slot in results.iter_mut().filter(|s| s.is_none()) {
                    *slot = Some(Err(io::Error::new(e.kind(), message.clone())));
                }
                // Entries of this round may still be queued or in flight.
                // Dropping the ring lets the kernel finish them on its own
                // (they refer to no memory of ours), and no later round can
                // find them in its queue. The failed syncs poison the store,
                // so the syncer has nothing more to sync anyway.
                self.ring = None;
                break;
            }
            // Every completion is of this round: earlier rounds reaped all of
            // theirs, or discarded the ring.
            for cqe in ring.completion() {
                let i = cqe.user_data() as usize;
                if i >= results.len() || results[i].is_some() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn syncs_many_files_in_rounds_and_reports_each_failure() {
        let Ok(mut ring) = Ring::new() else {
            eprintln!("io_uring unavailable here: nothing to test");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<std::fs::File> = (0..RING_ENTRIES as usize + 44)
            .map(|i| std::fs::File::create(dir.path().join(i.to_string())).unwrap())
            .collect();
        let mut fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        fds.insert(3, -1);
        let results = ring.sync_all(&fds);
        assert_eq!(results.len(), fds.len());
        for (i, result) in results.iter().enumerate() {
            match i {
                3 => assert_eq!(
                    result.as_ref().unwrap_err().raw_os_error(),
                    Some(rustix::io::Errno::BADF.raw_os_error())
                ),
                _ => assert!(result.is_ok(), "file {i}: {result:?}"),
            }
        }
        // A discarded ring (after a failed wait) refuses, and says why.
        ring.ring = None;
        let refused = ring.sync_all(&fds[..2]);
        assert!(refused.iter().all(|r| r.is_err()));
    }
}
