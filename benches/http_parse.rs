//! Parsing one HTTP/1.1 request from the front of a read buffer with
//! `parse_request`: a PHP-SDK-like `POST /api/send_to_group` with a ~200-byte
//! JSON body, and the WebSocket upgrade `GET /ws?systemId=…` a browser sends.
//!
//! Why it matters: every push API call and every new WebSocket connection
//! passes through this parser on the accepting core before anything else
//! happens, so its cost is a floor on API latency and caps the rate of
//! pushes and connection storms (reconnect waves after a deploy) a core can
//! absorb.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast::http::{parse_request, Limits, Parsed};

/// The request the go-websocket PHP SDK (Guzzle over curl) sends.
fn send_to_group_request() -> Vec<u8> {
    let body = br#"{"sendUserId":"php-backend","groupName":"live-room-10086","code":0,"msg":"chat","data":{"from":"user-77","nick":"Alice","text":"Hello everyone, the stream starts in five minutes!","ts":1790000123}}"#;
    assert!((190..=230).contains(&body.len()), "{}", body.len());
    let mut req = format!(
        "POST /api/send_to_group HTTP/1.1\r\n\
         Host: push.example.com:7800\r\n\
         SystemId: shop-system\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         User-Agent: GuzzleHttp/7 curl/7.81.0 PHP/8.1.2\r\n\
         \r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A browser's WebSocket opening handshake.
fn upgrade_request() -> Vec<u8> {
    b"GET /ws?systemId=shop-system HTTP/1.1\r\n\
      Host: push.example.com:7800\r\n\
      Connection: Upgrade\r\n\
      Pragma: no-cache\r\n\
      Cache-Control: no-cache\r\n\
      User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
      Upgrade: websocket\r\n\
      Origin: https://shop.example.com\r\n\
      Sec-WebSocket-Version: 13\r\n\
      Accept-Encoding: gzip, deflate, br\r\n\
      Accept-Language: en-US,en;q=0.9\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
      Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
      \r\n"
        .to_vec()
}

fn bench_http_parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http_parse");
    for (name, buf) in [
        ("post_send_to_group", send_to_group_request()),
        ("ws_upgrade", upgrade_request()),
    ] {
        match parse_request(&buf, &limits) {
            Ok(Parsed::Complete { consumed, .. }) => assert_eq!(consumed, buf.len()),
            other => panic!("{name}: expected a complete request, got {other:?}"),
        }
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_request(black_box(&buf), black_box(&limits)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_http_parse);
criterion_main!(benches);
