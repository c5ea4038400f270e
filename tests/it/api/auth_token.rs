//! Token mode (docs/api.md §2, §4, §5): `/api/register` needs `AdminToken` and returns a
//! 32-hex secret; API calls need the system's `Token`; connect tokens
//! (`base64url(payload).base64url(HMAC-SHA256(secret, payload))`) in `optional` mode
//! (anonymous allowed; bad / expired / foreign tokens refused with `token无效` + 1008;
//! a valid one binds its userId) and `required` mode; open mode ignores `token`.

use crate::support::{
    api::{expect_err, expect_ok},
    node::Node,
    now_unix,
    ws::Client,
    SYS_A, WAIT,
};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub(crate) const ADMIN: &str = "admin-secret-for-tests";

fn token_mode(extra: &str) -> Node {
    Node::start(&format!(
        "[api]\nauth = \"token\"\nadmin_token = \"{ADMIN}\"\nsystems = []\n{extra}"
    ))
}

/// Registers `sys` with the admin token; returns its secret.
fn register(node: &Node, sys: &str) -> String {
    let d = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", ADMIN)],
        &json!({ "systemId": sys }).to_string(),
    ));
    let token = d["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token-mode register data without token: {d}"))
        .to_string();
    assert!(
        token.len() == 32
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "secret is not 32 lowercase hex: {token:?}"
    );
    token
}

pub(crate) fn tcall(node: &Node, sys: &str, secret: &str, path: &str, body: Value) -> Value {
    expect_ok(node.api_with_headers(
        path,
        &[("SystemId", sys), ("Token", secret)],
        &body.to_string(),
    ))
}

pub(crate) fn sign(secret: &str, payload: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

/// A connect token for `user_id` expiring at `exp` (unix seconds), signed with `secret`.
pub(crate) fn connect_token(secret: &str, user_id: &str, exp: u64) -> String {
    let payload = json!({"userId": user_id, "exp": exp}).to_string();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(sign(secret, payload.as_bytes()))
    )
}

pub(crate) fn expect_token_refusal(node: &Node, path: &str) {
    let mut c = Client {
        client_id: String::new(),
        socket: node.ws_connect(path),
    };
    let f = c.expect_json(WAIT);
    assert_eq!(
        f,
        json!({"messageId": "", "sendUserId": "", "code": -1001, "msg": "token无效", "data": []}),
        "refusal on {path}"
    );
    assert_eq!(c.expect_close(WAIT), 1008, "refusal close code on {path}");
}

pub(crate) fn ws_path(sys: &str, token: &str) -> String {
    format!("/ws?systemId={sys}&token={token}")
}

#[test]
fn register_needs_the_admin_token_and_returns_a_secret() {
    let node = token_mode("");
    let body = "{\"systemId\":\"t1\"}";
    expect_err(node.api("/api/register", None, body), 401, "token无效");
    // The admin token is checked before required fields.
    expect_err(node.api("/api/register", None, "{}"), 401, "token无效");
    expect_err(
        node.api_with_headers("/api/register", &[("AdminToken", "wrong")], body),
        401,
        "token无效",
    );
    expect_err(
        node.api_with_headers("/api/register", &[("AdminToken", "")], body),
        401,
        "token无效",
    );
    // Header names are case-insensitive.
    let d = expect_ok(node.api_with_headers("/api/register", &[("admintoken", ADMIN)], body));
    let s1 = d["token"].as_str().unwrap().to_string();
    assert_eq!(s1.len(), 32, "{d}");
    let s2 = register(&node, "t2");
    assert_ne!(s1, s2, "two systems got the same secret");

    expect_err(
        node.api_with_headers("/api/register", &[("AdminToken", ADMIN)], body),
        200,
        "该系统ID已被注册",
    );
    // A webhookUrl is accepted in token mode.
    let d = expect_ok(node.api_with_headers(
        "/api/register",
        &[("AdminToken", ADMIN)],
        "{\"systemId\":\"hooked\",\"webhookUrl\":\"http://127.0.0.1:9/hook\"}",
    ));
    assert!(d["token"].is_string(), "{d}");
}

