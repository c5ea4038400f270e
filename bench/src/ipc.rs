//! What the parent and its workers say to each other: the spec a worker starts from, the
//! commands it is given, the events and reports it answers with. Plain serde types
//! beneath both sides: the worker (`worker`, `setup`, the connection sets) reads
//! commands and writes events without knowing `fleet`, which starts it and carries them.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::histogram::HistogramWire;

/// What one worker does: its share of the subscriber connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub index: usize,
    pub is_child: bool,
    pub dst: SocketAddrV4,
    pub host: String,
    pub path: String,
    pub sources: Vec<Ipv4Addr>,
    pub connections: usize,
    pub concurrency: usize,
    pub want_welcome: bool,
    pub capture_ids: bool,
    /// shardcast group mode: bind every connection to a group before reporting ready.
    pub bind: Option<BindSpec>,
    /// `chat`: from Go, the connections send client messages and count their acks.
    pub chat: Option<ChatSpec>,
    /// After the publisher is done: give up when no message came for this long.
    pub drain_timeout_ms: u64,
    /// Before reporting ready: wait until no frame came for this long.
    pub quiet_ms: u64,
    /// `resume`: the connections are dropped and resumed on command.
    #[serde(default)]
    pub resume: Option<ResumeSpec>,
    /// `--receive-log`: where this worker writes what it received (`PATH.index`).
    #[serde(default)]
    pub receive_log: Option<String>,
    /// `--deflate`: the `Sec-WebSocket-Extensions` offer of every upgrade request.
    #[serde(default)]
    pub deflate: Option<String>,
}

/// How a worker of a `resume` run reconnects.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeSpec {
    /// Reconnects in progress at once (0: all at once).
    pub concurrency: usize,
    /// A reconnect not complete after this long is a failure.
    pub timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BindSpec {
    pub api: SocketAddrV4,
    pub host: String,
    pub system: String,
    pub group: String,
    pub src: Option<Ipv4Addr>,
}

/// What a worker's connections send in a `chat` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatSpec {
    /// The message text before and after the send-time marker (inside its `reqId`,
    /// which the ack echoes).
    pub head: String,
    pub tail: String,
    /// Messages awaiting their ack, per connection on average.
    pub window: usize,
    /// Messages per second of this worker; None: as fast as the acks allow.
    pub rate: Option<f64>,
    /// How long to send.
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Cmd {
    /// Open the connections.
    Connect,
    /// Start counting: `expected` marked messages should arrive here.
    Go { expected: u64 },
    /// The publisher has had every answer.
    PublishDone,
    /// `resume`: once every connection has processed the push `wait_for` (or after
    /// `wait_ms`), drop them all with a TCP reset.
    Drop {
        wait_for: Option<String>,
        wait_ms: u64,
    },
    /// `resume`: reconnect every dropped connection with its resume token; `ids` are
    /// the messageIds of every push sent since the connections opened, in order.
    Resume { ids: Vec<String> },
    /// Close everything and exit.
    Close,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    Started {
        pid: u32,
    },
    Ready(Box<ReadyReport>),
    /// Go was received: counting toward the expected number.
    Armed,
    Result(Box<ResultReport>),
    /// `resume`: the connections were dropped.
    Dropped(DropReport),
    /// `resume`: every reconnect completed, failed or timed out.
    Resumed(Box<ResumeReport>),
    Error {
        message: String,
    },
    Exited,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadyReport {
    pub opened: u64,
    pub failed: u64,
    pub handshake: HistogramWire,
    pub first_start_ns: u64,
    pub last_ready_ns: u64,
    pub client_ids: Vec<String>,
    pub bind_requests: u64,
    pub bind_failed: u64,
    /// Frames received during setup (online notices of bind).
    pub setup_frames: u64,
    /// Connections whose 101 agreed to permessage-deflate.
    #[serde(default)]
    pub deflate_agreed: u64,
    pub setup_done_ns: u64,
    /// CPU seconds of the child process since Connect (0 for the in-process worker).
    pub cpu_s: f64,
    pub errors: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResultReport {
    /// Marked frames received (in a `chat` run: acks).
    pub received: u64,
    /// `chat`: client messages sent.
    pub sent: u64,
    /// `chat`: acks whose code is not 0.
    pub refused: u64,
    /// `chat`: when the first message was sent.
    pub first_tx_ns: u64,
    pub other: u64,
    pub dropped: u64,
    pub open: u64,
    pub latency: HistogramWire,
    pub first_rx_ns: u64,
    pub last_rx_ns: u64,
    pub pings: u64,
    pub bytes_in: u64,
    /// Wire bytes of the marked frames (headers and payloads as received).
    #[serde(default)]
    pub wire_bytes: u64,
    /// Marked frames that came compressed (permessage-deflate).
    #[serde(default)]
    pub compressed: u64,
    /// CPU seconds of the child process since Go (0 for the in-process worker).
    pub cpu_s: f64,
    pub errors: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DropReport {
    /// Connections reset.
    pub dropped: u64,
    /// Of those, how many had not processed the awaited push.
    pub missed_before: u64,
    /// Frames other than the awaited pushes seen before the drop (notices).
    pub other_frames: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResumeReport {
    /// Reconnects started.
    pub attempted: u64,
    /// Welcomed with `resumed:true`, the same clientId, `recovered:true`, and every
    /// missed frame received in order.
    pub completed: u64,
    pub failed: u64,
    /// Welcome checks, whatever came after.
    pub resumed: u64,
    pub same_id: u64,
    pub recovered: u64,
    /// Frames received after the welcomes.
    pub frames: u64,
    /// Reconnect start → welcome and every missed frame, of the completed ones.
    pub latency: HistogramWire,
    /// Reconnect start → welcome, of every welcomed one.
    pub welcome: HistogramWire,
    pub first_start_ns: u64,
    pub last_start_ns: u64,
    pub last_done_ns: u64,
    /// CPU seconds of the child process since Resume (0 for the in-process worker).
    pub cpu_s: f64,
    pub errors: Vec<(String, u64)>,
}
