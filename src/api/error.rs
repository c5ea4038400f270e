//! The one catalogue of API failures (docs/api.md §5).
//!
//! Every failure the HTTP API or the WebSocket ack can report is a variant of
//! [`ApiError`], so the HTTP status and the user-visible text are decided in
//! one place and cannot drift apart between routes. The Chinese texts are the
//! contract (the first five are byte-for-byte those of go-websocket, which the
//! PHP SDK and its users match on); the English ones are for `api.lang = "en"`.

use std::borrow::Cow;

use crate::config::Lang;

/// A request field named in an error message, spelled as docs/api.md §5 prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SystemId,
    ClientId,
    ClientIds,
    GroupName,
    UserId,
    Extend,
    SendUserId,
    Data,
    Msg,
    WebhookUrl,
}

impl Field {
    /// The name used inside messages such as `GroupName为必填字段`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::SystemId => "SystemId",
            Field::ClientId => "ClientId",
            Field::ClientIds => "ClientIds",
            Field::GroupName => "GroupName",
            Field::UserId => "UserId",
            Field::Extend => "Extend",
            Field::SendUserId => "SendUserId",
            Field::Data => "Data",
            Field::Msg => "Msg",
            Field::WebhookUrl => "WebhookUrl",
        }
    }
}

/// Every failure the API reports; `code` is always -1 in the envelope.
///
/// `Display` gives the English text (for logs); clients get
/// [`ApiError::message`] in the configured language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed,
    BodyTooLarge,
    BadRequest,
    SystemIdRequired,
    SystemIdInvalid,
    SystemIdTaken,
    FieldRequired(Field),
    StoreUnavailable,
    FieldTooLong(Field),
    InvalidClientId,
    ClientOffline,
    BadToken,
    Busy,
    WebhookUrlForbidden,
    ClientSendForbidden,
    ClientSendRate,
    TooManyGroups,
    TooManySystems,
    /// A history read of a group no `history.groups` rule covers.
    NoHistory,
}

/// The limits of docs/api.md §7 an API answer can report, each counted in
/// `shardcast_limit_hits_total{limit}` under its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxMessage,
    MaxGroupsPerClient,
    MaxSystems,
    MaxHttpConnections,
    MaxPendingAnswers,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::MaxMessage,
        Limit::MaxGroupsPerClient,
        Limit::MaxSystems,
        Limit::MaxHttpConnections,
        Limit::MaxPendingAnswers,
    ];

    /// The config key, which is also the metric's label.
    pub fn key(self) -> &'static str {
        match self {
            Limit::MaxMessage => "api.max_message",
            Limit::MaxGroupsPerClient => "api.max_groups_per_client",
            Limit::MaxSystems => "api.max_systems",
            Limit::MaxHttpConnections => "api.max_http_connections",
            Limit::MaxPendingAnswers => "api.max_pending_answers",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(Lang::En))
    }
}

impl ApiError {
    /// The §7 limit this answer reports, if any.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            ApiError::FieldTooLong(Field::Data | Field::Msg) => Some(Limit::MaxMessage),
            ApiError::TooManyGroups => Some(Limit::MaxGroupsPerClient),
            ApiError::TooManySystems => Some(Limit::MaxSystems),
            _ => None,
        }
    }

    /// HTTP status of the answer (§5); the envelope's `code` is -1 regardless.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::BodyTooLarge => 413,
            ApiError::BadRequest => 400,
            ApiError::BadToken => 401,
            ApiError::StoreUnavailable | ApiError::Busy => 503,
            _ => 200,
        }
    }

    /// The `msg` of the error envelope in `lang`.
    pub fn message(&self, lang: Lang) -> Cow<'static, str> {
        let (zh, en) = match self {
            ApiError::FieldRequired(f) => return f.text(lang, "为必填字段", " is required"),
            ApiError::FieldTooLong(f) => return f.text(lang, "超出限制", " exceeds its limit"),
            ApiError::NotFound => ("接口不存在", "no such endpoint"),
            ApiError::MethodNotAllowed => ("请求方法不允许", "method not allowed"),
            ApiError::BodyTooLarge => ("请求体过大", "request body too large"),
            ApiError::BadRequest => ("请求参数格式错误", "malformed request body"),
            ApiError::SystemIdRequired => ("系统ID不能为空", "SystemId must not be empty"),
            ApiError::SystemIdInvalid => ("系统ID无效", "invalid SystemId"),
            ApiError::SystemIdTaken => ("该系统ID已被注册", "SystemId is already registered"),
            ApiError::StoreUnavailable => ("etcd服务器错误", "cluster store unavailable"),
            ApiError::InvalidClientId => ("无效的clientId", "invalid clientId"),
            ApiError::ClientOffline => ("客户端不在线", "client is offline"),
            ApiError::BadToken => ("token无效", "invalid token"),
            ApiError::Busy => ("服务繁忙", "service busy"),
            ApiError::WebhookUrlForbidden => ("无权设置WebhookUrl", "webhookUrl may not be set"),
            ApiError::ClientSendForbidden => ("客户端无权发送", "client may not send"),
            ApiError::ClientSendRate => ("发送过于频繁", "sending too fast"),
            ApiError::TooManyGroups => ("分组数量超出限制", "too many groups"),
            ApiError::TooManySystems => ("系统数量超出限制", "too many systems"),
            ApiError::NoHistory => ("该分组未开启历史", "group has no history"),
        };
        Cow::Borrowed(pick(lang, zh, en))
    }
}

