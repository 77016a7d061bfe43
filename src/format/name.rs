//! Stream names: the only caller input that becomes part of a path.

use crate::error::{Error, Result};

/// Longest accepted stream name, in bytes.
pub const NAME_LEN_MAX: usize = 128;

/// Accept `[A-Za-z0-9._-]{1,128}` not starting with `.`.
///
/// The character set has no path separator and the leading-dot rule excludes
/// `.` and `..`, so a valid name is always one plain directory entry inside
/// the store.
pub fn validate(name: &str) -> Result<()> {
    let reject = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("empty");
    }
    if name.len() > NAME_LEN_MAX {
        return reject("longer than 128 bytes");
    }
    if name.starts_with('.') {
        return reject("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return reject("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for name in [
            "a",
            "session-42",
            "agent_001.log",
            "A.b-c_D",
            &"x".repeat(128),
        ] {
            validate(name).unwrap();
        }
    }

    #[test]
    fn rejects_paths_dots_and_controls() {
        let long = "x".repeat(129);
        for name in [
            "", ".", "..", ".hidden", "a/b", "../x", "a\\b", "a\0b", "a\nb", "tab\t", "é", " ",
            &long,
        ] {
            assert!(
                matches!(validate(name), Err(Error::InvalidName { .. })),
                "{name:?} accepted"
            );
        }
    }
}
