//! shardcast's answer envelope (`{"code":0,"msg":…,"data":…}`, docs/api.md), checked
//! on the hot paths with a byte search instead of a JSON parse: every publish and bind
//! answer of a run, every ack a `chat` client gets. Its own module because the runs
//! (`api`, `fanout`) and the worker side (`setup`, `subscriber`) both need it.

/// The envelope's `code` is 0 (searched, not parsed: `"code":0` followed by , or }).
pub fn code_is_zero(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"code\":0";
    body.windows(KEY.len() + 1)
        .any(|w| &w[..KEY.len()] == KEY && matches!(w[KEY.len()], b',' | b'}' | b' '))
}

#[cfg(test)]
mod tests {
    use super::code_is_zero;

    #[test]
    fn code_zero() {
        assert!(code_is_zero(br#"{"code":0,"msg":"success"}"#));
        assert!(!code_is_zero(br#"{"code":-1,"msg":"x"}"#));
        assert!(!code_is_zero(br#"{"code":0"#));
        assert!(!code_is_zero(br#"{"code":01}"#));
    }
}
