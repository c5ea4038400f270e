//! The envelope of every API answer (docs/api.md §4):
//! `{"code":<int>,"msg":"<string>","data":<any>}`.

use super::error::ApiError;
use crate::config::Lang;
use crate::json::{to_vec, with_envelope, Part};

/// A success answer: `{"code":0,"msg":"success","data":<data_json>}`.
pub fn ok_envelope(data_json: &str) -> Vec<u8> {
    with_envelope(0, "success", Part::Raw(data_json.as_bytes()), to_vec)
}

/// A failure answer: `{"code":-1,"msg":<text in lang>,"data":[]}`.
pub fn error_envelope(err: &ApiError, lang: Lang) -> Vec<u8> {
    with_envelope(-1, &err.message(lang), Part::Raw(b"[]"), to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::Field;

    #[test]
    fn envelopes() {
        assert_eq!(
            ok_envelope("[]"),
            br#"{"code":0,"msg":"success","data":[]}"#
        );
        let ok = ok_envelope(r#"{"messageId":"00000000000000ff","online":true}"#);
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["data"]["online"], true);
        let zh = error_envelope(&ApiError::ClientOffline, Lang::Zh);
        assert_eq!(
            String::from_utf8(zh).unwrap(),
            r#"{"code":-1,"msg":"客户端不在线","data":[]}"#
        );
        let en = error_envelope(&ApiError::FieldRequired(Field::GroupName), Lang::En);
        assert_eq!(
            en,
            br#"{"code":-1,"msg":"GroupName is required","data":[]}"#
        );
    }
}