#[test]
fn api_calls_need_the_system_token() {
    let node = token_mode("");
    let s1 = register(&node, "t1");
    let s2 = register(&node, "t2");
    let path = "/api/get_group_list";
    expect_err(node.api(path, Some("t1"), "{}"), 401, "token无效");
    for bad in ["", "wrong", &s2, &s1.to_uppercase(), &s1[..31]] {
        expect_err(
            node.api_with_headers(path, &[("SystemId", "t1"), ("Token", bad)], "{}"),
            401,
            "token无效",
        );
    }
    let d = tcall(&node, "t1", &s1, path, json!({}));
    assert_eq!(d["count"], json!(0));
    let d = expect_ok(node.api_with_headers(path, &[("systemid", "t1"), ("token", &s1)], "{}"));
    assert_eq!(d["count"], json!(0));

    // SystemId is still checked first; the token check comes before required fields.
    expect_err(
        node.api_with_headers(path, &[("SystemId", "nope"), ("Token", &s1)], "{}"),
        200,
        "系统ID无效",
    );
    expect_err(
        node.api_with_headers(
            "/api/send_to_client",
            &[("SystemId", "t1"), ("Token", "wrong")],
            "{}",
        ),
        401,
        "token无效",
    );

    // The whole flow works with the token: connect, push, receive.
    let mut c = node.ws("t1");
    let d = tcall(
        &node,
        "t1",
        &s1,
        "/api/send_to_client",
        json!({"clientId": c.client_id, "msg": "with token"}),
    );
    assert_eq!(d["online"], json!(true));
    assert_eq!(c.expect_json(WAIT)["msg"], json!("with token"));
}

#[test]
fn connect_tokens_in_optional_mode() {
    let node = token_mode("");
    let secret = register(&node, "t1");
    let other_secret = register(&node, "t2");
    let exp = now_unix() + 120;

    // No token: anonymous.
    let anon = node.ws("t1");
    let i = tcall(
        &node,
        "t1",
        &secret,
        "/api/get_client_info",
        json!({"clientId": anon.client_id}),
    );
    assert_eq!(i["userId"], json!(""), "{i}");

    // A valid token binds its userId.
    let mut alice =
        Client::welcome(node.ws_connect(&ws_path("t1", &connect_token(&secret, "alice", exp))));
    let i = tcall(
        &node,
        "t1",
        &secret,
        "/api/get_client_info",
        json!({"clientId": alice.client_id}),
    );
    assert_eq!(i["userId"], json!("alice"), "{i}");
    let d = tcall(
        &node,
        "t1",
        &secret,
        "/api/send_to_user",
        json!({"userId": "alice", "msg": "hi alice"}),
    );
    assert_eq!(d["online"], json!(1), "{d}");
    assert_eq!(alice.expect_json(WAIT)["msg"], json!("hi alice"));

    // Padding is accepted.
    let payload = json!({"userId": "bob", "exp": exp}).to_string();
    let padded = format!(
        "{}.{}",
        URL_SAFE.encode(&payload),
        URL_SAFE.encode(sign(&secret, payload.as_bytes()))
    );
    assert!(
        padded.contains('='),
        "test token should carry padding: {padded}"
    );
    let bob = Client::welcome(node.ws_connect(&ws_path("t1", &padded)));
    let i = tcall(
        &node,
        "t1",
        &secret,
        "/api/get_client_info",
        json!({"clientId": bob.client_id}),
    );
    assert_eq!(i["userId"], json!("bob"), "{i}");

    // Refused: expired, signed with another system's secret, tampered, garbage.
    expect_token_refusal(
        &node,
        &ws_path("t1", &connect_token(&secret, "late", now_unix() - 30)),
    );
    expect_token_refusal(
        &node,
        &ws_path("t1", &connect_token(&other_secret, "alice", exp)),
    );
    let good = connect_token(&secret, "alice", exp);
    let sig = good.split('.').nth(1).unwrap();
    let forged_payload =
        URL_SAFE_NO_PAD.encode(json!({"userId": "mallory", "exp": exp}).to_string());
    expect_token_refusal(&node, &ws_path("t1", &format!("{forged_payload}.{sig}")));
    expect_token_refusal(&node, &ws_path("t1", "garbage"));
    expect_token_refusal(&node, &ws_path("t1", "a.b"));
    let no_sig = good.split('.').next().unwrap().to_string();
    expect_token_refusal(&node, &ws_path("t1", &no_sig));

    // The refused connections left nothing behind: mallory is not online.
    let d = tcall(
        &node,
        "t1",
        &secret,
        "/api/send_to_user",
        json!({"userId": "mallory"}),
    );
    assert_eq!(d["online"], json!(0), "{d}");
}

