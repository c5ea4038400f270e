use super::*;

const PLAIN: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The answer to `header`, and the window agreed.
fn answer(header: &str) -> Option<(String, u8)> {
    negotiate(header).map(|a| (a.answer(), a.deflate.window_bits()))
}

fn with_window(bits: u8) -> Option<(String, u8)> {
    Some((format!("{PLAIN}; server_max_window_bits={bits}"), bits))
}

#[test]
fn what_browsers_and_libraries_offer_is_answered_without_context_takeover() {
    for offer in [
        // Firefox, Safari
        "permessage-deflate",
        // Chrome, Node.js ws
        "permessage-deflate; client_max_window_bits",
        // python-websockets
        "permessage-deflate; client_max_window_bits=12",
        // Autobahn 13.1
        "permessage-deflate; client_no_context_takeover; client_max_window_bits",
        // Autobahn 13.2
        "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover",
    ] {
        assert_eq!(answer(offer), Some((PLAIN.to_string(), 15)), "{offer}");
    }
}

#[test]
fn an_asked_server_window_of_9_to_15_is_honoured_and_named() {
    for bits in 9..=15 {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        assert_eq!(answer(&offer), with_window(bits), "{offer}");
    }
    // Autobahn 13.3 and 13.5.
    let o = "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=9";
    assert_eq!(answer(o), with_window(9));
    let o = "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=9";
    assert_eq!(answer(o), with_window(9));
}

#[test]
fn window_8_is_declined_and_the_next_offer_taken() {
    assert_eq!(answer("permessage-deflate; server_max_window_bits=8"), None);
    let two = "permessage-deflate; server_max_window_bits=8, permessage-deflate";
    assert_eq!(answer(two), Some((PLAIN.to_string(), 15)));
    let three = "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10, permessage-deflate";
    assert_eq!(answer(three), with_window(10));
    // The client's own window may be 8: our inflater reads any window.
    let client8 = "permessage-deflate; client_max_window_bits=8";
    assert_eq!(answer(client8), Some((PLAIN.to_string(), 15)));
}

#[test]
fn offers_are_taken_in_order() {
    // Autobahn 13.7: the first acceptable of three.
    let o = "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=9, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits";
    assert_eq!(answer(o), with_window(9));
    let o = "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12";
    assert_eq!(answer(o), with_window(12));
    // Other extensions are skipped, whatever their parameters.
    let o = "x-webkit-deflate-frame, foo; bar=\"a,b;c\"; baz, permessage-deflate";
    assert_eq!(answer(o), Some((PLAIN.to_string(), 15)));
    assert_eq!(answer("x-webkit-deflate-frame"), None);
}

#[test]
fn malformed_or_unknown_parameters_decline_the_offer() {
    for offer in [
        "",
        "   ",
        "permessage-deflate; unknown",
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=0",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"9",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate;",
        "permessage-deflate;; client_max_window_bits",
        "permessage-deflate; =9",
        "permessage-deflate; server max_window_bits=9",
        "permessage-deflate x",
        "\"permessage-deflate\"",
        "permessage-deflate; server_max_window_bits=1\u{0}0",
        "permessage-deflate; server_max_window_bits=１０",
        // An unterminated quote swallows every offer after it.
        "foo; bar=\"x, permessage-deflate",
    ] {
        assert_eq!(answer(offer), None, "{offer:?}");
    }
}

#[test]
fn whitespace_quotes_case_and_empty_elements_are_read_as_rfc_6455_writes_them() {
    let o = "permessage-deflate ;client_max_window_bits ;\tserver_max_window_bits = 12 ";
    assert_eq!(answer(o), with_window(12));
    let o = "permessage-deflate; server_max_window_bits=\"10\"; client_max_window_bits=\"15\"";
    assert_eq!(answer(o), with_window(10));
    let o = "permessage-deflate; server_max_window_bits=\"1\\1\"";
    assert_eq!(answer(o), with_window(11));
    assert_eq!(
        answer(" , ,permessage-deflate,"),
        Some((PLAIN.to_string(), 15))
    );
    let o = "PerMessage-Deflate; Server_Max_Window_Bits=13";
    assert_eq!(answer(o), with_window(13));
}

#[test]
fn every_answer_read_as_an_offer_agrees_to_the_same() {
    for offer in [
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=15",
    ] {
        let first = negotiate(offer).expect("accepted");
        assert_eq!(negotiate(&first.answer()), Some(first), "{offer}");
    }
}

#[test]
fn safari_15_0_to_15_3_and_ios_15_0_to_15_3_ignore_client_no_context_takeover() {
    let broken = [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.0 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.3 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 15_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.2 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 15_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.1 Mobile/15E148 Safari/604.1",
        // Chrome on iOS is WebKit too.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/94.0.4606.76 Mobile/15E148 Safari/604.1",
    ];
    for ua in broken {
        assert!(ignores_client_no_context_takeover(ua), "{ua}");
    }
    let fine = [
        "",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.4 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 15_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Version/15.",
        "Version/15.2",
    ];
    for ua in fine {
        assert!(!ignores_client_no_context_takeover(ua), "{ua}");
    }
}

#[test]
fn a_request_gets_deflate_when_on_offered_and_not_from_a_broken_browser() {
    let safari_15_2 = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.2 Safari/605.1.15";
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    let offer = Some("permessage-deflate");
    assert!(for_request(true, offer, Some(firefox)).is_some());
    assert!(for_request(true, offer, None).is_some());
    assert!(for_request(false, offer, Some(firefox)).is_none());
    assert!(for_request(true, None, Some(firefox)).is_none());
    assert!(for_request(true, offer, Some(safari_15_2)).is_none());
}
