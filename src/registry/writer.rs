//! The standalone registry on a thread of its own.
//!
//! A register rewrites and fsyncs `systems.json`: milliseconds during which
//! a core that did it itself would serve nothing, and a lock the cores would
//! share. Instead one thread owns the `Registry` and takes the registers in
//! turn from a channel; the core that asked awaits the answer like any
//! other reply.

use std::io;
use std::thread;

use tokio::sync::{mpsc, oneshot};

use super::{Registry, RegistryError, SystemEntry};

type Job = (
    String,
    SystemEntry,
    oneshot::Sender<Result<(), RegistryError>>,
);

pub struct RegistryWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl RegistryWriter {
    /// Starts the thread that owns `registry` from now on.
    pub fn start(mut registry: Registry) -> io::Result<RegistryWriter> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        thread::Builder::new()
            .name("shardcast-registry".into())
            .spawn(move || {
                while let Some((id, entry, reply)) = rx.blocking_recv() {
                    let _ = reply.send(registry.register(&id, entry));
                }
            })?;
        Ok(RegistryWriter { jobs })
    }

    /// Registers `id` (see `Registry::register`), off the caller's thread.
    pub async fn register(&self, id: &str, entry: SystemEntry) -> Result<(), RegistryError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((id.to_owned(), entry, reply))
            .map_err(|_| RegistryError::Stopped)?;
        answer.await.map_err(|_| RegistryError::Stopped)?
    }
}
