//! Wall-clock time as the node states it: unix seconds (clientIds, connect
//! times, tokens) and milliseconds (webhook events, group history).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now in unix milliseconds (0 before 1970: a clock set wrong).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Now in unix seconds.
pub fn unix_seconds() -> u64 {
    unix_millis() / 1000
}
