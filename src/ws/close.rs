//! Why a WebSocket connection ended, and the close code it gets.

/// Why a connection ended (the names are those of the webhook `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    ClosedByApi,
    IdleTimeout,
    SlowConsumer,
    TooLarge,
    Shutdown,
    NodeLost,
    Error,
}

impl CloseReason {
    pub const ALL: [CloseReason; 8] = [
        Self::ClientClosed,
        Self::ClosedByApi,
        Self::IdleTimeout,
        Self::SlowConsumer,
        Self::TooLarge,
        Self::Shutdown,
        Self::NodeLost,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ClosedByApi => "closed_by_api",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::TooLarge => "too_large",
            Self::Shutdown => "shutdown",
            Self::NodeLost => "node_lost",
            Self::Error => "error",
        }
    }

    /// Whether a connection that ended this way, getting close `code` (if
    /// any), keeps its session for a resume (docs/api.md §8): it dropped
    /// without a goodbye — end of stream or reset without a close frame, a
    /// read or write error, or silence past `ws.idle_timeout`. A close frame
    /// either way, a slow consumer, `close_client`, shutdown or the node's
    /// loss end it for good.
    pub fn detaches(self, code: Option<u16>) -> bool {
        match self {
            Self::IdleTimeout => true,
            Self::ClientClosed | Self::Error => code.is_none(),
            _ => false,
        }
    }

    /// The close frame sent before the socket closes, if any: a slow
    /// consumer's queue is full and a broken socket cannot take one.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::ClosedByApi => Some(1000),
            Self::IdleTimeout | Self::Shutdown | Self::NodeLost => Some(1001),
            Self::TooLarge => Some(1009),
            Self::ClientClosed | Self::SlowConsumer | Self::Error => None,
        }
    }
}
