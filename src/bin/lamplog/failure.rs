//! Failures and their exit codes: 0 ok, 1 a data problem (corruption, a
//! locked store, an I/O failure), 2 a usage or input error.

use std::io;

use lamplog::Error;

/// A failure and the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match e {
            Error::InvalidJson { .. }
            | Error::InvalidName { .. }
            | Error::InvalidSnapshotId { .. }
            | Error::MergeTargetIsSource { .. }
            | Error::RecordTooLarge { .. }
            | Error::InvalidOptions(_)
            | Error::StreamNotFound { .. }
            | Error::CannotRedact { .. }
            | Error::ReadOnly => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// The code of a failure to write to a stdout whose reader went away.
pub const PIPE_CLOSED: u8 = 141;

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        let code = match e.kind() {
            io::ErrorKind::BrokenPipe => PIPE_CLOSED,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}
