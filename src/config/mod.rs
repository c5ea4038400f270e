//! Configuration model.
//!
//! shardcast is deployed both from a hand-edited TOML file and from container
//! orchestrators that can only inject environment variables, so every key must
//! be settable either way with identical meaning. A node that starts with a
//! silently ignored typo or a half-configured cluster is worse than one that
//! refuses to start: every key is therefore known (unknown keys are errors),
//! every error names the full key it is about, and combinations that cannot
//! work are rejected here rather than discovered at run time.
//!
//! The list of keys that environment variables may override is derived from
//! the serialized defaults, so it cannot drift from the structs below.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

mod duration;
mod env;

use duration::duration_str;
pub use duration::parse_duration;
use env::{apply_env, process_env};

/// Upper bound of `server.workers`; worker ids must fit in a byte.
pub const MAX_WORKERS: usize = 255;
/// Longest accepted system id in `api.systems`, in bytes.
const MAX_SYSTEM_ID_LEN: usize = 128;

/// Defines a config section: the struct with its serde attributes and a
/// `Default` impl built from the per-field defaults written next to each field.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }
    };
}

/// Shortest `api.admin_token` accepted in token mode (docs/api.md §7).
const MIN_ADMIN_TOKEN: usize = 16;

section! {
    /// The whole configuration; `Config::default()` is the built-in defaults.
    pub struct Config {
        /// `[server]`
        server: ServerConfig = ServerConfig::default(),
        /// `[ws]`
        ws: WsConfig = WsConfig::default(),
        /// `[api]`
        api: ApiConfig = ApiConfig::default(),
        /// `[webhook]`
        webhook: WebhookConfig = WebhookConfig::default(),
        /// `[console]`
        console: ConsoleConfig = ConsoleConfig::default(),
        /// `[cluster]`
        cluster: ClusterConfig = ClusterConfig::default(),
        /// `[history]`
        history: HistoryConfig = HistoryConfig::default(),
        /// `[log]`
        log: LogConfig = LogConfig::default(),
    }
}

section! {
    /// `[server]`: listener, worker threads, storage and the payload key.
    pub struct ServerConfig {
        /// Listener for the HTTP API and WebSocket upgrades.
        http_addr: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 7800)),
        /// Worker threads; 0 = one per available core (see `Config::worker_count`).
        workers: usize = 0,
        /// Pin core N to the Nth CPU the process may use (for nodes where nothing else
        /// runs; docs/architecture.md says when it pays).
        pin_cores: bool = false,
        /// Directory for persistent state.
        data_dir: PathBuf = PathBuf::from("data"),
        /// Empty, or 32 / 64 hex characters (AES-128 / AES-256).
        crypto_key: String = String::new(),
        /// Connection cap; 0 = bounded only by the open-file limit.
        max_connections: usize = 0,
        /// Grace period for draining connections on shutdown.
        #[serde(with = "duration_str")]
        shutdown_timeout: Duration = Duration::from_secs(10),
    }
}

section! {
    /// `[ws]`: WebSocket client connections.
    pub struct WsConfig {
        /// Interval between server pings.
        #[serde(with = "duration_str")]
        ping_interval: Duration = Duration::from_secs(25),
        /// A connection silent for this long is closed.
        #[serde(with = "duration_str")]
        idle_timeout: Duration = Duration::from_secs(60),
        /// Largest message a client may send, in bytes.
        max_client_message: usize = 8192,
        /// Bytes that may queue for one slow client before it is dropped.
        send_queue_bytes: usize = 1 << 20,
        /// Echo client messages back to the sender.
        echo: bool = false,
        /// What clients may send to.
        client_send: ClientSendPolicy = ClientSendPolicy::Off,
        /// Messages per second one client may send; 0 = unlimited.
        client_send_rate: u32 = 20,
        /// Online/offline notices (1001/1002) to a group when a member joins
        /// or leaves; off, a bind or a disconnect costs O(1) frames instead
        /// of O(group size).
        notices: bool = true,
        /// How long a connection that dropped without a goodbye keeps its
        /// session for a resume (docs/api.md §8); 0 = off.
        #[serde(with = "duration_str")]
        resume_window: Duration = Duration::ZERO,
        /// Bytes of frames addressed to one connection alone (its
        /// `send_to_client`s) kept for its replay.
        resume_buffer_bytes: usize = 262144,
        /// Bytes of frames all the cores of a node keep for replay; past it
        /// the oldest go (docs/api.md §8.1).
        resume_max_bytes: usize = 64 << 20,
        /// How long a resume finding the old socket attached waits for it to
        /// answer a ping before taking the session over.
        #[serde(with = "duration_str")]
        takeover_probe: Duration = Duration::from_secs(1),
        /// Most detached sessions a node keeps; past it the oldest ends.
        max_detached: usize = 100_000,
        /// Negotiate permessage-deflate (RFC 7692) with clients that offer
        /// it (docs/api.md §10).
        compression: bool = true,
        /// Pushes smaller than this many bytes are sent uncompressed: without
        /// context takeover they barely shrink.
        compression_min_size: usize = 256,
    }
}

