//! Negotiation of permessage-deflate: a client's `Sec-WebSocket-Extensions`
//! offers in, the server's answer out (RFC 7692 §5, §7.1).
//!
//! Whatever the offer, the answer is the same shape: no context takeover
//! either way, because a push is compressed once for every recipient (no
//! state per connection can be assumed on our side) and each client message
//! is inflated by the core's one inflater, reset per message (no state per
//! connection on our side either). RFC 7692 lets a server add
//! `server_no_context_takeover` (§7.1.1.1) and `client_no_context_takeover`
//! (§7.1.1.2) to any offer, so that answer is always valid.
//!
//! What an offer may ask of us beyond that is a smaller window for what we
//! compress (`server_max_window_bits`). Windows 9–15 are honoured, and the
//! answer names the window: a client that asked for one must see it
//! (§7.1.2.1). Window 8 cannot be: zlib (and zlib-rs) refuse to write a raw
//! deflate stream with a 256-byte window, and answering 9 to an offer of 8
//! breaks the client's inflater. So that offer is declined: the next offer
//! is tried, or the connection goes without compression. Everything that is
//! not exactly RFC 7692's grammar — an unknown parameter, one given twice,
//! a value out of range or with a leading zero, a value where none belongs —
//! declines that one offer too. An upgrade is never refused for what its
//! extension header says.

use std::num::NonZeroU8;

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// The answer's fixed part: both no-context-takeover flags.
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// What a connection agreed to: permessage-deflate, and the largest window
/// the server may compress with for it (9–15). One byte, so that a
/// connection can hold `Option<Deflate>` at no cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    window_bits: NonZeroU8,
}

impl Deflate {
    /// The window of a client that asked for none.
    pub const DEFAULT: Deflate = Deflate {
        window_bits: NonZeroU8::new(15).expect("15 is not zero"),
    };

    /// The largest window (base-2 logarithm) our frames to it may use.
    pub fn window_bits(self) -> u8 {
        self.window_bits.get()
    }
}

/// An accepted offer: what the connection keeps, and what the answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub deflate: Deflate,
    /// The offer named `server_max_window_bits`: the answer names it too.
    window_asked: bool,
}

impl Agreement {
    /// The value of the answer's `Sec-WebSocket-Extensions` header.
    pub fn answer(&self) -> String {
        match self.window_asked {
            true => format!(
                "{ANSWER}; server_max_window_bits={}",
                self.deflate.window_bits()
            ),
            false => ANSWER.to_string(),
        }
    }
}

/// The agreement for an upgrade request whose `Sec-WebSocket-Extensions`
/// lines say `extensions` (joined with `,`) and whose `User-Agent` is
/// `user_agent`, with `ws.compression` `enabled`: the first offer we can
/// meet, unless the browser is one that ignores
/// `client_no_context_takeover`.
pub fn for_request(
    enabled: bool,
    extensions: Option<&str>,
    user_agent: Option<&str>,
) -> Option<Agreement> {
    let broken = user_agent.is_some_and(ignores_client_no_context_takeover);
    (enabled && !broken).then_some(())?;
    negotiate(extensions?)
}

/// The first acceptable permessage-deflate offer of `header` (the values of
/// every `Sec-WebSocket-Extensions` line of the request, joined with `,`),
/// if any. Other extensions are skipped.
pub fn negotiate(header: &str) -> Option<Agreement> {
    elements(header).find_map(|offer| accept(&offer?))
}

/// One extension of the header: its name and parameters (values unquoted).
#[derive(Debug, PartialEq, Eq)]
struct Offer<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// The parameters of a permessage-deflate offer, as far as they were read.
#[derive(Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

/// The agreement for `offer`, or None when it is not permessage-deflate or
/// asks for what we do not do (or says it badly).
fn accept(offer: &Offer) -> Option<Agreement> {
    if !offer.name.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut p = Params::default();
    for (name, value) in &offer.params {
        p.absorb(name, value.as_deref())?;
    }
    let window = p.server_max_window_bits;
    let bits = window.unwrap_or(15);
    // zlib cannot write a raw deflate stream with a 256-byte window.
    let window_bits = NonZeroU8::new(bits).filter(|b| b.get() >= 9)?;
    Some(Agreement {
        deflate: Deflate { window_bits },
        window_asked: window.is_some(),
    })
}