#[test]
fn connect_tokens_in_required_mode() {
    let node = token_mode("connect_token = \"required\"\n");
    let secret = register(&node, "t1");
    expect_token_refusal(&node, "/ws?systemId=t1");
    expect_token_refusal(&node, &ws_path("t1", "garbage"));
    expect_token_refusal(
        &node,
        &ws_path("t1", &connect_token(&secret, "u", now_unix() - 30)),
    );
    let c = Client::welcome(node.ws_connect(&ws_path(
        "t1",
        &connect_token(&secret, "carol", now_unix() + 60),
    )));
    let i = tcall(
        &node,
        "t1",
        &secret,
        "/api/get_client_info",
        json!({"clientId": c.client_id}),
    );
    assert_eq!(i["userId"], json!("carol"), "{i}");
    // The systemId check still comes first.
    let mut r = Client {
        client_id: String::new(),
        socket: node.ws_connect("/ws?systemId=nope"),
    };
    let f = r.expect_json(WAIT);
    assert_eq!(f["code"], json!(-1001), "{f}");
    assert_eq!(f["msg"], json!("系统ID无效"), "{f}");
}

/// A connect token whose `exp` lies beyond `api.connect_token_max_ttl` (default 24 h)
/// is refused — `exp` = 2^64−1 above all — and so is one whose userId the API would
/// refuse (docs/api.md §2, §7.1); `"0s"` lifts the limit.
#[test]
fn connect_tokens_beyond_the_max_ttl_or_with_a_bad_user_id_are_refused() {
    let node = token_mode("");
    let secret = register(&node, "t1");
    let now = now_unix();
    expect_token_refusal(
        &node,
        &ws_path("t1", &connect_token(&secret, "eve", u64::MAX)),
    );
    expect_token_refusal(
        &node,
        &ws_path("t1", &connect_token(&secret, "eve", now + 2 * 86_400)),
    );
    for bad in ["a\nb", "a\u{85}b", "admin\u{202e}", "x\u{2028}"] {
        expect_token_refusal(
            &node,
            &ws_path("t1", &connect_token(&secret, bad, now + 60)),
        );
    }
    expect_token_refusal(
        &node,
        &ws_path("t1", &connect_token(&secret, &"u".repeat(1025), now + 60)),
    );
    // Within the limit, with a userId the API takes: admitted, the userId bound.
    let day = Client::welcome(node.ws_connect(&ws_path(
        "t1",
        &connect_token(&secret, "用户-1", now + 86_000),
    )));
    let i = tcall(
        &node,
        "t1",
        &secret,
        "/api/get_client_info",
        json!({"clientId": day.client_id}),
    );
    assert_eq!(i["userId"], json!("用户-1"), "{i}");
    // Nobody got in as eve.
    let d = tcall(
        &node,
        "t1",
        &secret,
        "/api/send_to_user",
        json!({"userId": "eve"}),
    );
    assert_eq!(d["online"], json!(0), "{d}");

    // A shorter limit, and none.
    let hour = token_mode("connect_token_max_ttl = \"1h\"\n");
    let secret = register(&hour, "t1");
    let two_hours = connect_token(&secret, "eve", now_unix() + 7_200);
    expect_token_refusal(&hour, &ws_path("t1", &two_hours));
    let unbounded = token_mode("connect_token_max_ttl = \"0s\"\n");
    let secret = register(&unbounded, "t1");
    let forever = connect_token(&secret, "eve", u64::MAX);
    let c = Client::welcome(unbounded.ws_connect(&ws_path("t1", &forever)));
    let i = tcall(
        &unbounded,
        "t1",
        &secret,
        "/api/get_client_info",
        json!({"clientId": c.client_id}),
    );
    assert_eq!(i["userId"], json!("eve"), "{i}");
}

