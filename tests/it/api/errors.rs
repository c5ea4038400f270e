//! API errors (docs/api.md §5): every error row with its HTTP status and (Chinese) msg —
//! unknown path 404, method 405, body too large 413 (connection closed), bad JSON /
//! wrong field type 400, SystemId missing / invalid, required fields, limits, invalid
//! clientIds (garbage, truncated, altered, another system's), offline clients — the
//! precedence order between them, and `api.lang = "en"`.

use crate::support::{
    api::{expect_err, expect_ok, is_client_id_form},
    change_char,
    node::Node,
    QUIET, SYS_A, SYS_B, WAIT,
};
use serde_json::json;
use std::time::Duration;

/// Limits small enough to hit quickly.
const LIMITS: &str = "[api]\nmax_batch = 5\nmax_message = 1024\nmax_body = 8192\n";

#[test]
fn unknown_path_is_404() {
    let node = Node::start("");
    expect_err(
        node.api("/api/no_such_route", Some(SYS_A), "{}"),
        404,
        "接口不存在",
    );
    expect_err(node.api("/nope", None, "{}"), 404, "接口不存在");
    expect_err(
        node.api("/api/send_to_client/extra", Some(SYS_A), "{}"),
        404,
        "接口不存在",
    );
    let r = node.get("/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["msg"], json!("接口不存在"));
    // The console is off by default: `/` is an unknown path.
    let r = node.get("/");
    assert_eq!(r.status, 404, "GET / with the console disabled");
    assert_eq!(r.json()["msg"], json!("接口不存在"));
}

#[test]
fn wrong_method_is_405() {
    let node = Node::start("");
    let r = node.get("/api/send_to_client");
    assert_eq!(r.status, 405);
    expect_err((r.status, r.json()), 405, "请求方法不允许");
    let r = node
        .http()
        .request("PUT", "/api/send_to_group", &[("SystemId", SYS_A)], b"{}");
    expect_err((r.status, r.json()), 405, "请求方法不允许");
    let r = node.http().request("DELETE", "/api/register", &[], b"");
    expect_err((r.status, r.json()), 405, "请求方法不允许");
}

#[test]
fn body_over_max_body_is_413_and_the_connection_is_closed() {
    let node = Node::start(LIMITS);

    // Announced far over the limit, only a little of it sent: answered at once.
    let mut h = node.http();
    let mut req = format!(
        "POST /api/send_to_client HTTP/1.1\r\nHost: {}\r\nSystemId: {SYS_A}\r\n\
         Content-Length: 1000000\r\n\r\n",
        node.addr()
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b' ', 1000));
    h.send_raw(&req);
    let r = h
        .read_response(Duration::from_secs(5))
        .expect("a 413 before the body is complete");
    expect_err((r.status, r.json()), 413, "请求体过大");
    assert!(
        h.wait_closed(Duration::from_secs(3)),
        "connection must be closed after a 413"
    );

    // A complete body just over the limit.
    let mut h = node.http();
    let body = format!("{{\"clientId\":\"x\",\"data\":\"{}\"}}", "y".repeat(8200));
    let r = h.request(
        "POST",
        "/api/send_to_client",
        &[("SystemId", SYS_A)],
        body.as_bytes(),
    );
    expect_err((r.status, r.json()), 413, "请求体过大");
    assert!(h.wait_closed(Duration::from_secs(3)));

    // The node still serves.
    node.call(SYS_A, "/api/get_group_list", json!({}));
}

#[test]
fn invalid_json_is_400() {
    let node = Node::start("");
    for body in ["{not json", "{\"clientId\":\"", "[1,2", "nul", "{\"a\":1}}"] {
        expect_err(
            node.api("/api/send_to_client", Some(SYS_A), body),
            400,
            "请求参数格式错误",
        );
    }
}

