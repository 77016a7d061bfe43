//! A simulated disk for crash tests: it records every write and sync, keeps
//! what was made durable apart from what was only written, and builds the
//! disk images a power cut could leave.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lamplog::backend::{Backend, BackendFile, LockGuard, OpenMode};

/// A mutating operation, in the order the store issued it.
#[derive(Debug, Clone)]
pub enum Op {
    Create(PathBuf, usize),
    Write(usize, u64, Vec<u8>),
    SetLen(usize, u64),
    SyncFile(usize),
    SyncDir(PathBuf),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
}

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, usize>,
    files: Vec<Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
    log: Vec<Op>,
    /// The fault to inject, and the write or sync (counted from 1) it hits.
    fault: Option<(Fault, usize)>,
    /// Writes and syncs so far.
    io_count: usize,
    /// The durable state the log starts from (a crash image's contents).
    base_names: BTreeMap<PathBuf, usize>,
    base_files: Vec<Vec<u8>>,
    /// How long an fdatasync takes (none unless a test sets it).
    sync_time: std::time::Duration,
}

/// An I/O failure the disk can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// fdatasync (or a directory fsync) fails with EIO.
    SyncEio,
    /// A write lands half, then fails with ENOSPC.
    WriteEnospc,
    /// Every read (and map) of a segment fails with EIO.
    ReadEio,
}

impl State {
    fn reads_fail(&self) -> bool {
        matches!(self.fault, Some((Fault::ReadEio, _)))
    }

    /// Count a write or sync; whether the fault fires on this one.
    fn fires(&mut self, write: bool) -> bool {
        self.io_count += 1;
        match self.fault {
            Some((Fault::SyncEio, n)) => !write && self.io_count >= n,
            Some((Fault::WriteEnospc, n)) => write && self.io_count >= n,
            Some((Fault::ReadEio, _)) | None => false,
        }
    }
}

/// The disk; clone the `Arc` to share it between a store and the test.
#[derive(Debug, Default, Clone)]
pub struct SimDisk(Arc<Mutex<State>>);

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    id: usize,
}

#[derive(Debug)]
struct NoLock;
impl LockGuard for NoLock {}

/// What happens to writes that were not synced when the power went.
#[derive(Debug, Clone, Copy)]
pub enum Fate {
    /// None of them reach the disk.
    Lost,
    /// All of them do.
    Kept,
    /// The first `n` do.
    Prefix(usize),
    /// Each 512-byte sector of each write independently arrives, stays old,
    /// is zeroed, or holds garbage (seeded).
    Torn(u64),
}

impl SimDisk {
    /// From the `n`th write or sync on (counted from now), fail as `fault` says.
    pub fn inject(&self, fault: Fault, n: usize) {
        let mut state = self.0.lock().unwrap();
        let at = state.io_count + n;
        state.fault = Some((fault, at));
    }

    /// Make every file fdatasync take `t` of wall time, as a real one does
    /// (about 0.25 ms here): a thread acknowledged by a write, not a sync,
    /// then records its acknowledgement before the sync lands, so crash
    /// images catch it whatever the machine's load.
    pub fn set_sync_time(&self, t: std::time::Duration) {
        self.0.lock().unwrap().sync_time = t;
    }

    /// Stop injecting faults ("space was freed").
    pub fn heal(&self) {
        self.0.lock().unwrap().fault = None;
    }

    /// Number of operations so far (a crash point).
    pub fn ops(&self) -> usize {
        self.0.lock().unwrap().log.len()
    }

