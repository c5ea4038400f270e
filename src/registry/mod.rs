//! The registry of systems (tenants) of a standalone node.
//!
//! Registration is rare and must be durable and exclusive, so the
//! authoritative copy lives here behind a mutex and is persisted to
//! `server.data_dir/systems.json` (written to a temp file, then renamed, so a
//! crash never leaves half a file). Cores never read it on the hot path: each
//! keeps its own copy, updated through its mailbox before `/api/register`
//! answers.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = "systems.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemEntry {
    /// Token mode: the 32-hex-character secret (the API `Token`, the key of
    /// connect tokens and webhook signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

#[cfg(feature = "node")]
mod writer;
#[cfg(feature = "node")]
pub use writer::RegistryWriter;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("system id is already registered")]
    Taken,
    #[error("the registry thread has stopped")]
    Stopped,
    // The cause is in the message, so it is no `source()` (printed whole,
    // a chain would say it twice).
    #[error("registry file {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("registry file {path} is not valid: {cause}")]
    Corrupt {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize, Default)]
struct FileFormat {
    systems: BTreeMap<String, SystemEntry>,
}

pub struct Registry {
    path: PathBuf,
    systems: BTreeMap<String, SystemEntry>,
}

impl Registry {
    /// Loads `dir/systems.json` (absent = empty), creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let path = dir.join(FILE);
        let io_err = |cause| RegistryError::Io {
            path: path.clone(),
            cause,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let systems = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<FileFormat>(&bytes)
                    .map_err(|cause| RegistryError::Corrupt {
                        path: path.clone(),
                        cause,
                    })?
                    .systems
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err(e)),
        };
        Ok(Self { path, systems })
    }

    pub fn systems(&self) -> &BTreeMap<String, SystemEntry> {
        &self.systems
    }

    /// Adds `id` unless present, and persists. The entry is kept only if it
    /// reached the disk.
    pub fn register(&mut self, id: &str, entry: SystemEntry) -> Result<(), RegistryError> {
        if self.systems.contains_key(id) {
            return Err(RegistryError::Taken);
        }
        self.systems.insert(id.to_owned(), entry);
        if let Err(e) = self.save() {
            self.systems.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// Gives every system without a secret a new one from `make`, and
    /// persists; returns their ids (token mode: a system created in open
    /// mode must not stay verifiable with an empty key).
    pub fn give_secrets(
        &mut self,
        mut make: impl FnMut() -> io::Result<String>,
    ) -> Result<Vec<String>, RegistryError> {
        let mut given = Vec::new();
        for (id, entry) in self.systems.iter_mut() {
            if entry.secret.as_deref().is_none_or(str::is_empty) {
                let secret = make().map_err(|cause| RegistryError::Io {
                    path: self.path.clone(),
                    cause,
                })?;
                entry.secret = Some(secret);
                given.push(id.clone());
            }
        }
        if !given.is_empty() {
            self.save()?;
        }
        Ok(given)
    }

    /// Writes the file (mode 0600: it holds the secrets) through a
    /// temporary file renamed over it.
    fn save(&self) -> Result<(), RegistryError> {
        let io_err = |cause| RegistryError::Io {
            path: self.path.clone(),
            cause,
        };
        let body = serde_json::to_vec_pretty(&FileFormat {
            systems: self.systems.clone(),
        })
        .map_err(|e| io_err(io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err)?;
        f.write_all(&body).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        fs::rename(&tmp, &self.path).map_err(io_err)
    }
}

/// A new random secret: 32 lowercase hex characters (128 bits).
pub fn new_secret() -> io::Result<String> {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(io::Error::other)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_persists_and_refuses_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Registry::open(dir.path()).expect("open");
        r.register("a", SystemEntry::default()).expect("first");
        assert!(matches!(
            r.register("a", SystemEntry::default()),
            Err(RegistryError::Taken)
        ));
        let entry = SystemEntry {
            secret: Some(new_secret().expect("random")),
            webhook_url: None,
        };
        r.register("b", entry.clone()).expect("second");
        let again = Registry::open(dir.path()).expect("reopen");
        assert_eq!(again.systems().len(), 2);
        assert_eq!(again.systems().get("b"), Some(&entry));
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(FILE), b"{not json").expect("write");
        assert!(matches!(
            Registry::open(dir.path()),
            Err(RegistryError::Corrupt { .. })
        ));
    }

    #[test]
    fn secrets_are_32_lowercase_hex() {
        let s = new_secret().expect("random");
        assert_eq!(s.len(), 32);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
