//! Comparing presented secrets (`Token`, `AdminToken`) with the expected
//! ones, in constant time.

use subtle::ConstantTimeEq;

/// Constant-time comparison of a presented token with the expected one; an
/// empty expected value never matches.
pub fn secret_matches(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(p) if !expected.is_empty() => bool::from(p.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches(Some("abc"), "abc"));
        assert!(!secret_matches(Some("abd"), "abc"));
        assert!(!secret_matches(Some("ab"), "abc"));
        assert!(!secret_matches(None, "abc"));
        assert!(!secret_matches(Some(""), ""));
    }
}