section! {
    /// `[api]`: the HTTP push API.
    pub struct ApiConfig {
        /// Whether API calls need a token.
        auth: AuthMode = AuthMode::Open,
        /// Admin token; required when `auth = "token"`.
        admin_token: String = String::new(),
        /// Language of API messages.
        lang: Lang = Lang::Zh,
        /// Systems registered at start-up.
        systems: Vec<String> = Vec::new(),
        /// Largest request body, in bytes.
        max_body: usize = 1 << 20,
        /// Largest pushed message, in bytes.
        max_message: usize = 65536,
        /// Most messages in one batch request.
        max_batch: usize = 1000,
        /// Most groups one connection may be in.
        max_groups_per_client: usize = 256,
        /// Most systems a node (or cluster) keeps in its registry.
        max_systems: usize = 10000,
        /// Most HTTP connections (not WebSockets) open at once on a node.
        max_http_connections: usize = 4096,
        /// Bytes of answers held for one HTTP connection that is not reading
        /// them; past it no further request of it is read.
        max_pending_answers: usize = 65536,
        /// Whether WebSocket clients must present a connect token.
        connect_token: ConnectTokenMode = ConnectTokenMode::Optional,
        /// Furthest in the future a connect token's `exp` may be; "0s" = no limit.
        #[serde(with = "duration_str")]
        connect_token_max_ttl: Duration = Duration::from_secs(24 * 3600),
        /// Time limit for reading one request.
        #[serde(with = "duration_str")]
        request_timeout: Duration = Duration::from_secs(10),
        /// Idle time after which a keep-alive HTTP connection is closed.
        #[serde(with = "duration_str")]
        keepalive_timeout: Duration = Duration::from_secs(60),
    }
}

section! {
    /// `[webhook]`: forwarding client messages to an HTTP endpoint.
    pub struct WebhookConfig {
        /// Endpoint (http:// or https://); empty = none configured here.
        url: String = String::new(),
        /// Retries after a failed delivery.
        retries: u32 = 3,
        /// Deliveries that may wait in the queue.
        queue: usize = 10000,
        /// Time limit for one delivery.
        #[serde(with = "duration_str")]
        timeout: Duration = Duration::from_secs(5),
    }
}

section! {
    /// `[console]`: the built-in web console.
    pub struct ConsoleConfig {
        /// Serve the console.
        enabled: bool = false,
    }
}

section! {
    /// `[cluster]`: multi-node mode coordinated through etcd.
    pub struct ClusterConfig {
        /// Run as a cluster member.
        enabled: bool = false,
        /// Cluster name; nodes with the same name form one cluster.
        name: String = String::from("default"),
        /// Node id; 0 = allocate one in etcd.
        node_id: u16 = 0,
        /// Listener for traffic between nodes.
        listen_addr: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 7900)),
        /// host:port other nodes use to reach this one; required in cluster mode.
        advertise_addr: String = String::new(),
        /// etcd endpoints.
        etcd_endpoints: Vec<String> = vec![String::from("http://127.0.0.1:2379")],
        /// Prefix of every etcd key this cluster uses.
        etcd_prefix: String = String::from("/shardcast"),
        /// Shared secret between nodes; required in cluster mode.
        secret: String = String::new(),
        /// etcd lease time-to-live (at least 1s).
        #[serde(with = "duration_str")]
        lease_ttl: Duration = Duration::from_secs(5),
        /// Time limit for one request to another node or etcd.
        #[serde(with = "duration_str")]
        request_timeout: Duration = Duration::from_secs(2),
    }
}

section! {
    /// `[history]`: groups whose last pushes are kept for late joiners and
    /// long gaps (docs/api.md §9).
    pub struct HistoryConfig {
        /// Which groups keep history; the first rule whose prefix a group's
        /// name starts with applies; no match, no history.
        groups: Vec<HistoryRule> = Vec::new(),
        /// All history one node keeps, in bytes; past it the oldest pushes
        /// of the largest streams go first.
        max_bytes: usize = 128 << 20,
        /// How long a stream's epoch and top offset outlive its last push.
        #[serde(with = "duration_str")]
        meta_ttl: Duration = Duration::from_secs(24 * 3600),
    }
}

/// One `history.groups` rule: `{ prefix = "room:", size = 100, ttl = "10m" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRule {
    /// Groups whose name starts with this (empty: every group).
    pub prefix: String,
    /// Pushes kept per stream.
    pub size: usize,
    /// How long a push is kept.
    #[serde(with = "duration_str")]
    pub ttl: Duration,
}

impl HistoryConfig {
    /// The rule of `group`, if it keeps history.
    pub fn rule(&self, group: &str) -> Option<&HistoryRule> {
        self.groups.iter().find(|r| group.starts_with(&r.prefix))
    }
}

section! {
    /// `[log]`: logging.
    pub struct LogConfig {
        /// A level (trace, debug, info, warn, error) or a tracing filter directive.
        level: String = String::from("info"),
        /// Output format.
        format: LogFormat = LogFormat::Text,
    }
}