#[test]
fn open_mode_ignores_the_token_parameter() {
    let node = Node::start("");
    let c = Client::welcome(node.ws_connect(&format!("/ws?systemId={SYS_A}&token=garbage")));
    assert!(node.is_online(SYS_A, &c.client_id));
    // And API calls need no Token header.
    node.call(SYS_A, "/api/get_group_list", json!({}));
}

/// A system made in open mode has no secret. In token mode it must not be reachable with
/// an empty key: the node gives it a secret at start (written to `systems.json`, mode
/// 0600, its id logged) and connect tokens signed with an empty key are refused.
#[test]
fn a_system_from_open_mode_gets_a_secret_and_empty_keys_never_verify() {
    let mut node = Node::start("[api]\nsystems = [\"legacy\"]\n");
    node.restart_with(&format!(
        "[api]\nauth = \"token\"\nadmin_token = \"{ADMIN}\"\nsystems = [\"legacy\"]\n"
    ));
    assert!(
        node.log().contains("legacy") && node.log().contains("had no secret"),
        "the new secret is not reported:\n{}",
        node.log()
    );
    let file = node.data_dir().join("systems.json");
    let mode = std::fs::metadata(&file)
        .expect("systems.json")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "systems.json must be readable by its owner only"
    );
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let secret = stored["systems"]["legacy"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret stored: {stored}"))
        .to_string();
    assert_eq!(secret.len(), 32, "{secret}");
    assert!(
        !node.log().contains(&secret),
        "the secret must never be logged"
    );

    let exp = now_unix() + 600;
    expect_token_refusal(
        &node,
        &ws_path("legacy", &connect_token("", "mallory", exp)),
    );
    expect_err(
        node.api_with_headers(
            "/api/get_group_list",
            &[("SystemId", "legacy"), ("Token", "")],
            "{}",
        ),
        401,
        "token无效",
    );
    let d = tcall(&node, "legacy", &secret, "/api/get_group_list", json!({}));
    assert_eq!(d["count"], json!(0));
    let path = ws_path("legacy", &connect_token(&secret, "alice", exp));
    let c = Client::welcome(node.ws_connect(&path));
    let info = tcall(
        &node,
        "legacy",
        &secret,
        "/api/get_client_info",
        json!({"clientId": c.client_id}),
    );
    assert_eq!(info["userId"], json!("alice"));
}

/// Token mode: `/console/stats` answers the admin (with member addresses) or the holder
/// of a system's token (without them), and nobody else.
#[test]
fn console_stats_need_a_token_in_token_mode() {
    let node = token_mode("[console]\nenabled = true\n");
    let secret = register(&node, "watched");
    let get = |headers: &[(&str, &str)]| {
        let mut http = node.http();
        let head: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        http.send_raw(format!("GET /console/stats HTTP/1.1\r\nHost: x\r\n{head}\r\n").as_bytes());
        http.read_response(WAIT).expect("an answer")
    };
    let anonymous = get(&[]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert_eq!(anonymous.json()["msg"], json!("token无效"));
    let wrong = get(&[
        ("SystemId", "watched"),
        ("Token", "0123456789abcdef0123456789abcdef"),
    ]);
    assert_eq!(wrong.status, 401);
    let admin = get(&[("AdminToken", ADMIN)]);
    assert_eq!(admin.status, 200, "{}", admin.text());
    assert!(admin.json()["cluster"]["members"][0]
        .get("addr")
        .is_some_and(|a| !a.is_null()));
    let system = get(&[("SystemId", "watched"), ("Token", &secret)]);
    assert_eq!(system.status, 200, "{}", system.text());
    assert_eq!(system.json()["cluster"]["members"][0]["addr"], Value::Null);
}
