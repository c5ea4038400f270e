//! `--payload-json BYTES`: a JSON body of exactly BYTES bytes that compresses as real
//! push payloads do — an order event with a customer, line items, prices, dates and a
//! note of words — instead of the marker and `x` filler (which deflates to almost
//! nothing and flatters every compressor). Made once per run from a fixed seed, so
//! every server gets the same body; each message differs only in its send-time marker,
//! the value of the first field (`"trace"`), where a receiver finds it by a byte
//! search in the (inflated) payload.

use std::fmt::Write as _;

use crate::marker::{self, MARKER_LEN};

const FIRST: &[&str] = &[
    "Maria", "Jonas", "Aiko", "Luca", "Sofia", "Mateo", "Ines", "Pavel", "Chloe", "Omar",
];
const LAST: &[&str] = &[
    "Keller", "Nakamura", "Rossi", "Novak", "Dubois", "Silva", "Jensen", "Haddad", "Moreau",
];
const ADJ: &[&str] = &[
    "wireless",
    "organic",
    "compact",
    "stainless",
    "leather",
    "ceramic",
    "foldable",
    "waterproof",
    "vintage",
    "ergonomic",
];
const NOUN: &[&str] = &[
    "headphones",
    "teapot",
    "backpack",
    "desk lamp",
    "water bottle",
    "notebook",
    "keyboard",
    "jacket",
    "frying pan",
    "phone case",
];
const CITY: &[&str] = &[
    "Berlin", "Lyon", "Porto", "Osaka", "Gdansk", "Aarhus", "Valencia", "Graz",
];
const WORDS: &[&str] = &[
    "please",
    "leave",
    "the",
    "parcel",
    "at",
    "front",
    "door",
    "ring",
    "twice",
    "if",
    "nobody",
    "answers",
    "call",
    "before",
    "delivery",
    "gift",
    "wrap",
    "with",
    "a",
    "card",
    "for",
    "birthday",
    "neighbour",
    "can",
    "accept",
    "back",
    "entrance",
    "after",
    "six",
];

/// Why no body of the asked size can be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--payload-json {0}: at least {MIN} bytes (the marker's field and a note)")]
pub struct TooSmall(pub usize);

/// The smallest body: `{"trace":"<marker>","note":""}`.
pub const MIN: usize = 22 + MARKER_LEN;

/// A JSON body of a fixed size with a send-time marker at a known place.
#[derive(Clone, Debug)]
pub struct JsonBody {
    text: String,
    /// Where the marker starts.
    marker_at: usize,
}

/// xorshift64*: the same sequence for a seed on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

