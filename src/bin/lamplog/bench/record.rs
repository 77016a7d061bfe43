//! The records every benchmark appends. `lamplog bench` and the peers
//! benchmark (benches/peers, which includes this file by path) append the
//! same ops, so that their figures compare.

/// A realistic op of about `bytes` bytes: actor, op, path, blob hash, timestamps.
pub fn op(i: u64, bytes: usize) -> Vec<u8> {
    let mut s = format!(
        r#"{{"actor":"agent-{:03}","op":"write","path":"src/module_{}/file_{}.rs","blob":"sha256:{:064x}","ts":{},"seq_hint":{i}"#,
        i % 64,
        i % 97,
        i % 1009,
        u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i),
        1_717_592_400_000_000u64 + i * 37,
    );
    // `,"pad":""` and the closing brace take 11 bytes: pad to `bytes`
    // where there is room (ops with long numbers may already be longer).
    if let Some(pad) = bytes.checked_sub(s.len() + 12).filter(|&pad| pad > 0) {
        s.push_str(&format!(r#","pad":"{}""#, "x".repeat(pad.min(1 << 24))));
    }
    s.push('}');
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::op;

    #[test]
    fn ops_are_json_of_about_the_size_asked_for() {
        for i in [0, 1, 1023, 1 << 20, 5_000_000, 1 << 40] {
            for bytes in [0, 100, 200, 1000] {
                let op = op(i, bytes);
                serde_json::from_slice::<serde::de::IgnoredAny>(&op).expect("an op is JSON");
                assert!(op.len() <= bytes.max(250), "op {i} of {} bytes", op.len());
                if bytes >= 250 {
                    assert!(op.len() + 12 >= bytes, "op {i} padded to {}", op.len());
                }
            }
        }
    }
}