#[test]
fn a_field_of_the_wrong_type_is_400() {
    let node = Node::start("");
    let c = node.ws(SYS_A);
    let cases = [
        ("/api/send_to_client", json!({"clientId": 123})),
        (
            "/api/send_to_client",
            json!({"clientId": c.client_id, "code": "7"}),
        ),
        (
            "/api/send_to_client",
            json!({"clientId": c.client_id, "msg": 5}),
        ),
        (
            "/api/send_to_client",
            json!({"clientId": c.client_id, "sendUserId": {}}),
        ),
        ("/api/send_to_clients", json!({"clientIds": c.client_id})),
        ("/api/send_to_clients", json!({"clientIds": [1, 2]})),
        ("/api/send_to_group", json!({"groupName": ["g"]})),
        ("/api/send_to_user", json!({"userId": 17})),
        (
            "/api/bind_to_group",
            json!({"clientId": c.client_id, "groupName": "g", "userId": 1}),
        ),
        (
            "/api/get_online_list",
            json!({"groupName": "g", "withInfo": "yes"}),
        ),
        ("/api/is_online", json!({"clientId": false})),
    ];
    for (path, body) in cases {
        expect_err(
            node.api(path, Some(SYS_A), &body.to_string()),
            400,
            "请求参数格式错误",
        );
    }
}

#[test]
fn system_id_header_missing_empty_or_unknown() {
    let node = Node::start("");
    let routes = [
        "/api/send_to_client",
        "/api/send_to_clients",
        "/api/send_to_group",
        "/api/send_to_user",
        "/api/send_to_system",
        "/api/bind_to_group",
        "/api/unbind_from_group",
        "/api/get_online_list",
        "/api/get_group_list",
        "/api/is_online",
        "/api/get_client_info",
        "/api/close_client",
    ];
    for route in routes {
        expect_err(node.api(route, None, "{}"), 200, "系统ID不能为空");
        expect_err(node.api(route, Some(""), "{}"), 200, "系统ID不能为空");
        expect_err(
            node.api(route, Some("no-such-system"), "{}"),
            200,
            "系统ID无效",
        );
    }
    // Header names are case-insensitive.
    let d = expect_ok(node.api_with_headers("/api/get_group_list", &[("systemid", SYS_A)], "{}"));
    assert_eq!(d["count"], json!(0));
    let d = expect_ok(node.api_with_headers("/api/get_group_list", &[("SYSTEMID", SYS_A)], "{}"));
    assert_eq!(d["count"], json!(0));
}

#[test]
fn required_fields_missing_or_empty() {
    let node = Node::start("");
    let c = node.ws(SYS_A);
    let id = c.client_id.as_str();
    let cases = [
        ("/api/send_to_client", json!({}), "ClientId为必填字段"),
        (
            "/api/send_to_client",
            json!({"clientId": ""}),
            "ClientId为必填字段",
        ),
        ("/api/send_to_clients", json!({}), "ClientIds为必填字段"),
        (
            "/api/send_to_clients",
            json!({"clientIds": []}),
            "ClientIds为必填字段",
        ),
        ("/api/send_to_group", json!({}), "GroupName为必填字段"),
        (
            "/api/send_to_group",
            json!({"groupName": ""}),
            "GroupName为必填字段",
        ),
        ("/api/send_to_user", json!({}), "UserId为必填字段"),
        (
            "/api/send_to_user",
            json!({"userId": ""}),
            "UserId为必填字段",
        ),
        (
            "/api/bind_to_group",
            json!({"groupName": "g"}),
            "ClientId为必填字段",
        ),
        (
            "/api/bind_to_group",
            json!({"clientId": id}),
            "GroupName为必填字段",
        ),
        (
            "/api/bind_to_group",
            json!({"clientId": id, "groupName": ""}),
            "GroupName为必填字段",
        ),
        (
            "/api/unbind_from_group",
            json!({"groupName": "g"}),
            "ClientId为必填字段",
        ),
        (
            "/api/unbind_from_group",
            json!({"clientId": id}),
            "GroupName为必填字段",
        ),
        ("/api/get_online_list", json!({}), "GroupName为必填字段"),
        ("/api/is_online", json!({}), "ClientId为必填字段"),
        (
            "/api/get_client_info",
            json!({"clientId": ""}),
            "ClientId为必填字段",
        ),
        ("/api/close_client", json!({}), "ClientId为必填字段"),
    ];
    for (path, body, msg) in cases {
        expect_err(node.api(path, Some(SYS_A), &body.to_string()), 200, msg);
    }
    // register needs no SystemId header, but a systemId in the body.
    expect_err(
        node.api("/api/register", None, "{}"),
        200,
        "SystemId为必填字段",
    );
    expect_err(
        node.api("/api/register", None, "{\"systemId\":\"\"}"),
        200,
        "SystemId为必填字段",
    );
}

