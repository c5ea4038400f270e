//! permessage-deflate by hand (docs/api.md §10): a raw WebSocket client whose upgrade
//! offers what a test says, messages deflated here with flate2 as a browser deflates
//! them (one sync flush, the `00 00 ff ff` tail removed, no context kept), server
//! frames read with their RSV bits and inflated with the window the answer named, and
//! decompression bombs.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use shardcast::ws::frame::{self, client_fragment, Head, FIN, RSV1};

use super::node::Node;
use super::raw_frames::{head_header, raw_ws_handshake, read_raw_frame_head};

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// What the server answers to an offer it accepts (no `server_max_window_bits`).
pub const ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// `data` deflated as a client deflates one message: level 6, a fresh state, a sync
/// flush, the tail removed.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    let status = z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(status, Status::Ok);
    assert!(out.ends_with(&TAIL), "room for the whole message");
    out.truncate(out.len() - TAIL.len());
    out
}

/// A compressed message payload (tail removed) with an inflater of `window_bits`.
pub fn inflate(payload: &[u8], window_bits: u8) -> Vec<u8> {
    let mut z = Decompress::new_with_window_bits(false, window_bits);
    let input = [payload, &TAIL].concat();
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    loop {
        let before = z.total_in() as usize;
        z.decompress_vec(&input[before..], &mut out, FlushDecompress::Sync)
            .unwrap_or_else(|e| panic!("inflating with window {window_bits}: {e}"));
        if z.total_in() as usize == input.len() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// `mb` MiB of zeros deflated as one message (no tail): about 1 KiB per MiB, the
/// ratio deflate tops out at.
pub fn bomb(mb: usize) -> Vec<u8> {
    let mut z = Compress::new(Compression::new(9), false);
    let zeros = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(mb * 1100 + 64);
    for _ in 0..mb {
        z.compress_vec(&zeros, &mut out, FlushCompress::None)
            .unwrap();
    }
    z.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// A raw WebSocket client that offered permessage-deflate (or not).
pub struct DeflateClient {
    pub stream: TcpStream,
    /// The `Sec-WebSocket-Extensions` the 101 answered, if any.
    pub agreed: Option<String>,
}

impl DeflateClient {
    /// Upgrades `/ws?systemId=<system>` with `headers` (whole lines, each ending in
    /// CRLF) and asserts the 101; nothing is read after it.
    pub fn connect(node: &Node, system: &str, headers: &str) -> DeflateClient {
        Self::connect_query(node, &format!("systemId={system}"), headers)
    }

    /// Upgrades `/ws?<query>` (a resume, say) with `headers`; asserts the 101.
    pub fn connect_query(node: &Node, query: &str, headers: &str) -> DeflateClient {
        let mut stream = TcpStream::connect(node.addr()).expect("connect");
        stream.set_nodelay(true).unwrap();
        let path = format!("/ws?{query}");
        let (status, head) = raw_ws_handshake(&mut stream, node.addr(), &path, headers);
        assert_eq!(status, 101, "an offer never refuses the upgrade: {head}");
        let agreed = head_header(&head, "Sec-WebSocket-Extensions").map(str::to_string);
        DeflateClient { stream, agreed }
    }

    /// Upgrades offering `offer` (a `Sec-WebSocket-Extensions` value).
    pub fn offering(node: &Node, system: &str, offer: &str) -> DeflateClient {
        Self::connect(
            node,
            system,
            &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
        )
    }

    /// The window our frames may be inflated with: what the answer named, else 15.
    pub fn window_bits(&self) -> u8 {
        let agreed = self.agreed.as_deref().expect("deflate agreed");
        agreed
            .split(';')
            .find_map(|p| p.trim().strip_prefix("server_max_window_bits="))
            .map_or(15, |v| v.parse().expect("a window size"))
    }

    /// Writes one frame whose first header byte is `first` (FIN, RSV bits, opcode as
    /// given), masked. A write the node refused (it closed) is ignored.
    pub fn send_frame(&mut self, first: u8, payload: &[u8]) {
        let mut f = Vec::with_capacity(payload.len() + 14);
        client_fragment(&mut f, first, payload, [0x5a, 0xa5, 0x3c, 0xc3]);
        let _ = self.stream.write_all(&f);
    }

    /// Sends `data` as one compressed message of `opcode` in one frame.
    pub fn send_compressed(&mut self, opcode: u8, data: &[u8]) {
        self.send_frame(FIN | RSV1 | opcode, &deflate(data));
    }

    /// The next frame that is not a ping: its header and payload.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<(Head, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (head, payload) = read_raw_frame_head(&mut self.stream, left)?;
            if head.opcode != frame::OP_PING {
                return Some((head, payload));
            }
        }
    }

    /// The next message (one frame): its opcode, whether it came compressed, and its
    /// payload inflated with the agreed window.
    pub fn next_message(&mut self, timeout: Duration) -> Option<(u8, bool, Vec<u8>)> {
        let (head, payload) = self.next_frame(timeout)?;
        assert!(head.fin, "the node sends whole messages");
        let compressed = head.rsv == RSV1;
        match compressed {
            true => Some((head.opcode, true, inflate(&payload, self.window_bits()))),
            false => {
                assert_eq!(head.rsv, 0, "no RSV bit but RSV1 is ever sent");
                Some((head.opcode, false, payload))
            }
        }
    }

    /// The code of the close frame that comes next (data frames skipped).
    pub fn expect_close(&mut self, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (head, payload) = read_raw_frame_head(&mut self.stream, left)
                .unwrap_or_else(|| panic!("no close frame within {timeout:?}"));
            if head.opcode == frame::OP_CLOSE {
                assert!(payload.len() >= 2, "a close code");
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}