    /// Indexes of the sync operations, the crash points worth checking.
    pub fn sync_points(&self) -> Vec<usize> {
        let state = self.0.lock().unwrap();
        state
            .log
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::SyncFile(_) | Op::SyncDir(_)))
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// The disk after a power cut right after operation `at`: durable data
    /// and directory entries, plus the unsynced writes as `fate` says.
    /// With `entries_kept`, unsynced directory changes were persisted too
    /// (ext4 often does); without, a file whose entry was never synced is gone.
    pub fn crash_image(&self, at: usize, fate: Fate, entries_kept: bool) -> SimDisk {
        let mut image = None;
        self.crash_images(&[at], &[(fate, entries_kept)], |_, _, _, disk| {
            image = Some(disk)
        });
        image.expect("one image")
    }

    /// `visit(at, fate, entries_kept, image)` for every point of `points`
    /// (ascending) and every `(fate, entries_kept)` of `fates`, replaying the
    /// operation log once for all of them. `visit` must not use this disk
    /// (it is locked meanwhile), only the image.
    pub fn crash_images(
        &self,
        points: &[usize],
        fates: &[(Fate, bool)],
        mut visit: impl FnMut(usize, Fate, bool, SimDisk),
    ) {
        assert!(points.windows(2).all(|w| w[0] <= w[1]), "points ascend");
        let state = self.0.lock().unwrap();
        let mut replay = Replay::new(&state);
        let mut done = 0;
        for &at in points {
            for op in &state.log[done..at] {
                replay.step(op);
            }
            done = at;
            for &(fate, entries_kept) in fates {
                visit(
                    at,
                    fate,
                    entries_kept,
                    replay.image(&state.dirs, fate, entries_kept),
                );
            }
        }
    }
}

/// The state of the disk replayed up to some operation: what is durable,
/// what is only written, and the directory entries of each.
struct Replay {
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    /// Per directory, the entries created, renamed or removed since its
    /// last sync: a directory sync costs its own changes, not the disk's.
    unsynced: HashMap<PathBuf, Vec<PathBuf>>,
    durable: Vec<Vec<u8>>,
    /// The writes (and length changes) of each file since its last sync.
    pending: Vec<Vec<Op>>,
    current: Vec<Vec<u8>>,
}

impl Replay {
    fn new(state: &State) -> Replay {
        Replay {
            names: state.base_names.clone(),
            durable_names: state.base_names.clone(),
            unsynced: HashMap::new(),
            durable: state.base_files.clone(),
            pending: vec![Vec::new(); state.base_files.len()],
            current: state.base_files.clone(),
        }
    }

    /// Note that `path`'s entry changed since its directory's last sync.
    fn changed(&mut self, path: &Path) {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        self.unsynced
            .entry(dir)
            .or_default()
            .push(path.to_path_buf());
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Create(path, id) => {
                self.names.insert(path.clone(), *id);
                self.changed(path);
                self.durable.resize(id + 1, Vec::new());
                self.pending.resize(id + 1, Vec::new());
                self.current.resize(id + 1, Vec::new());
            }
            Op::Write(id, ..) | Op::SetLen(id, _) => {
                apply(&mut self.current[*id], op);
                self.pending[*id].push(op.clone());
            }
            Op::SyncFile(id) => {
                self.durable[*id] = self.current[*id].clone();
                self.pending[*id].clear();
            }
            Op::SyncDir(dir) => {
                // The directory's durable entries become its current ones.
                for path in self.unsynced.remove(dir).unwrap_or_default() {
                    match self.names.get(&path) {
                        Some(&id) => self.durable_names.insert(path, id),
                        None => self.durable_names.remove(&path),
                    };
                }
            }
            Op::Rename(from, to) => {
                if let Some(id) = self.names.remove(from) {
                    self.names.insert(to.clone(), id);
                    self.changed(from);
                    self.changed(to);
                }
            }
            Op::Remove(path) => {
                self.names.remove(path);
                self.changed(path);
            }
        }
    }

    fn image(&self, dirs: &BTreeSet<PathBuf>, fate: Fate, entries_kept: bool) -> SimDisk {
        let mut rng = match fate {
            Fate::Torn(seed) => seed | 1,
            _ => 1,
        };
        let mut image = State {
            dirs: dirs.clone(),
            ..State::default()
        };
        let visible = if entries_kept {
            &self.names
        } else {
            &self.durable_names
        };
        for (path, &id) in visible {
            let mut bytes = self.durable[id].clone();
            for (n, op) in self.pending[id].iter().enumerate() {
                match fate {
                    Fate::Lost => {}
                    Fate::Kept => apply(&mut bytes, op),
                    Fate::Prefix(k) if n < k => apply(&mut bytes, op),
                    Fate::Prefix(_) => {}
                    Fate::Torn(_) => tear(&mut bytes, op, &mut rng),
                }
            }
            image.names.insert(path.clone(), image.files.len());
            image.files.push(bytes);
        }
        image.base_names = image.names.clone();
        image.base_files = image.files.clone();
        SimDisk(Arc::new(Mutex::new(image)))
    }
}