#[test]
fn fields_over_their_limits() {
    let node = Node::start(LIMITS);
    let mut c = node.ws(SYS_A);
    let id = c.client_id.clone();

    // ids ≤ 128 bytes: 129 is over the limit, 128 is merely invalid.
    let long_id = "a".repeat(129);
    for path in [
        "/api/send_to_client",
        "/api/is_online",
        "/api/get_client_info",
    ] {
        node.call_err(
            SYS_A,
            path,
            json!({ "clientId": long_id }),
            200,
            "ClientId超出限制",
        );
    }
    node.call_err(
        SYS_A,
        "/api/send_to_client",
        json!({"clientId": "a".repeat(128)}),
        200,
        "无效的clientId",
    );
    node.call_err(
        SYS_A,
        "/api/is_online",
        json!({"clientId": "abc\u{1}def"}),
        200,
        "ClientId超出限制",
    );

    // names ≤ 256 bytes, no control characters.
    let g256 = "g".repeat(256);
    node.bind(SYS_A, &id, &g256, "", "");
    let g257 = "g".repeat(257);
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": g257}),
        200,
        "GroupName超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/send_to_group",
        json!({ "groupName": g257 }),
        200,
        "GroupName超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/get_online_list",
        json!({ "groupName": g257 }),
        200,
        "GroupName超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": "bad\nname"}),
        200,
        "GroupName超出限制",
    );

    // userId / extend ≤ 1024 bytes.
    node.bind(SYS_A, &id, "g", &"u".repeat(1024), &"e".repeat(1024));
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": "g", "userId": "u".repeat(1025)}),
        200,
        "UserId超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": id, "groupName": "g", "extend": "e".repeat(1025)}),
        200,
        "Extend超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/send_to_user",
        json!({"userId": "u".repeat(1025)}),
        200,
        "UserId超出限制",
    );
    c.drain(WAIT);

    // batch ≤ max_batch (5); duplicates count toward it.
    let five = vec![id.clone(); 5];
    let d = node.call(
        SYS_A,
        "/api/send_to_clients",
        json!({"clientIds": five, "msg": "five"}),
    );
    assert_eq!(d["online"], json!(1), "{d}");
    assert_eq!(c.expect_json(WAIT)["msg"], json!("five"));
    c.expect_silence(QUIET);
    let six = vec![id.clone(); 6];
    node.call_err(
        SYS_A,
        "/api/send_to_clients",
        json!({ "clientIds": six }),
        200,
        "ClientIds超出限制",
    );

    // data ≤ max_message (1024): over it nothing is sent.
    node.send_to_client(SYS_A, &id, "small", json!("d".repeat(500)));
    assert_eq!(c.expect_json(WAIT)["msg"], json!("small"));
    let big = json!("d".repeat(2000));
    node.call_err(
        SYS_A,
        "/api/send_to_client",
        json!({"clientId": id, "data": big}),
        200,
        "Data超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/send_to_system",
        json!({ "data": big }),
        200,
        "Data超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/send_to_group",
        json!({"groupName": "g", "data": {"k": "d".repeat(2000)}}),
        200,
        "Data超出限制",
    );
    c.expect_silence(QUIET);
}

