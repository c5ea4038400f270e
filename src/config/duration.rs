//! Durations in the configuration: strings such as `"500ms"`, `"25s"`,
//! `"2m"`, `"1h"`, `"3d"` (docs/api.md §6), read and written back.

use std::time::Duration;

/// Parses a duration written as a number and a unit: `500ms`, `25s`, `2m`,
/// `1h`, `3d`; the number may have a fraction (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected e.g. \"500ms\", \"25s\", \"2m\", \"1h\", \"3d\""
        )
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if let Ok(n) = number.parse::<u64>() {
        let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
        return Ok(Duration::from_millis(ms));
    }
    let n: f64 = number.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(n * unit_ms as f64 / 1000.0).map_err(|_| bad())
}

/// Writes a duration in the largest unit that represents it exactly.
fn format_duration(d: Duration) -> String {
    const MS: u128 = 1_000_000;
    let units = [
        (86_400_000 * MS, "d"),
        (3_600_000 * MS, "h"),
        (60_000 * MS, "m"),
        (1_000 * MS, "s"),
        (MS, "ms"),
    ];
    let nanos = d.as_nanos();
    match units.iter().find(|(size, _)| nanos % size == 0) {
        _ if nanos == 0 => "0s".to_string(),
        Some((size, unit)) => format!("{}{unit}", nanos / size),
        None => format!("{}s", d.as_secs_f64()),
    }
}

/// serde glue for `Duration` fields written as duration strings.
pub(super) mod duration_str {
    use std::fmt;
    use std::time::Duration;

    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(Visitor)
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration string such as \"500ms\", \"25s\" or \"2m\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn duration_parser() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("25s", secs(25)),
            ("2m", secs(120)),
            ("1h", secs(3600)),
            ("3d", secs(259_200)),
            ("0s", Duration::ZERO),
            ("1.5s", Duration::from_millis(1500)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        let bad = [
            "",
            "25",
            "s",
            "25x",
            "-1s",
            "+1s",
            "1 s",
            " 1s",
            "1.2.3s",
            "1e3s",
            "25S",
            "99999999999999999999d",
            "18446744073709551615d",
        ];
        for text in bad {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (secs(90), "90s"),
            (secs(120), "2m"),
            (secs(86_400), "1d"),
            (Duration::from_micros(1500), "0.0015s"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }
}
