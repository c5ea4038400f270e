//! Inflating one client message, with a bound on what it may inflate to.
//!
//! The server answers `client_no_context_takeover`, so every client message
//! is a deflate stream of its own: one inflater per core serves every
//! connection, reset before each message (a zlib-rs inflater with its
//! 32 KiB window is about 46 KiB; one per connection would cost that for
//! every connection). Its window is always 15 bits, which reads a stream
//! written with any smaller window, so the client's `client_max_window_bits`
//! never matters.
//!
//! A deflate stream can inflate about 1030 times over: 100 KB of input can
//! be 100 MB of output. The output is therefore produced in bounded steps
//! into the caller's buffer and stops one byte past `limit`
//! (`ws.max_client_message`): a bomb costs at most that much memory, and
//! at most that much inflating, before its connection is closed with 1009.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

use super::TAIL;

/// Output produced per step (and zeroed before it, so no more).
const STEP: usize = 32 * 1024;

/// Why a message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// It inflates to more than the limit.
    #[error("the message inflates past its limit")]
    TooLarge,
    /// It is not a valid deflate stream (or it refers to data before its
    /// start: a client that kept its window despite
    /// `client_no_context_takeover`).
    #[error("the message is not valid deflate data")]
    Corrupt,
}

thread_local! {
    /// The core's inflater: made on first use, reset before each message.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Inflates one message's payload — a raw deflate stream without the
/// sync-flush tail, which is added here (RFC 7692 §7.2.2) — from a fresh
/// state, appending it to `out`. Fails once more than `limit` bytes came
/// out; `out` then holds at most `limit + 1` of them.
pub fn inflate(compressed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
    INFLATER.with(|cell| {
        let mut cell = cell.try_borrow_mut().map_err(|_| InflateError::Corrupt)?;
        let z = cell.get_or_insert_with(|| Decompress::new(false));
        z.reset(false);
        let end = out.len().saturating_add(limit).saturating_add(1);
        if !run(z, compressed, out, end)? {
            run(z, &TAIL, out, end)?;
        }
        // A stream that ends (a final block) exactly one byte past the limit
        // stops without asking for more room: judged here.
        match out.len() < end {
            true => Ok(()),
            false => Err(InflateError::TooLarge),
        }
    })
}

/// Feeds `input` to the inflater, appending what comes out to `out`, never
/// past `end`. Whether the stream ended (a final block: what follows it is
/// ignored).
fn run(
    z: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    end: usize,
) -> Result<bool, InflateError> {
    loop {
        let len = out.len();
        let room = end.saturating_sub(len).min(STEP);
        if room == 0 {
            return Err(InflateError::TooLarge);
        }
        grow(out, len + room, end);
        out.resize(len + room, 0);
        let (read_before, wrote_before) = (z.total_in(), z.total_out());
        let status = z.decompress(input, &mut out[len..], FlushDecompress::Sync);
        let wrote = (z.total_out() - wrote_before) as usize;
        let read = (z.total_in() - read_before) as usize;
        out.truncate(len + wrote);
        input = input.get(read..).unwrap_or_default();
        match status.map_err(|_| InflateError::Corrupt)? {
            Status::StreamEnd => return Ok(true),
            // Output full: there may be more.
            _ if wrote == room => {}
            _ if input.is_empty() => return Ok(false),
            _ if read == 0 && wrote == 0 => return Err(InflateError::Corrupt),
            _ => {}
        }
    }
}

/// Makes room for `need` bytes in `out`, doubling as a `Vec` does but never
/// past `end`: the buffer of a bomb stops at the limit, not at twice it.
fn grow(out: &mut Vec<u8>, need: usize, end: usize) {
    if out.capacity() < need {
        let target = out.capacity().saturating_mul(2).clamp(need, end.max(need));
        out.reserve_exact(target - out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// `data` deflated as a client does: one sync flush, the tail removed.
    fn client_deflate(data: &[u8]) -> Vec<u8> {
        let mut z = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    #[test]
    fn a_message_inflates_within_its_limit_and_appends() {
        let data = b"Hello, hello, hello, hello, deflate!".repeat(100);
        let mut out = b"head".to_vec();
        inflate(&client_deflate(&data), data.len(), &mut out).unwrap();
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], &data[..]);
    }

    #[test]
    fn one_byte_past_the_limit_is_too_large_and_no_more_is_produced() {
        let data = vec![b'a'; 10_000];
        let c = client_deflate(&data);
        let mut out = Vec::new();
        assert_eq!(inflate(&c, 9_999, &mut out), Err(InflateError::TooLarge));
        assert_eq!(out.len(), 10_000);
        let mut out = Vec::new();
        assert_eq!(inflate(&c, 10_000, &mut out), Ok(()));
    }

    #[test]
    fn a_final_block_one_byte_past_the_limit_is_too_large() {
        // Found by fuzz/fuzz_targets/deflate.rs: "Hello" as a final block.
        let hello = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            inflate(&hello, 4, &mut Vec::new()),
            Err(InflateError::TooLarge)
        );
        assert_eq!(
            inflate(&hello, 0, &mut Vec::new()),
            Err(InflateError::TooLarge)
        );
        assert_eq!(inflate(&hello, 5, &mut Vec::new()), Ok(()));
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 100 MB of zeros deflate to about 100 KB.
        let mut z = Compress::new(Compression::new(9), false);
        let chunk = vec![0u8; 1 << 20];
        let mut c = Vec::with_capacity(200_000);
        for _ in 0..100 {
            z.compress_vec(&chunk, &mut c, FlushCompress::None).unwrap();
        }
        z.compress_vec(&[], &mut c, FlushCompress::Sync).unwrap();
        assert!(c.len() < 200_000, "{}", c.len());
        let mut out = Vec::new();
        assert_eq!(inflate(&c, 1 << 20, &mut out), Err(InflateError::TooLarge));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
    }

    #[test]
    fn garbage_and_references_before_the_start_are_corrupt() {
        let mut out = Vec::new();
        assert_eq!(
            inflate(&[0xff; 16], 1000, &mut out),
            Err(InflateError::Corrupt)
        );
        // A context-takeover client's second message: "abcabc" refers back
        // into the first message, which this inflater never saw.
        let mut z = Compress::new(Compression::new(6), false);
        let mut first = Vec::with_capacity(64);
        z.compress_vec(b"abcdefghijabcdefghij", &mut first, FlushCompress::Sync)
            .unwrap();
        let mut second = Vec::with_capacity(64);
        z.compress_vec(b"abcdefghij", &mut second, FlushCompress::Sync)
            .unwrap();
        second.truncate(second.len() - TAIL.len());
        assert_eq!(
            inflate(&second, 1000, &mut Vec::new()),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn an_empty_message_and_a_final_block_are_read() {
        let mut out = Vec::new();
        inflate(&[0x00], 10, &mut out).unwrap();
        assert!(out.is_empty());
        // RFC 7692 §7.2.3.1's "Hello" (a final block, then the tail we add).
        inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 10, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 10, &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }
}
