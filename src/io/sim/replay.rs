//! Replaying a simulated disk's operations to build the images a power cut
//! could leave.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Fate, SimDisk, SimOp, State};

/// The state of the disk replayed up to some operation: what is durable,
/// what is only written, and the directory entries of each.
pub(super) struct Replay {
    names: BTreeMap<OsString, usize>,
    durable_names: BTreeMap<OsString, usize>,
    /// Per directory, the entries created, renamed or removed since its
    /// last sync: a directory sync costs its own changes, not the disk's.
    unsynced: HashMap<PathBuf, Vec<PathBuf>>,
    durable: Vec<Vec<u8>>,
    /// The writes (and length changes) of each file since its last sync.
    pending: Vec<Vec<SimOp>>,
    current: Vec<Vec<u8>>,
}

impl Replay {
    pub(super) fn new(state: &State) -> Replay {
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

    pub(super) fn step(&mut self, op: &SimOp) {
        match op {
            SimOp::Create(path, id) => {
                self.names.insert(path.clone().into_os_string(), *id);
                self.changed(path);
                self.durable.resize(id + 1, Vec::new());
                self.pending.resize(id + 1, Vec::new());
                self.current.resize(id + 1, Vec::new());
            }
            SimOp::Write(id, ..) | SimOp::SetLen(id, _) => {
                apply(&mut self.current[*id], op);
                self.pending[*id].push(op.clone());
            }
            SimOp::SyncFile(id) => {
                self.durable[*id] = self.current[*id].clone();
                self.pending[*id].clear();
            }
            SimOp::SyncDir(dir) => {
                // The directory's durable entries become its current ones.
                for path in self.unsynced.remove(dir).unwrap_or_default() {
                    let path = path.into_os_string();
                    match self.names.get(&path) {
                        Some(&id) => self.durable_names.insert(path, id),
                        None => self.durable_names.remove(&path),
                    };
                }
            }
            SimOp::Rename(from, to) => {
                if let Some(id) = self.names.remove(from.as_os_str()) {
                    self.names.insert(to.clone().into_os_string(), id);
                    self.changed(from);
                    self.changed(to);
                }
            }
            SimOp::Remove(path) => {
                self.names.remove(path.as_os_str());
                self.changed(path);
            }
        }
    }

    pub(super) fn image(
        &self,
        dirs: &BTreeSet<PathBuf>,
        fate: Fate,
        entries_kept: bool,
    ) -> SimDisk {
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
        SimDisk::from_state(image)
    }
}

pub(super) fn apply(bytes: &mut Vec<u8>, op: &SimOp) {
    match op {
        SimOp::Write(_, offset, data) => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
        SimOp::SetLen(_, len) => bytes.resize(*len as usize, 0),
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
fn tear(bytes: &mut Vec<u8>, op: &SimOp, rng: &mut u64) {
    let SimOp::Write(_, offset, data) = op else {
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