impl JsonBody {
    /// The body of `size` bytes made from `seed`.
    pub fn new(size: usize, seed: u64) -> Result<JsonBody, TooSmall> {
        if size < MIN {
            return Err(TooSmall(size));
        }
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut text = String::from("{\"trace\":\"");
        let marker_at = text.len();
        text.push_str(&marker::payload(0, MARKER_LEN));
        text.push('"');
        // Fields in order while they fit, leaving room for `,"note":""}`.
        const CLOSE: usize = 11;
        let fits = |text: &str, field: &str| text.len() + field.len() + CLOSE <= size;
        let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
        let mut fields = vec![
            ",\"event\":\"order.updated\"".to_string(),
            format!(",\"id\":\"ord_{:08}\"", rng.below(100_000_000)),
            format!(
                ",\"at\":\"2026-12-{:02}T{:02}:{:02}:{:02}Z\"",
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            ),
            ",\"status\":\"shipped\"".to_string(),
            format!(
                ",\"customer\":{{\"id\":\"cus_{:05}\",\"name\":\"{first} {last}\",\"email\":\"{}.{}@example.com\",\"tier\":\"gold\"}}",
                rng.below(100_000),
                first.to_ascii_lowercase(),
                last.to_ascii_lowercase()
            ),
            format!(
                ",\"shipping\":{{\"carrier\":\"DHL\",\"tracking\":\"JD01{:010}\",\"city\":\"{}\",\"eta\":\"2026-12-{:02}\"}}",
                rng.below(10_000_000_000),
                rng.pick(CITY),
                1 + rng.below(28)
            ),
        ];
        let mut total_cents = 0;
        let mut items = String::new();
        loop {
            let cents = 199 + rng.below(20_000);
            let item = format!(
                "{}{{\"sku\":\"SKU-{:05}\",\"name\":\"{} {}\",\"qty\":{},\"price\":{}.{:02}}}",
                if items.is_empty() { "" } else { "," },
                rng.below(100_000),
                rng.pick(ADJ),
                rng.pick(NOUN),
                1 + rng.below(4),
                cents / 100,
                cents % 100
            );
            // The items, the total and the currency after them must fit too.
            let with = format!(
                ",\"items\":[{items}{item}],\"total\":{total_cents:>9},\"currency\":\"EUR\""
            );
            let before: usize = fields.iter().map(String::len).sum();
            if text.len() + before + with.len() + CLOSE > size {
                break;
            }
            items.push_str(&item);
            total_cents += cents;
        }
        if !items.is_empty() {
            fields.push(format!(
                ",\"items\":[{items}],\"total\":{}.{:02},\"currency\":\"EUR\"",
                total_cents / 100,
                total_cents % 100
            ));
        }
        for field in fields {
            if fits(&text, &field) {
                text.push_str(&field);
            }
        }
        // The note fills the rest exactly: words, the last one cut.
        let room = size - text.len() - CLOSE;
        let mut note = String::new();
        while note.len() < room {
            if !note.is_empty() {
                note.push(' ');
            }
            let _ = write!(note, "{}", rng.pick(WORDS));
        }
        note.truncate(room);
        text.push_str(",\"note\":\"");
        text.push_str(&note);
        text.push_str("\"}");
        debug_assert_eq!(text.len(), size);
        Ok(JsonBody { text, marker_at })
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// The body stamped with `sent_ns`.
    pub fn text(&self, sent_ns: u64) -> String {
        let mut s = String::with_capacity(self.text.len());
        self.write(sent_ns, &mut s);
        s
    }

    /// Appends the body stamped with `sent_ns` to `out`.
    pub fn write(&self, sent_ns: u64, out: &mut String) {
        out.push_str(&self.text[..self.marker_at]);
        out.push_str(&marker::payload(sent_ns, MARKER_LEN));
        out.push_str(&self.text[self.marker_at + MARKER_LEN..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_exact_size_with_the_marker() {
        for size in [MIN, MIN + 1, 100, 101, 180, 256, 1000, 1024, 4096, 65_536] {
            let body = JsonBody::new(size, 1).unwrap();
            let text = body.text(1_234_567_890);
            assert_eq!(text.len(), size);
            assert_eq!(body.len(), size);
            let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert!(v.is_object());
            assert_eq!(marker::find(text.as_bytes()), Some(1_234_567_890));
            assert_eq!(v["trace"], format!("#T{:020}", 1_234_567_890u64));
        }
        assert_eq!(JsonBody::new(MIN - 1, 1).unwrap_err(), TooSmall(MIN - 1));
    }

    #[test]
    fn a_kilobyte_body_looks_like_an_order() {
        let text = JsonBody::new(1000, 1).unwrap().text(0);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "event", "id", "customer", "shipping", "items", "total", "note",
        ] {
            assert!(v.get(key).is_some(), "{key} in {text}");
        }
        assert!(
            v["items"].as_array().is_some_and(|a| a.len() >= 4),
            "{text}"
        );
        // Same seed, same body; another seed, another body.
        assert_eq!(
            JsonBody::new(1000, 1).unwrap().text(5),
            JsonBody::new(1000, 1).unwrap().text(5)
        );
        assert_ne!(
            JsonBody::new(1000, 1).unwrap().text(5),
            JsonBody::new(1000, 2).unwrap().text(5)
        );
    }

    #[test]
    fn it_compresses_like_json_not_like_filler() {
        use flate2::{Compress, Compression, FlushCompress};
        let ratio = |data: &[u8]| {
            let mut z = Compress::new(Compression::new(2), false);
            let mut out = Vec::with_capacity(data.len() + 64);
            z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
            data.len() as f64 / out.len() as f64
        };
        let json = ratio(JsonBody::new(1000, 1).unwrap().text(0).as_bytes());
        let filler = ratio(marker::payload(0, 1000).as_bytes());
        assert!((1.5..3.5).contains(&json), "JSON ratio {json:.2}");
        assert!(filler > 10.0, "filler ratio {filler:.2}");
    }
}