/// What WebSocket clients may send (`ws.client_send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientSendPolicy {
    /// Clients may not send.
    #[default]
    Off,
    /// To groups they belong to.
    Group,
    /// To every client.
    All,
    /// Messages are forwarded to the webhook.
    Webhook,
}

impl ClientSendPolicy {
    /// The policy as the config names it (and the welcome tells clients).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Group => "group",
            Self::All => "all",
            Self::Webhook => "webhook",
        }
    }
}

/// API authentication (`api.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No token needed.
    #[default]
    Open,
    /// Calls need a token.
    Token,
}

/// Language of API messages (`api.lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Chinese.
    #[default]
    Zh,
    /// English.
    En,
}

/// Whether WebSocket clients must present a connect token (`api.connect_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectTokenMode {
    /// Checked when present.
    #[default]
    Optional,
    /// Connections without one are refused.
    Required,
}

/// Log output format (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the configuration could not be loaded. Each message carries its
/// cause, which is therefore not also its `source()`: a chain printed whole
/// (`shardcast: {e:#}`) would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The text is not valid TOML; toml's message carries the line and column.
    #[error("{}{}", origin(.path.as_deref()), .cause.to_string().trim_end())]
    Syntax {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// The parse error.
        cause: toml::de::Error,
    },
    /// A key is unknown, has a bad value, or conflicts with another key.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Full dotted key, e.g. `server.workers`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn origin(path: Option<&Path>) -> String {
    path.map(|p| format!("config file {}: ", p.display()))
        .unwrap_or_default()
}