impl Params {
    /// Takes one parameter; None when the offer must be declined for it.
    fn absorb(&mut self, name: &str, value: Option<&str>) -> Option<()> {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("server_no_context_takeover") {
            set_flag(&mut self.server_no_context_takeover, value)
        } else if is("client_no_context_takeover") {
            set_flag(&mut self.client_no_context_takeover, value)
        } else if is("server_max_window_bits") {
            // §7.1.2.1: a value is required.
            let bits = window_bits(value?)?;
            self.server_max_window_bits
                .replace(bits)
                .is_none()
                .then_some(())
        } else if is("client_max_window_bits") {
            // §7.1.2.2: the value is optional. Our inflater has a 32 KiB
            // window, so whatever the client's window is, it is read: the
            // answer need not name one.
            let bits = value.map(window_bits).map_or(Some(None), |b| b.map(Some))?;
            self.client_max_window_bits
                .replace(bits)
                .is_none()
                .then_some(())
        } else {
            None
        }
    }
}

/// A flag parameter: no value, at most once.
fn set_flag(flag: &mut bool, value: Option<&str>) -> Option<()> {
    if value.is_some() || *flag {
        return None;
    }
    *flag = true;
    Some(())
}

/// A window size as RFC 7692 §7.1.2 writes it: 8 to 15 in decimal, no
/// leading zero (`%x38-39 / %x31 %x30-35`).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// The comma-separated elements of the header, parsed one by one (an
/// element that does not parse is None, and only that offer is lost);
/// empty elements (`a, , b`) are skipped as RFC 9110 §5.6.1 allows.
fn elements(header: &str) -> impl Iterator<Item = Option<Offer<'_>>> {
    split_outside_quotes(header, b',')
        .filter(|e| !e.trim_matches(is_ows).is_empty())
        .map(offer)
}

/// `extension-token *( ";" extension-param )` (RFC 6455 §9.1).
fn offer(element: &str) -> Option<Offer<'_>> {
    let mut parts = split_outside_quotes(element, b';');
    let name = parts.next()?.trim_matches(is_ows);
    if !is_token(name) {
        return None;
    }
    let params = parts.map(param).collect::<Option<_>>()?;
    Some(Offer { name, params })
}

/// `token [ "=" (token | quoted-string) ]`, whitespace allowed around `=`.
/// A quoted value is unescaped; RFC 7692 §5.1 wants the result to be a
/// token.
fn param(part: &str) -> Option<(&str, Option<String>)> {
    let (name, value) = match part.split_once('=') {
        Some((n, v)) => (n, Some(v.trim_matches(is_ows))),
        None => (part, None),
    };
    let name = name.trim_matches(is_ows);
    if !is_token(name) {
        return None;
    }
    let value = match value {
        None => None,
        Some(v) if is_token(v) => Some(v.to_string()),
        Some(v) => Some(unquote(v).filter(|u| is_token(u))?),
    };
    Some((name, value))
}

/// The content of a quoted-string (`"…"` with `\` escapes), or None.
fn unquote(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Splits at `sep` outside quoted strings. An unterminated quote runs to
/// the end, so the last part then fails to parse.
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let text = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in text.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b if b == sep && !quoted => {
                    rest = Some(&text[i + 1..]);
                    return Some(&text[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(text)
    })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// An RFC 9110 token: one or more tchars.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a browser is known to ignore `client_no_context_takeover`:
/// Safari 15.0–15.3, and WebKit on iOS/iPadOS 15.0–15.3 (every iOS browser
/// is WebKit underneath). Such a client keeps its compression window from
/// one message to the next, and the core's inflater, reset per message,
/// cannot read its second message. uWebSockets turns compression off for
/// the same agents (its `hasBrokenCompression`). A false positive costs
/// that client compression only.
pub fn ignores_client_no_context_takeover(user_agent: &str) -> bool {
    let old = |marker: &str| minor_after(user_agent, marker).is_some_and(|minor| minor <= 3);
    (old(" Version/15.") && user_agent.contains(" Safari/"))
        || (old(" OS 15_") && user_agent.contains("like Mac OS X"))
}

/// The decimal number right after `marker` in `s`, when one follows it.
fn minor_after(s: &str, marker: &str) -> Option<u32> {
    let rest = &s[s.find(marker)? + marker.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

#[cfg(test)]
mod tests;