fn apply(bytes: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(_, offset, data) => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
        Op::SetLen(_, len) => bytes.resize(*len as usize, 0),
        _ => {}
    }
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Apply a write sector by sector, each sector new, old, zeroed or garbage.
fn tear(bytes: &mut Vec<u8>, op: &Op, rng: &mut u64) {
    let Op::Write(_, offset, data) = op else {
        return apply(bytes, op);
    };
    let end = *offset as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    let mut at = *offset as usize;
    while at < end {
        let sector_end = ((at / 512) + 1) * 512;
        let stop = sector_end.min(end);
        match next(rng) % 4 {
            0 => bytes[at..stop]
                .copy_from_slice(&data[at - *offset as usize..stop - *offset as usize]),
            1 => {}
            2 => bytes[at..stop].fill(0),
            _ => bytes[at..stop]
                .iter_mut()
                .for_each(|b| *b = next(rng) as u8),
        }
        at = stop;
    }
}

impl Backend for SimDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.0.lock().unwrap();
        for dir in path.ancestors() {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.0.lock().unwrap();
        if !state.dirs.contains(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let children = state
            .names
            .keys()
            .chain(state.dirs.iter())
            .filter(|p| p.parent() == Some(path));
        let mut names: Vec<String> = children
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        let mut state = self.0.lock().unwrap();
        let id = match (state.names.get(path).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => return Err(io::ErrorKind::AlreadyExists.into()),
            (Some(id), _) => id,
            (None, OpenMode::CreateNew) => {
                let id = state.files.len();
                state.files.push(Vec::new());
                state.names.insert(path.to_path_buf(), id);
                state.log.push(Op::Create(path.to_path_buf(), id));
                id
            }
            (None, _) => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            id,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.0.lock().unwrap();
        let id = state.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        state.names.insert(to.to_path_buf(), id);
        state
            .log
            .push(Op::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.0.lock().unwrap();
        state.names.remove(path).ok_or(io::ErrorKind::NotFound)?;
        state.log.push(Op::Remove(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0
            .lock()
            .unwrap()
            .log
            .push(Op::SyncDir(path.to_path_buf()));
        Ok(())
    }

    fn try_lock(&self, _: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        Ok(Some(Box::new(NoLock)))
    }
}

impl BackendFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk.0.lock().unwrap().files[self.id].len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.disk.0.lock().unwrap();
        if state.reads_fail() {
            return Err(io::Error::from_raw_os_error(5));
        }
        let data = &state.files[self.id];
        let src = data
            .get(offset as usize..offset as usize + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.0.lock().unwrap();
        if state.fires(true) {
            let op = Op::Write(self.id, offset, buf[..buf.len() / 2].to_vec());
            apply(&mut state.files[self.id], &op);
            state.log.push(op);
            return Err(io::Error::from_raw_os_error(28));
        }
        let op = Op::Write(self.id, offset, buf.to_vec());
        apply(&mut state.files[self.id], &op);
        state.log.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let sync_time = self.disk.0.lock().unwrap().sync_time;
        if !sync_time.is_zero() {
            std::thread::sleep(sync_time);
        }
        let mut state = self.disk.0.lock().unwrap();
        if state.fires(false) {
            // The kernel may have dropped the dirty pages: what the sync
            // covered is not durable, and a retry must not say it is.
            return Err(io::Error::from_raw_os_error(5));
        }
        state.log.push(Op::SyncFile(self.id));
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.0.lock().unwrap();
        let op = Op::SetLen(self.id, len);
        apply(&mut state.files[self.id], &op);
        state.log.push(op);
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if len > self.len()? {
            self.set_len(len)?;
        }
        Ok(())
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        let state = self.disk.0.lock().unwrap();
        if state.reads_fail() {
            return Err(io::Error::from_raw_os_error(5));
        }
        let data = state.files[self.id]
            .get(..len as usize)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        Ok(Bytes::copy_from_slice(data))
    }
}
