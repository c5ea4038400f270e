//! The send-time marker publishers put inside a message's payload: `#T` and 20 decimal
//! digits of CLOCK_MONOTONIC nanoseconds. It survives JSON string escaping unchanged, so
//! a receiver finds it with a byte search in the frame's payload, with no JSON parsing.

pub const MARKER_LEN: usize = 22;

/// A payload of `len` bytes (at least the marker): marker, then `x` padding.
pub fn payload(sent_ns: u64, len: usize) -> String {
    let mut s = format!("#T{sent_ns:020}");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// The send time in the first marker of `hay`, if any.
pub fn find(hay: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == b'#') {
        let at = from + p;
        if let Some(digits) = hay.get(at + 2..at + MARKER_LEN) {
            if hay[at + 1] == b'T' && digits.iter().all(u8::is_ascii_digit) {
                return Some(digits.iter().fold(0u64, |v, d| {
                    v.wrapping_mul(10).wrapping_add((d - b'0') as u64)
                }));
            }
        } else {
            return None;
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_inside_a_push_frame() {
        let p = payload(1_234_567_890_123, 64);
        assert_eq!(p.len(), 64);
        let frame = format!(r#"{{"messageId":"ab#","code":0,"msg":"","data":"{p}"}}"#);
        assert_eq!(find(frame.as_bytes()), Some(1_234_567_890_123));
        assert_eq!(find(b"#T123"), None);
        assert_eq!(find(b"no marker here"), None);
        assert_eq!(payload(5, 3).len(), MARKER_LEN);
    }
}
