//! The synchronisation primitives of the commit protocol, in one place so
//! that `cfg(loom)` builds swap them for loom's model-checked versions (as
//! tokio does). Everything in `commit.rs` uses these and nothing else.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    pub(crate) use std::sync::{Arc, Weak};
    pub(crate) use std::thread::{self, JoinHandle};

    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Mutex<T> {
            Mutex(parking_lot::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(parking_lot::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn new(value: T) -> RwLock<T> {
            RwLock(parking_lot::RwLock::new(value))
        }

        pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, T> {
            self.0.read()
        }

        pub fn write(&self) -> parking_lot::RwLockWriteGuard<'_, T> {
            self.0.write()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub fn new() -> Condvar {
            Condvar(parking_lot::Condvar::new())
        }

        /// Wait at most `timeout`; the flag says whether it timed out.
        pub fn wait_timeout<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            timeout: std::time::Duration,
        ) -> (MutexGuard<'a, T>, bool) {
            let timed_out = self.0.wait_for(&mut guard, timeout).timed_out();
            (guard, timed_out)
        }

        pub fn notify_one(&self) {
            self.0.notify_one();
        }
    }

    /// Microseconds since the clock was made (the syncer's deadlines).
    #[derive(Debug)]
    pub(crate) struct Clock(std::time::Instant);

    impl Clock {
        pub fn new() -> Clock {
            Clock(std::time::Instant::now())
        }

        pub fn now_us(&self) -> u64 {
            self.0.elapsed().as_micros() as u64
        }
    }

    /// A broadcast wake-up for threads waiting on conditions over shared
    /// atomics: one futex word, so waking many waiters is one syscall and
    /// they do not queue on a mutex to re-check their condition.
    #[derive(Debug, Default)]
    pub(crate) struct Event {
        epoch: AtomicU32,
        waiters: AtomicU32,
    }

    impl Event {
        pub fn new() -> Event {
            Event::default()
        }

        /// Block until `done` returns true; `done` must read state that the
        /// notifier changes before calling `notify_all`.
        pub fn wait_until(&self, mut done: impl FnMut() -> bool) {
            use rustix::thread::futex;
            while !done() {
                self.waiters.fetch_add(1, Ordering::SeqCst);
                let epoch = self.epoch.load(Ordering::SeqCst);
                // A notify after the epoch load changes the epoch, so the
                // futex wait returns at once instead of missing it.
                if !done() {
                    let _ = futex::wait(&self.epoch, futex::Flags::PRIVATE, epoch, None);
                }
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            }
        }

        /// Like `wait_until`, giving up at `deadline`; returns whether `done`.
        pub fn wait_until_deadline(
            &self,
            mut done: impl FnMut() -> bool,
            deadline: std::time::Instant,
        ) -> bool {
            use rustix::thread::futex;
            while !done() {
                let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                    return false;
                };
                self.waiters.fetch_add(1, Ordering::SeqCst);
                let epoch = self.epoch.load(Ordering::SeqCst);
                if !done() {
                    let timeout = futex::Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    };
                    let _ = futex::wait(&self.epoch, futex::Flags::PRIVATE, epoch, Some(&timeout));
                }
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            }
            true
        }

        pub fn notify_all(&self) {
            use rustix::thread::futex;
            self.epoch.fetch_add(1, Ordering::SeqCst);
            if self.waiters.load(Ordering::SeqCst) > 0 {
                let _ = futex::wake(&self.epoch, futex::Flags::PRIVATE, i32::MAX as u32);
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    pub(crate) use loom::sync::MutexGuard;
    // Reference counting is not part of the protocol under test, and the
    // streams need `Arc` receivers and `Weak` references, which loom's
    // `Arc` does not offer.
    pub(crate) use loom::thread::{self, JoinHandle};
    pub(crate) use std::sync::{Arc, Weak};

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .expect("no thread panics while holding a lock")
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn new(value: T) -> RwLock<T> {
            RwLock(loom::sync::RwLock::new(value))
        }

        pub fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
            self.0
                .read()
                .expect("no thread panics while holding a lock")
        }

        pub fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
            self.0
                .write()
                .expect("no thread panics while holding a lock")
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Condvar {
            Condvar(loom::sync::Condvar::new())
        }

        pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0
                .wait(guard)
                .expect("no thread panics while holding a lock")
        }

        /// loom has no clock: a timed wait is an untimed wait that may also
        /// return spuriously, which the callers must (and do) tolerate.
        pub fn wait_timeout<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            _timeout: std::time::Duration,
        ) -> (MutexGuard<'a, T>, bool) {
            (self.wait(guard), false)
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }

        pub fn notify_one(&self) {
            self.0.notify_one();
        }
    }

    /// loom has no clock: a model moves this one forward itself, so that
    /// deadlines (the syncer's sweep) pass exactly where the model says.
    #[derive(Debug)]
    pub(crate) struct Clock(AtomicU64);

    impl Clock {
        pub fn new() -> Clock {
            Clock(AtomicU64::new(0))
        }

        pub fn now_us(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }

        #[cfg(test)]
        pub fn advance_us(&self, us: u64) {
            self.0.fetch_add(us, Ordering::SeqCst);
        }
    }

    /// The model of `Event`: a mutex-protected epoch and a condvar, the
    /// same contract (no lost wake-up) in terms loom can check.
    #[derive(Debug, Default)]
    pub(crate) struct Event {
        lock: Mutex<()>,
        changed: Condvar,
    }

    impl Event {
        pub fn new() -> Event {
            Event::default()
        }

        pub fn wait_until(&self, mut done: impl FnMut() -> bool) {
            let mut guard = self.lock.lock();
            while !done() {
                guard = self.changed.wait(guard);
            }
        }

        /// loom has no clock: the deadline is ignored.
        pub fn wait_until_deadline(
            &self,
            done: impl FnMut() -> bool,
            _deadline: std::time::Instant,
        ) -> bool {
            self.wait_until(done);
            true
        }

        pub fn notify_all(&self) {
            drop(self.lock.lock());
            self.changed.notify_all();
        }
    }
}

pub(crate) use imp::*;
