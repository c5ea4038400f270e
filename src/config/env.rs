//! The environment overlay: any key `section.key` can be set by a variable
//! `SHARDCAST_<SECTION>_<KEY>` (docs/api.md §6), for orchestrators that can
//! only inject environment variables.
//!
//! The list of keys is derived from the serialized defaults, so it cannot
//! drift from the configuration structs.

use std::collections::HashMap;

use serde::Deserialize;
use toml::{Table, Value};

use super::Config;

/// Prefix of environment variables that override config keys.
pub(super) const ENV_PREFIX: &str = "SHARDCAST_";

/// One key that an environment variable may override.
struct EnvKey {
    section: String,
    key: String,
    /// The key holds a string, so the raw value is used unless it is a quoted
    /// TOML string (`SHARDCAST_API_ADMIN_TOKEN=123456` stays a string).
    text: bool,
}

/// Maps `SHARDCAST_<SECTION>_<KEY>` to its key, for every key of the defaults.
fn env_keys() -> HashMap<String, EnvKey> {
    let defaults = Table::try_from(Config::default())
        .expect("built-in defaults always serialize to a TOML table");
    let mut keys = HashMap::new();
    for (section, value) in defaults {
        let Value::Table(fields) = value else {
            continue;
        };
        for (key, value) in fields {
            let name = format!("{ENV_PREFIX}{section}_{key}").to_ascii_uppercase();
            let text = value.is_str();
            let section = section.clone();
            keys.insert(name, EnvKey { section, key, text });
        }
    }
    keys
}

/// Inserts the overrides into `table`; returns which variable set which key.
pub(super) fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    warnings: &mut Vec<String>,
) -> HashMap<String, String> {
    let keys = env_keys();
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut sources = HashMap::new();
    for (name, raw) in vars {
        let Some(k) = keys.get(&name) else {
            warnings.push(format!(
                "ignoring environment variable {name}: it names no config key"
            ));
            continue;
        };
        let section = table
            .entry(k.section.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        // A non-table section is reported by deserialization, naming the section.
        if let Value::Table(section) = section {
            section.insert(k.key.clone(), env_value(&raw, k.text));
            sources.insert(format!("{}.{}", k.section, k.key), name);
        }
    }
    sources
}

/// Reads an environment value as a TOML value when it is one, else as a string.
fn env_value(raw: &str, text: bool) -> Value {
    let parsed = Value::deserialize(toml::de::ValueDeserializer::new(raw)).ok();
    match parsed {
        Some(Value::String(s)) => Value::String(s),
        Some(value) if !text => value,
        _ => Value::String(raw.to_string()),
    }
}

/// The `SHARDCAST_*` variables of the process; non-UTF-8 ones become warnings.
pub(super) fn process_env(warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) => warnings.push(format!(
                "ignoring environment variable {name}: value is not valid UTF-8"
            )),
        }
    }
    vars
}
