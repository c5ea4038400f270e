//! JSON text written straight into byte buffers, with its exact length
//! known before a byte is written.
//!
//! Every frame a client receives and every API answer is a short JSON object
//! of fixed shape. Describing it as a list of [`Part`]s lets the writer size
//! its buffer once (a push frame is one allocation, shared by all its
//! recipients) and escape strings exactly as serde_json does, without
//! building a `serde_json::Value` first. `data` fields are embedded as the
//! caller's raw JSON text, so a string stays a string.

use bytes::BufMut;

/// A piece of a JSON text whose encoded length is known before writing.
#[derive(Clone, Copy)]
pub enum Part<'a> {
    /// Written as is (literals, numbers, raw JSON).
    Raw(&'a [u8]),
    /// Written as a quoted, escaped JSON string.
    Str(&'a [u8]),
    Seq(&'a [Part<'a>]),
}

impl Part<'_> {
    /// Bytes this part takes when written.
    pub fn len(self) -> usize {
        match self {
            Part::Raw(raw) => raw.len(),
            Part::Str(text) => 2 + text.iter().map(|&b| escaped_len(b)).sum::<usize>(),
            Part::Seq(parts) => parts.iter().map(|p| p.len()).sum(),
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    pub fn put<B: BufMut>(self, out: &mut B) {
        match self {
            Part::Raw(raw) => out.put_slice(raw),
            Part::Str(text) => put_json_str(out, text),
            Part::Seq(parts) => parts.iter().for_each(|p| p.put(out)),
        }
    }
}

/// `payload` in one exactly sized vector.
pub fn to_vec(payload: Part) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    payload.put(&mut out);
    out
}

/// Hands `{"code":…,"msg":…,"data":…}` — the shape of every API answer and
/// of the welcome frame — to `finish`.
pub fn with_envelope<R>(code: i64, msg: &str, data: Part, finish: impl FnOnce(Part) -> R) -> R {
    let code = Int::new(code);
    let parts = [
        Part::Raw(b"{\"code\":"),
        Part::Raw(code.as_bytes()),
        Part::Raw(b",\"msg\":"),
        Part::Str(msg.as_bytes()),
        Part::Raw(b",\"data\":"),
        data,
        Part::Raw(b"}"),
    ];
    finish(Part::Seq(&parts))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `value` as 16 lowercase hex digits.
pub fn hex16(value: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX[(value >> (60 - 4 * i) & 0xf) as usize];
    }
    out
}

/// An `i64` in decimal, formatted on the stack.
pub struct Int {
    digits: [u8; 20],
    start: usize,
}

impl Int {
    pub fn new(value: i64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = value.unsigned_abs();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if value < 0 {
            start -= 1;
            digits[start] = b'-';
        }
        Int { digits, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// serde_json's short escape for `b`, if it has one.
fn short_escape(b: u8) -> Option<u8> {
    match b {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        _ => None,
    }
}

/// Bytes `b` takes inside a JSON string: 1, 2 (`\n`) or 6 (`\u001f`).
fn escaped_len(b: u8) -> usize {
    match (short_escape(b), b < 0x20) {
        (Some(_), _) => 2,
        (None, true) => 6,
        (None, false) => 1,
    }
}

/// `text` (UTF-8) as a quoted JSON string; unescaped runs are copied whole.
fn put_json_str<B: BufMut>(out: &mut B, text: &[u8]) {
    out.put_u8(b'"');
    let mut run = 0;
    for (i, &b) in text.iter().enumerate() {
        if escaped_len(b) == 1 {
            continue;
        }
        out.put_slice(&text[run..i]);
        match short_escape(b) {
            Some(c) => out.put_slice(&[b'\\', c]),
            None => out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        run = i + 1;
    }
    out.put_slice(&text[run..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        samples.extend(["", "plain", "é\u{80}\u{2028}🎉", "a\"b\\c\nd\u{1}e"].map(String::from));
        for s in samples {
            let mut out = Vec::new();
            put_json_str(&mut out, s.as_bytes());
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
            assert_eq!(Part::Str(s.as_bytes()).len(), out.len(), "{s:?}");
        }
    }

    #[test]
    fn integers_and_hex() {
        for v in [i64::MIN, -1, 0, 7, i64::MAX] {
            assert_eq!(Int::new(v).as_bytes(), v.to_string().as_bytes());
        }
        assert_eq!(&hex16(0xab), b"00000000000000ab");
    }

    #[test]
    fn envelopes_are_sized_exactly() {
        let nasty = "\n\"\u{0}\u{1f}é🎉\\";
        for code in [i64::MIN, 0, 12] {
            let out = with_envelope(code, nasty, Part::Raw(b"{}"), |p| (p.len(), to_vec(p)));
            assert_eq!(out.0, out.1.len());
            let v: serde_json::Value = serde_json::from_slice(&out.1).unwrap();
            assert_eq!(
                (v["code"].as_i64(), v["msg"].as_str()),
                (Some(code), Some(nasty))
            );
        }
    }
}