impl Field {
    /// `<Field><suffix>` in `lang`, e.g. `GroupName为必填字段`.
    fn text(self, lang: Lang, zh: &str, en: &str) -> Cow<'static, str> {
        Cow::Owned([self.as_str(), pick(lang, zh, en)].concat())
    }
}

fn pick<'a>(lang: Lang, zh: &'a str, en: &'a str) -> &'a str {
    match lang {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [(Field, &str); 10] = [
        (Field::SystemId, "SystemId"),
        (Field::ClientId, "ClientId"),
        (Field::ClientIds, "ClientIds"),
        (Field::GroupName, "GroupName"),
        (Field::UserId, "UserId"),
        (Field::Extend, "Extend"),
        (Field::SendUserId, "SendUserId"),
        (Field::Data, "Data"),
        (Field::Msg, "Msg"),
        (Field::WebhookUrl, "WebhookUrl"),
    ];

    /// Every variant with its §5 status and exact zh text.
    fn catalogue() -> Vec<(ApiError, u16, String)> {
        let mut all = vec![
            (ApiError::NotFound, 404, "接口不存在".to_owned()),
            (ApiError::MethodNotAllowed, 405, "请求方法不允许".to_owned()),
            (ApiError::BodyTooLarge, 413, "请求体过大".to_owned()),
            (ApiError::BadRequest, 400, "请求参数格式错误".to_owned()),
            (ApiError::SystemIdRequired, 200, "系统ID不能为空".to_owned()),
            (ApiError::SystemIdInvalid, 200, "系统ID无效".to_owned()),
            (ApiError::SystemIdTaken, 200, "该系统ID已被注册".to_owned()),
            (ApiError::StoreUnavailable, 503, "etcd服务器错误".to_owned()),
            (ApiError::InvalidClientId, 200, "无效的clientId".to_owned()),
            (ApiError::ClientOffline, 200, "客户端不在线".to_owned()),
            (ApiError::BadToken, 401, "token无效".to_owned()),
            (ApiError::Busy, 503, "服务繁忙".to_owned()),
            (
                ApiError::WebhookUrlForbidden,
                200,
                "无权设置WebhookUrl".to_owned(),
            ),
            (
                ApiError::ClientSendForbidden,
                200,
                "客户端无权发送".to_owned(),
            ),
            (ApiError::ClientSendRate, 200, "发送过于频繁".to_owned()),
            (ApiError::TooManyGroups, 200, "分组数量超出限制".to_owned()),
            (ApiError::TooManySystems, 200, "系统数量超出限制".to_owned()),
            (ApiError::NoHistory, 200, "该分组未开启历史".to_owned()),
        ];
        for (field, name) in FIELDS {
            all.push((
                ApiError::FieldRequired(field),
                200,
                format!("{name}为必填字段"),
            ));
            all.push((
                ApiError::FieldTooLong(field),
                200,
                format!("{name}超出限制"),
            ));
        }
        all
    }

    #[test]
    fn field_spellings() {
        for (field, name) in FIELDS {
            assert_eq!(field.as_str(), name);
        }
    }

    #[test]
    fn status_and_zh_text_match_the_contract() {
        for (err, status, zh) in catalogue() {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.message(Lang::Zh), zh, "{err:?}");
        }
    }

    #[test]
    fn english_texts_are_present_and_distinct() {
        let all = catalogue();
        let mut seen = std::collections::HashSet::new();
        for (err, _, _) in &all {
            let en = err.message(Lang::En);
            assert!(!en.is_empty(), "{err:?}");
            assert!(en.is_ascii(), "{err:?}: {en}");
            assert!(seen.insert(en.into_owned()), "{err:?} shares its text");
        }
        assert_eq!(
            ApiError::FieldRequired(Field::GroupName).message(Lang::En),
            "GroupName is required"
        );
        assert_eq!(
            ApiError::FieldTooLong(Field::GroupName).message(Lang::En),
            "GroupName exceeds its limit"
        );
    }

    #[test]
    fn display_is_english() {
        assert_eq!(ApiError::ClientOffline.to_string(), "client is offline");
        assert_eq!(
            ApiError::FieldTooLong(Field::Data).to_string(),
            "Data exceeds its limit"
        );
    }
}