impl Config {
    /// Reads the file (None = built-in defaults), applies SHARDCAST_* overrides
    /// from the process environment, validates.
    pub fn load(path: Option<&Path>) -> Result<(Config, Vec<String>), ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|cause| ConfigError::Read {
                path: p.to_path_buf(),
                cause,
            })?,
            None => String::new(),
        };
        let mut warnings = Vec::new();
        let env = process_env(&mut warnings);
        let (config, more) = Self::parse(&text, env, path)?;
        warnings.extend(more);
        Ok((config, warnings))
    }

    /// Same from text and an explicit environment (testable without touching
    /// the process env).
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        Self::parse(text, env, None)
    }

    /// server.crypto_key decoded: None when empty (or, for a config built in
    /// code without validation, malformed), Some(16 or 32 bytes).
    pub fn crypto_key_bytes(&self) -> Option<Vec<u8>> {
        decode_key(&self.server.crypto_key)
    }

    /// server.workers resolved: 0 → `std::thread::available_parallelism()`,
    /// capped at [`MAX_WORKERS`].
    pub fn worker_count(&self) -> usize {
        match self.server.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(MAX_WORKERS),
            n => n,
        }
    }

    fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        path: Option<&Path>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut table: Table = toml::from_str(text).map_err(|cause| ConfigError::Syntax {
            path: path.map(Path::to_path_buf),
            cause,
        })?;
        let mut warnings = Vec::new();
        let sources = apply_env(&mut table, env, &mut warnings);
        let config = serde_path_to_error::deserialize::<_, Config>(Value::Table(table))
            .map_err(|err| key_error(&err))
            .and_then(|config| config.validate().map(|()| config))
            .map_err(|err| attribute(err, &sources))?;
        if let Some(raw) = raw_key(&config.server.crypto_key) {
            // Said, so that a hex key with a typo is not taken silently.
            warnings.push(format!(
                "server.crypto_key is not hex: its {} characters are the AES-{} key itself, \
                 as go-websocket's CryptoKey",
                raw.len(),
                raw.len() * 8
            ));
        }
        Ok((config, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_limits()?;
        self.validate_values()?;
        self.validate_cluster()?;
        self.validate_combinations()
    }

    /// Numeric and duration lower/upper bounds.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let positive_durations = [
            ("ws.ping_interval", self.ws.ping_interval),
            ("ws.idle_timeout", self.ws.idle_timeout),
            ("api.request_timeout", self.api.request_timeout),
            ("api.keepalive_timeout", self.api.keepalive_timeout),
            ("cluster.request_timeout", self.cluster.request_timeout),
        ];
        for (key, value) in positive_durations {
            ensure(!value.is_zero(), key, "must be greater than zero")?;
        }
        let positive_sizes = [
            ("ws.max_client_message", self.ws.max_client_message),
            ("ws.send_queue_bytes", self.ws.send_queue_bytes),
            ("api.max_body", self.api.max_body),
            ("api.max_batch", self.api.max_batch),
            ("webhook.queue", self.webhook.queue),
        ];
        for (key, value) in positive_sizes {
            ensure(value >= 1, key, "must be at least 1")?;
        }
        let max_workers = format!("must be at most {MAX_WORKERS} (0 = one per core)");
        ensure(
            self.server.workers <= MAX_WORKERS,
            "server.workers",
            &max_workers,
        )?;
        let ttl = self.api.connect_token_max_ttl;
        let ttl_ok = ttl.is_zero() || ttl >= Duration::from_secs(1);
        let ttl_msg = "must be \"0s\" (no limit) or at least 1s";
        ensure(ttl_ok, "api.connect_token_max_ttl", ttl_msg)?;
        let lease_ok = self.cluster.lease_ttl >= Duration::from_secs(1);
        ensure(lease_ok, "cluster.lease_ttl", "must be at least 1s")?;
        self.validate_history()
    }

    fn validate_history(&self) -> Result<(), ConfigError> {
        let h = &self.history;
        for (i, rule) in h.groups.iter().enumerate() {
            let key = format!("history.groups[{i}]");
            let ok = rule.size >= 1 && !rule.ttl.is_zero();
            ensure(
                ok,
                &key,
                "size must be at least 1 and ttl greater than zero",
            )?;
        }
        ensure(h.max_bytes >= 1, "history.max_bytes", "must be at least 1")?;
        ensure(
            !h.meta_ttl.is_zero(),
            "history.meta_ttl",
            "must be greater than zero",
        )
    }

    /// Formats of individual string values.
    fn validate_values(&self) -> Result<(), ConfigError> {
        let key = &self.server.crypto_key;
        let key_ok = key.is_empty() || decode_key(key).is_some();
        let key_msg = "must be empty, 32 hex characters (AES-128) or 64 (AES-256), \
                       or a go-websocket CryptoKey: a string of 16, 24 or 32 bytes";
        ensure(key_ok, "server.crypto_key", key_msg)?;
        let url = &self.webhook.url;
        let url_ok = url.is_empty() || url.starts_with("http://") || url.starts_with("https://");
        ensure(url_ok, "webhook.url", "must start with http:// or https://")?;
        if let Some(bad) = self.api.systems.iter().find(|id| !valid_system_id(id)) {
            let msg = format!(
                "invalid system id {bad:?}: must be 1 to {MAX_SYSTEM_ID_LEN} bytes without control, line separator or bidi control characters"
            );
            return Err(invalid("api.systems", msg));
        }
        let systems_ok = self.api.systems.len() <= self.api.max_systems;
        let msg = "more systems than api.max_systems";
        ensure(systems_ok, "api.systems", msg)?;
        let level_ok = !self.log.level.trim().is_empty();
        ensure(level_ok, "log.level", "must not be empty")
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        ensure(!c.name.is_empty(), "cluster.name", "must not be empty")?;
        let addr_ok = c.advertise_addr.is_empty() || is_node_addr(&c.advertise_addr);
        let addr_msg = "must be host:port: an IP address, or a host name of ASCII letters, \
                        digits, '.' and '-'; a port from 1 to 65535";
        ensure(addr_ok, "cluster.advertise_addr", addr_msg)?;
        if !c.enabled {
            return Ok(());
        }
        let required = "required in cluster mode";
        ensure(
            !self.server.crypto_key.is_empty(),
            "server.crypto_key",
            required,
        )?;
        ensure(!c.secret.is_empty(), "cluster.secret", required)?;
        ensure(
            !c.advertise_addr.is_empty(),
            "cluster.advertise_addr",
            required,
        )?;
        let endpoints = "at least one endpoint is required in cluster mode";
        ensure(
            !c.etcd_endpoints.is_empty(),
            "cluster.etcd_endpoints",
            endpoints,
        )
    }

    fn validate_combinations(&self) -> Result<(), ConfigError> {
        let token_ok = self.api.auth != AuthMode::Token
            || self.api.admin_token.chars().count() >= MIN_ADMIN_TOKEN;
        ensure(
            token_ok,
            "api.admin_token",
            "at least 16 characters are required when api.auth = \"token\"",
        )?;
        let no_webhook = self.ws.client_send == ClientSendPolicy::Webhook
            && self.api.auth == AuthMode::Open
            && self.webhook.url.is_empty();
        let msg = "\"webhook\" needs webhook.url when api.auth = \"open\"";
        ensure(!no_webhook, "ws.client_send", msg)
    }
}

fn invalid(key: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn ensure(ok: bool, key: &str, message: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, message))
    }
}

/// Turns a deserialization failure into an error naming the full key.
fn key_error(err: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let message = err.inner().message().trim();
    let message = if message.starts_with("unknown field") {
        "unknown key"
    } else {
        message
    };
    invalid(&err.path().to_string(), message)
}

/// Names the environment variable when the offending key came from one.
fn attribute(err: ConfigError, sources: &HashMap<String, String>) -> ConfigError {
    match err {
        ConfigError::Invalid { key, message } => {
            let var = sources
                .iter()
                .find(|(k, _)| key == **k || key.starts_with(&format!("{k}[")));
            let message = match var {
                Some((_, var)) => format!("{message} (from environment variable {var})"),
                None => message,
            };
            ConfigError::Invalid { key, message }
        }
        other => other,
    }
}

/// `server.crypto_key` as key bytes: 32 or 64 hex characters (AES-128,
/// AES-256), or else go-websocket's `CryptoKey` as it is written there: a
/// string of 16, 24 or 32 bytes that is the AES key itself (AES-128, -192,
/// -256). A 32-character key of hex digits is read as hex.
fn decode_key(text: &str) -> Option<Vec<u8>> {
    decode_hex_key(text).or_else(|| raw_key(text).map(<[u8]>::to_vec))
}