/// Ids, names and userIds may not hold C1 controls (NEL U+0085 among them), the line
/// and paragraph separators or bidi controls (docs/api.md §7.1): they split log lines
/// and make an id read otherwise than it is stored (`invoice\u{202e}fdp.exe`).
#[test]
fn c1_controls_separators_and_bidi_controls_are_refused_in_ids_names_and_user_ids() {
    let node = Node::start("");
    let bad = [
        "a\u{85}b",
        "a\u{9b}b",
        "evil\u{202e}txt",
        "x\u{2028}y",
        "x\u{2029}",
        "\u{2066}iso",
    ];
    for id in bad {
        expect_err(
            node.api(
                "/api/register",
                None,
                &json!({ "systemId": id }).to_string(),
            ),
            200,
            "SystemId超出限制",
        );
    }
    // None of them was registered.
    for id in bad {
        expect_err(
            node.api("/api/send_to_system", Some(id), "{}"),
            200,
            "系统ID无效",
        );
    }
    let mut c = node.ws(SYS_A);
    for name in bad {
        node.call_err(
            SYS_A,
            "/api/bind_to_group",
            json!({"clientId": c.client_id, "groupName": name}),
            200,
            "GroupName超出限制",
        );
        node.call_err(
            SYS_A,
            "/api/bind_to_group",
            json!({"clientId": c.client_id, "groupName": "g", "userId": name}),
            200,
            "UserId超出限制",
        );
        node.call_err(
            SYS_A,
            "/api/send_to_user",
            json!({ "userId": name }),
            200,
            "UserId超出限制",
        );
    }
    // The ids a business system sends are untouched (printable Unicode included).
    for id in ["shop-系统_1", "Ünïcode.id", "a b"] {
        expect_ok(node.api(
            "/api/register",
            None,
            &json!({ "systemId": id }).to_string(),
        ));
    }
    node.bind(SYS_A, &c.client_id, "房间-1", "用户\u{a0}42", "");
    c.drain(QUIET);
}

#[test]
fn invalid_client_ids() {
    let node = Node::start("");
    let mut c = node.ws(SYS_A);
    let other = node.ws(SYS_B);
    let id = c.client_id.clone();
    assert!(is_client_id_form(&id), "clientId form: {id:?}");

    let bad_ids = vec![
        "garbage".to_string(),
        "!!!!!!!!!!!!!!!!!!!!!!".to_string(),
        "AAAAAAAAAAAAAAAAAAAAAA".to_string(),
        id[..id.len() - 1].to_string(),
        format!("{id}A"),
        change_char(&id, 3),
        change_char(&id, 10),
        other.client_id.clone(),
    ];
    for bad in &bad_ids {
        for (path, body) in [
            ("/api/send_to_client", json!({ "clientId": bad })),
            ("/api/send_to_clients", json!({ "clientIds": [bad] })),
            ("/api/is_online", json!({ "clientId": bad })),
            ("/api/get_client_info", json!({ "clientId": bad })),
            (
                "/api/bind_to_group",
                json!({"clientId": bad, "groupName": "g"}),
            ),
            (
                "/api/unbind_from_group",
                json!({"clientId": bad, "groupName": "g"}),
            ),
            ("/api/close_client", json!({ "clientId": bad })),
        ] {
            expect_err(
                node.api(path, Some(SYS_A), &body.to_string()),
                200,
                "无效的clientId",
            );
        }
    }
    // None of that touched the real connections.
    c.expect_silence(QUIET);
    assert!(node.is_online(SYS_A, &id));
    assert!(node.is_online(SYS_B, &other.client_id));
}

#[test]
fn routes_on_an_offline_client() {
    let node = Node::start("");
    let gone = node.gone_client_id(SYS_A);
    for (path, body) in [
        (
            "/api/bind_to_group",
            json!({"clientId": gone, "groupName": "g"}),
        ),
        (
            "/api/unbind_from_group",
            json!({"clientId": gone, "groupName": "g"}),
        ),
        ("/api/close_client", json!({ "clientId": gone })),
        ("/api/get_client_info", json!({ "clientId": gone })),
    ] {
        node.call_err(SYS_A, path, body, 200, "客户端不在线");
    }
    assert_eq!(
        node.call(SYS_A, "/api/is_online", json!({ "clientId": gone })),
        json!({"online": false})
    );
    // It was never made a member.
    let list = node.call(SYS_A, "/api/get_online_list", json!({"groupName": "g"}));
    assert_eq!(list["count"], json!(0), "{list}");
}

