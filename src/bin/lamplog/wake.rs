//! What it costs this machine to wake blocked threads. In a group commit
//! that runs in lockstep, each sync is followed by a round in which all its
//! appenders are woken and append again before the next sync, so it cannot
//! go faster than `writers / (t_fsync + round)`. `lamplog bench` measures
//! the round beside the fsync, so that its figures can be read against what
//! this machine allows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::thread::futex;

/// Tells the threads to stop.
const STOP: u32 = u32::MAX;

fn wait_while(word: &AtomicU32, value: u32) {
    while word.load(Ordering::SeqCst) == value {
        let _ = futex::wait(word, futex::Flags::PRIVATE, value, None);
    }
}

fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
}

/// The median time of one round: `threads` threads blocked on one futex are
/// woken together, and each checks in and blocks again; the round ends when
/// the last one has checked in and woken the caller.
pub fn round(threads: usize) -> Duration {
    let n = u32::try_from(threads).expect("a thread count fits u32");
    assert!(n > 0, "a round needs a thread to wake");
    let epoch = Arc::new(AtomicU32::new(0));
    let arrived = Arc::new(AtomicU32::new(0));
    let all_in = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (epoch, arrived, all_in) = (epoch.clone(), arrived.clone(), all_in.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                loop {
                    if arrived.fetch_add(1, Ordering::SeqCst) + 1 == n {
                        all_in.store(1, Ordering::SeqCst);
                        wake_all(&all_in);
                    }
                    wait_while(&epoch, seen);
                    seen = epoch.load(Ordering::SeqCst);
                    if seen == STOP {
                        return;
                    }
                }
            })
        })
        .collect();
    let mut rounds = Vec::new();
    let started = Instant::now();
    wait_while(&all_in, 0);
    while rounds.len() < 20 || started.elapsed() < Duration::from_millis(300) {
        // Everyone is in and blocked (or about to block) on `epoch`.
        let t = Instant::now();
        all_in.store(0, Ordering::SeqCst);
        arrived.store(0, Ordering::SeqCst);
        epoch.store(rounds.len() as u32 + 1, Ordering::SeqCst);
        wake_all(&epoch);
        wait_while(&all_in, 0);
        rounds.push(t.elapsed());
    }
    all_in.store(0, Ordering::SeqCst);
    epoch.store(STOP, Ordering::SeqCst);
    wake_all(&epoch);
    for worker in workers {
        let _ = worker.join();
    }
    rounds.sort_unstable();
    rounds[rounds.len() / 2]
}