fn decode_hex_key(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 32 && hex.len() != 64 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(((nibble(pair[0])? << 4) | nibble(pair[1])?) as u8))
        .collect()
}

/// A go-websocket `CryptoKey`: its bytes, when it is no hex key and has an
/// AES key's length.
fn raw_key(text: &str) -> Option<&[u8]> {
    let raw = decode_hex_key(text).is_none() && matches!(text.len(), 16 | 24 | 32);
    raw.then_some(text.as_bytes())
}

fn valid_system_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SYSTEM_ID_LEN && !id.chars().any(forbidden_in_id)
}

/// A character no id or name may hold (docs/api.md §7.1): ids and names end
/// up in logs, keys, headers and consoles, where these split lines or make
/// text read otherwise than it is stored. The C0 and C1 controls and DEL
/// (U+0000–U+001F, U+007F–U+009F, NEL U+0085 among them), the line and
/// paragraph separators U+2028 / U+2029, and the bidirectional embeddings,
/// overrides and isolates U+202A–U+202E, U+2066–U+2069. Shared by
/// `api.systems` here and the API's ids, names and userIds (`api::body`).
pub fn forbidden_in_id(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Longest host name in a node address (DNS: 253 characters).
const MAX_HOST_LEN: usize = 253;

/// Whether `addr` is an address a node may advertise (`cluster.advertise_addr`,
/// the `addr` of a node record in etcd): an IP socket address (`10.0.0.1:7900`,
/// `[fd00::1]:7900`) or `host:port` whose host has only ASCII letters, digits,
/// `.` and `-` (at most 253 of them); the port from 1 to 65535. Peers dial it
/// and log it, so nothing else — no space, no control character — is taken.
pub fn is_node_addr(addr: &str) -> bool {
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return socket.port() != 0;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.starts_with('+') && port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY128: &str = "000102030405060708090a0b0c0d0e0f";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Vec::new()).map(|(config, _)| config)
    }

    fn parse_env(pairs: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_toml_str("", env(pairs))
    }

    /// The key an error names, or a panic describing what came back instead.
    fn error_key(result: Result<Config, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_equal_the_table() {
        let (c, warnings) = Config::from_toml_str("", Vec::new()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(c, Config::default());
        assert_eq!(
            c.server.http_addr,
            "0.0.0.0:7800".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.server.workers, 0);
        assert_eq!(c.server.data_dir, PathBuf::from("data"));
        assert_eq!(c.server.crypto_key, "");
        assert_eq!(c.server.max_connections, 0);
        assert_eq!(c.server.shutdown_timeout, secs(10));
        assert_eq!(c.ws.ping_interval, secs(25));
        assert_eq!(c.ws.idle_timeout, secs(60));
        assert_eq!(c.ws.max_client_message, 8192);
        assert_eq!(c.ws.send_queue_bytes, 1_048_576);
        assert!(!c.ws.echo);
        assert_eq!(c.ws.client_send, ClientSendPolicy::Off);
        assert_eq!(c.ws.client_send_rate, 20);
        assert!(c.ws.notices);
        assert!(c.ws.compression);
        assert_eq!(c.ws.compression_min_size, 256);
        assert_eq!(c.api.auth, AuthMode::Open);
        assert_eq!(c.api.admin_token, "");
        assert_eq!(c.api.lang, Lang::Zh);
        assert!(c.api.systems.is_empty());
        assert_eq!(c.api.max_body, 1_048_576);
        assert_eq!(c.api.max_message, 65536);
        assert_eq!(c.api.max_batch, 1000);
        assert_eq!(c.api.connect_token, ConnectTokenMode::Optional);
        assert_eq!(c.api.request_timeout, secs(10));
        assert_eq!(c.api.keepalive_timeout, secs(60));
        assert_eq!(c.webhook.url, "");
        assert_eq!(c.webhook.retries, 3);
        assert_eq!(c.webhook.queue, 10000);
        assert_eq!(c.webhook.timeout, secs(5));
        assert!(!c.console.enabled);
        assert!(!c.cluster.enabled);
        assert_eq!(c.cluster.name, "default");
        assert_eq!(c.cluster.node_id, 0);
        assert_eq!(
            c.cluster.listen_addr,
            "0.0.0.0:7900".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.cluster.advertise_addr, "");
        assert_eq!(c.cluster.etcd_endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(c.cluster.etcd_prefix, "/shardcast");
        assert_eq!(c.cluster.secret, "");
        assert_eq!(c.cluster.lease_ttl, secs(5));
        assert_eq!(c.cluster.request_timeout, secs(2));
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    const FULL: &str = r#"
        [server]
        http_addr = "127.0.0.1:9000"
        workers = 4
        data_dir = "/var/lib/shardcast"
        crypto_key = "000102030405060708090a0b0c0d0e0f"
        max_connections = 50000
        shutdown_timeout = "30s"
        [ws]
        ping_interval = "10s"
        idle_timeout = "2m"
        max_client_message = 4096
        send_queue_bytes = 65536
        echo = true
        notices = false
        client_send = "group"
        client_send_rate = 0
        compression = false
        compression_min_size = 0
        [api]
        auth = "token"
        admin_token = "t0k-of-16-chars!"
        lang = "en"
        systems = ["a", "b"]
        max_body = 2048
        max_message = 1024
        max_batch = 10
        connect_token = "required"
        request_timeout = "500ms"
        keepalive_timeout = "1h"
        [webhook]
        url = "https://example.test/hook"
        retries = 0
        queue = 5
        timeout = "1.5s"
        [console]
        enabled = true
        [cluster]
        enabled = true
        name = "prod"
        node_id = 7
        listen_addr = "10.0.0.1:7901"
        advertise_addr = "node7.internal:7901"
        etcd_endpoints = ["http://e1:2379", "http://e2:2379"]
        etcd_prefix = "/sc"
        secret = "s3cret"
        lease_ttl = "3d"
        request_timeout = "250ms"
        [log]
        level = "shardcast=debug,info"
        format = "json"
    "#;

    #[test]
    fn full_file_round_trip() {
        let c = parse(FULL).unwrap();
        assert_eq!(
            c.server.http_addr,
            "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.server.workers, 4);
        assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/shardcast"));
        assert_eq!(c.server.shutdown_timeout, secs(30));
        assert_eq!(c.ws.idle_timeout, secs(120));
        assert!(c.ws.echo);
        assert!(!c.ws.notices);
        assert!(!c.ws.compression);
        assert_eq!(c.ws.compression_min_size, 0);
        assert_eq!(c.ws.client_send, ClientSendPolicy::Group);
        assert_eq!(c.api.auth, AuthMode::Token);
        assert_eq!(c.api.lang, Lang::En);
        assert_eq!(c.api.systems, ["a", "b"]);
        assert_eq!(c.api.connect_token, ConnectTokenMode::Required);
        assert_eq!(c.api.request_timeout, Duration::from_millis(500));
        assert_eq!(c.api.keepalive_timeout, secs(3600));
        assert_eq!(c.webhook.timeout, Duration::from_millis(1500));
        assert!(c.console.enabled && c.cluster.enabled);
        assert_eq!(c.cluster.node_id, 7);
        assert_eq!(c.cluster.lease_ttl, secs(3 * 86_400));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_ne!(c, Config::default());
        // Serializing and parsing again gives back the same configuration.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse(&text).unwrap(), c);
    }

    #[test]
    fn env_overrides_each_kind() {
        let file = "[server]\nworkers = 2\n[ws]\necho = false\n";
        let vars = env(&[
            ("SHARDCAST_SERVER_HTTP_ADDR", "127.0.0.1:9000"),
            ("SHARDCAST_SERVER_WORKERS", "8"),
            ("SHARDCAST_WS_ECHO", "true"),
            ("SHARDCAST_API_SYSTEMS", r#"["a","b"]"#),
            ("SHARDCAST_WS_PING_INTERVAL", "5m"),
            ("SHARDCAST_WS_CLIENT_SEND", "all"),
            ("SHARDCAST_API_ADMIN_TOKEN", "123456"),
            ("SHARDCAST_CLUSTER_NAME", r#""quoted""#),
            ("SHARDCAST_WS_COMPRESSION", "false"),
            ("SHARDCAST_WS_COMPRESSION_MIN_SIZE", "1024"),
        ]);
        let (c, warnings) = Config::from_toml_str(file, vars).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            c.server.http_addr,
            "127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.server.workers, 8, "the environment wins over the file");
        assert!(c.ws.echo);
        assert_eq!(c.api.systems, ["a", "b"]);
        assert_eq!(c.ws.ping_interval, secs(300));
        assert_eq!(c.ws.client_send, ClientSendPolicy::All);
        assert_eq!(c.api.admin_token, "123456", "digits stay a string");
        assert_eq!(c.cluster.name, "quoted");
        assert!(!c.ws.compression);
        assert_eq!(c.ws.compression_min_size, 1024);
    }

    #[test]
    fn env_override_with_bad_value_names_key_and_variable() {
        let err = parse_env(&[("SHARDCAST_SERVER_WORKERS", "x")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("config key `server.workers`: invalid type"),
            "{text}"
        );
        assert!(text.contains("SHARDCAST_SERVER_WORKERS"), "{text}");
        let err = parse_env(&[("SHARDCAST_WS_IDLE_TIMEOUT", "0s")]).unwrap_err();
        assert!(err.to_string().contains("`ws.idle_timeout`"), "{err}");
    }

    #[test]
    fn unknown_env_var_is_a_warning() {
        let (c, warnings) = parse_env(&[
            ("SHARDCAST_SERVER_BOGUS", "1"),
            ("SHARDCAST_NOPE", "1"),
            ("OTHER_SERVER_WORKERS", "9"),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("SHARDCAST_NOPE"));
        assert!(warnings[1].contains("SHARDCAST_SERVER_BOGUS"));
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = parse("[server]\nbogus = 1\n").unwrap_err();
        assert_eq!(err.to_string(), "config key `server.bogus`: unknown key");
        assert_eq!(error_key(parse("[bogus]\n")), "bogus");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[server]\nworkers = \"x\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `server.workers`: invalid type: string \"x\", expected usize"
        );
        let cases = [
            ("[ws]\nping_interval = 25", "ws.ping_interval"),
            ("[ws]\nclient_send = \"sometimes\"", "ws.client_send"),
            ("[ws]\ncompression = \"yes\"", "ws.compression"),
            ("[ws]\ncompression_min_size = -1", "ws.compression_min_size"),
            (
                "[ws]\ncompression_min_size = 1.5",
                "ws.compression_min_size",
            ),
            ("[server]\nhttp_addr = \"nowhere\"", "server.http_addr"),
            ("[cluster]\nnode_id = 70000", "cluster.node_id"),
            ("[api]\nsystems = \"a\"", "api.systems"),
            ("server = 1", "server"),
        ];
        for (text, key) in cases {
            assert_eq!(error_key(parse(text)), key, "{text}");
        }
    }

    #[test]
    fn syntax_error_reports_the_line() {
        let err = parse("[server]\nworkers = = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn invalid_combinations_name_the_key() {
        let cluster = format!(
            "[server]\ncrypto_key = \"{KEY128}\"\n[cluster]\nenabled = true\n\
             secret = \"s\"\nadvertise_addr = \"h:1\"\n"
        );
        assert!(parse(&cluster).is_ok());
        let cases = [
            (
                "[cluster]\nenabled = true\nsecret = \"s\"\nadvertise_addr = \"h:1\"",
                "server.crypto_key",
            ),
            (&cluster.replace("secret = \"s\"", ""), "cluster.secret"),
            (
                &cluster.replace("advertise_addr = \"h:1\"", ""),
                "cluster.advertise_addr",
            ),
            (
                &format!("{cluster}etcd_endpoints = []"),
                "cluster.etcd_endpoints",
            ),
            ("[api]\nauth = \"token\"", "api.admin_token"),
            (
                "[api]\nauth = \"token\"\nadmin_token = \"123456\"",
                "api.admin_token",
            ),
            ("[ws]\nclient_send = \"webhook\"", "ws.client_send"),
            ("[server]\ncrypto_key = \"abc\"", "server.crypto_key"),
            (
                "[server]\ncrypto_key = \"zz0102030405060708090a0b0c0d0e0f0\"",
                "server.crypto_key",
            ),
            (
                "[server]\ncrypto_key = \"Adba723b7fe06819Adba723b7fe06819Adba723b7fe0681\"",
                "server.crypto_key",
            ),
            ("[webhook]\nurl = \"ftp://x\"", "webhook.url"),
            ("[api]\nsystems = [\"ok\", \"\"]", "api.systems"),
            ("[api]\nsystems = [\"a\\nb\"]", "api.systems"),
            ("[api]\nsystems = [\"a\\u0085b\"]", "api.systems"),
            ("[api]\nsystems = [\"a\\u202Eb\"]", "api.systems"),
            ("[api]\nsystems = [\"a\\u2028b\"]", "api.systems"),
            ("[api]\nsystems = [\"a\\u2067b\"]", "api.systems"),
            (
                &format!("[api]\nsystems = [\"{}\"]", "x".repeat(129)),
                "api.systems",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(error_key(parse(text)), key, "{text}");
        }
        let err = parse(&cluster.replace("secret = \"s\"", "")).unwrap_err();
        assert!(
            err.to_string().contains("required in cluster mode"),
            "{err}"
        );
    }

    #[test]
    fn webhook_client_send_is_fine_with_url_or_token_auth() {
        let with_url = "[ws]\nclient_send = \"webhook\"\n[webhook]\nurl = \"http://h/x\"";
        assert!(parse(with_url).is_ok());
        let with_token =
            "[ws]\nclient_send = \"webhook\"\n[api]\nauth = \"token\"\nadmin_token = \"t123456789abcdef\"";
        assert!(parse(with_token).is_ok());
        assert!(parse(&format!("[api]\nsystems = [\"{}\"]", "x".repeat(128))).is_ok());
    }

    #[test]
    fn limits_name_the_key() {
        let cases = [
            ("[server]\nworkers = 256", "server.workers"),
            ("[ws]\nping_interval = \"0s\"", "ws.ping_interval"),
            ("[ws]\nidle_timeout = \"0ms\"", "ws.idle_timeout"),
            ("[ws]\nmax_client_message = 0", "ws.max_client_message"),
            ("[ws]\nsend_queue_bytes = 0", "ws.send_queue_bytes"),
            ("[api]\nmax_body = 0", "api.max_body"),
            ("[api]\nmax_batch = 0", "api.max_batch"),
            ("[api]\nrequest_timeout = \"0s\"", "api.request_timeout"),
            ("[api]\nkeepalive_timeout = \"0s\"", "api.keepalive_timeout"),
            (
                "[api]\nconnect_token_max_ttl = \"500ms\"",
                "api.connect_token_max_ttl",
            ),
            ("[webhook]\nqueue = 0", "webhook.queue"),
            ("[cluster]\nname = \"\"", "cluster.name"),
            ("[cluster]\nlease_ttl = \"999ms\"", "cluster.lease_ttl"),
            (
                "[cluster]\nrequest_timeout = \"0s\"",
                "cluster.request_timeout",
            ),
            (
                "[cluster]\nadvertise_addr = \"nohost\"",
                "cluster.advertise_addr",
            ),
            (
                "[cluster]\nadvertise_addr = \"node_1:7900\"",
                "cluster.advertise_addr",
            ),
            (
                "[cluster]\nadvertise_addr = \"h:1\\nforged\"",
                "cluster.advertise_addr",
            ),
            ("[log]\nlevel = \" \"", "log.level"),
        ];
        for (text, key) in cases {
            assert_eq!(error_key(parse(text)), key, "{text}");
        }
        assert!(parse("[server]\nworkers = 255\n[ws]\nping_interval = \"3d\"").is_ok());
        for ttl in ["0s", "1s", "30d"] {
            let text = format!("[api]\nconnect_token_max_ttl = \"{ttl}\"");
            assert!(parse(&text).is_ok(), "{text}");
        }
        let default = Config::default().api.connect_token_max_ttl;
        assert_eq!(default, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn crypto_key_and_worker_count() {
        assert_eq!(Config::default().crypto_key_bytes(), None);
        let c = parse(&format!("[server]\ncrypto_key = \"{KEY128}\"")).unwrap();
        let want: Vec<u8> = (0..16).collect();
        assert_eq!(c.crypto_key_bytes(), Some(want));
        let c = parse(&format!("[server]\ncrypto_key = \"{}\"", "Ff".repeat(32))).unwrap();
        assert_eq!(c.crypto_key_bytes(), Some(vec![0xff; 32]));
        // go-websocket's CryptoKey as written there: the string is the key.
        for key in [
            "Adba723b7fe06819",
            "0123456789abcdefghijklmn",
            "zz0102030405060708090a0b0c0d0e0f",
        ] {
            let text = format!("[server]\ncrypto_key = \"{key}\"");
            let (c, warnings) = Config::from_toml_str(&text, []).unwrap();
            assert_eq!(c.crypto_key_bytes(), Some(key.as_bytes().to_vec()));
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("server.crypto_key is not hex")),
                "{warnings:?}"
            );
        }
        let (_, warnings) =
            Config::from_toml_str(&format!("[server]\ncrypto_key = \"{KEY128}\""), []).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let n = Config::default().worker_count();
        assert!((1..=MAX_WORKERS).contains(&n));
        assert_eq!(parse("[server]\nworkers = 3").unwrap().worker_count(), 3);
    }

    #[test]
    fn shipped_config_loads() {
        let shipped = include_str!("../../conf/shardcast.toml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shardcast.toml");
        std::fs::write(&path, shipped).unwrap();
        // Through `load` (the process environment is not under test control, so
        // compare against the environment-free parse of the same text).
        let (loaded, _) = Config::load(Some(&path)).unwrap();
        let (c, warnings) = Config::from_toml_str(shipped, Vec::new()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            c.server.http_addr,
            "0.0.0.0:7800".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.api.systems, ["demo"]);
        // A newcomer's node: standalone, with the console on.
        assert!(c.console.enabled && !c.cluster.enabled);
        let mut expected = Config::default();
        expected.api.systems = vec!["demo".to_string()];
        expected.console.enabled = true;
        // Sessions survive a drop for 30 s (docs/api.md §8).
        expected.ws.resume_window = std::time::Duration::from_secs(30);
        // The console's rooms keep history (docs/api.md §9).
        expected.history.groups = vec![HistoryRule {
            prefix: "room".to_string(),
            size: 50,
            ttl: std::time::Duration::from_secs(600),
        }];
        assert_eq!(c, expected);
        if !std::env::vars().any(|(k, _)| k.starts_with(env::ENV_PREFIX)) {
            assert_eq!(loaded, c);
        }
    }

    #[test]
    fn node_addresses_are_ip_or_plain_host_names_with_a_port() {
        for good in [
            "10.0.0.1:7900",
            "[fd00::1]:7900",
            "[::1]:1",
            "node1:7900",
            "node7.internal:65535",
            "a-b.c-d.example:80",
        ] {
            assert!(is_node_addr(good), "{good}");
        }
        let long = format!("{}:1", "a".repeat(MAX_HOST_LEN + 1));
        for bad in [
            "",
            "nohost",
            ":7900",
            "h:0",
            "h:65536",
            "h:+1",
            "h:",
            "10.0.0.1:0",
            "node_1:7900",
            "h o:1",
            "h:1\nforged",
            "127.0.0.1:1\n2026-01-01T00:00:00Z ERROR forged",
            "h\r:1",
            "h\u{85}:1",
            "h\u{2028}:1",
            "h\u{202e}:1",
            "::1:7900x",
            "h:1:2",
            "ünï:1",
            &long,
        ] {
            assert!(!is_node_addr(bad), "{bad:?}");
        }
    }

    #[test]
    fn load_reports_missing_file_and_defaults_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let err = Config::load(Some(&path)).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("missing.toml"), "{err}");
        std::fs::write(&path, "[server\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
        assert!(Config::load(None).is_ok());
    }
}