#[test]
fn error_precedence_follows_the_contract_order() {
    let node = Node::start(LIMITS);
    let c = node.ws(SYS_A);
    let other = node.ws(SYS_B);
    let gone = node.gone_client_id(SYS_A);

    // unknown path before method
    let r = node.get("/api/no_such_route");
    expect_err((r.status, r.json()), 404, "接口不存在");
    // method before SystemId
    let r = node.get("/api/is_online");
    expect_err((r.status, r.json()), 405, "请求方法不允许");

    // body size before SystemId and JSON
    let mut h = node.http();
    let body = "x".repeat(9000);
    let r = h.request("POST", "/api/send_to_client", &[], body.as_bytes());
    expect_err((r.status, r.json()), 413, "请求体过大");

    // JSON / field type before SystemId
    expect_err(
        node.api("/api/send_to_client", None, "{bad"),
        400,
        "请求参数格式错误",
    );
    expect_err(
        node.api("/api/send_to_client", Some("no-such-system"), "{bad"),
        400,
        "请求参数格式错误",
    );
    expect_err(
        node.api("/api/send_to_client", None, "{\"clientId\":5}"),
        400,
        "请求参数格式错误",
    );

    // SystemId before required fields
    expect_err(
        node.api("/api/send_to_client", None, "{}"),
        200,
        "系统ID不能为空",
    );
    expect_err(
        node.api("/api/send_to_client", Some("no-such-system"), "{}"),
        200,
        "系统ID无效",
    );

    // required fields before limits
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"groupName": "g".repeat(300)}),
        200,
        "ClientId为必填字段",
    );
    // required before webhookUrl (register)
    expect_err(
        node.api(
            "/api/register",
            None,
            "{\"webhookUrl\":\"http://127.0.0.1:9/h\"}",
        ),
        200,
        "SystemId为必填字段",
    );
    // webhookUrl (open mode) before limits
    let body = json!({"systemId": "s".repeat(300), "webhookUrl": "http://127.0.0.1:9/h"});
    expect_err(
        node.api("/api/register", None, &body.to_string()),
        200,
        "无权设置WebhookUrl",
    );

    // limits before clientId validity
    node.call_err(
        SYS_A,
        "/api/send_to_client",
        json!({"clientId": "garbage", "data": "d".repeat(2000)}),
        200,
        "Data超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": other.client_id, "groupName": "g".repeat(257)}),
        200,
        "GroupName超出限制",
    );
    node.call_err(
        SYS_A,
        "/api/send_to_clients",
        json!({"clientIds": ["x", "y", "z", "u", "v", "w"]}),
        200,
        "ClientIds超出限制",
    );
    // limits before offline
    node.call_err(
        SYS_A,
        "/api/bind_to_group",
        json!({"clientId": gone, "groupName": "g".repeat(257)}),
        200,
        "GroupName超出限制",
    );
    // validity before offline: another system's id is invalid even for a live one
    node.call_err(
        SYS_A,
        "/api/get_client_info",
        json!({"clientId": other.client_id}),
        200,
        "无效的clientId",
    );
    assert!(node.is_online(SYS_A, &c.client_id));
}

#[test]
fn english_catalogue_with_lang_en() {
    // The English texts of src/api/error.rs (`ApiError::message` with `Lang::En`).
    let node = Node::start("[api]\nlang = \"en\"\n");
    expect_err(
        node.api("/api/is_online", None, "{}"),
        200,
        "SystemId must not be empty",
    );
    expect_err(
        node.api("/api/is_online", Some("no-such"), "{}"),
        200,
        "invalid SystemId",
    );
    expect_err(
        node.api("/api/nope", Some(SYS_A), "{}"),
        404,
        "no such endpoint",
    );
    let r = node.get("/api/is_online");
    expect_err((r.status, r.json()), 405, "method not allowed");
    expect_err(
        node.api("/api/is_online", Some(SYS_A), "{bad"),
        400,
        "malformed request body",
    );
    expect_err(
        node.api("/api/is_online", Some(SYS_A), "{}"),
        200,
        "ClientId is required",
    );
    expect_err(
        node.api("/api/is_online", Some(SYS_A), "{\"clientId\":\"garbage\"}"),
        200,
        "invalid clientId",
    );
    let gone = node.gone_client_id(SYS_A);
    node.call_err(
        SYS_A,
        "/api/get_client_info",
        json!({ "clientId": gone }),
        200,
        "client is offline",
    );
    expect_err(
        node.api(
            "/api/register",
            None,
            &json!({ "systemId": SYS_A }).to_string(),
        ),
        200,
        "SystemId is already registered",
    );
    // Successes keep "success".
    node.call(SYS_A, "/api/get_group_list", json!({}));
}
