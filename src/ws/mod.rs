//! WebSocket sessions: the upgrade, admission (systemId, connect token) and
//! the reader task of each connection.
pub mod session;
