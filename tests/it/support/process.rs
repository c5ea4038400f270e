//! Programs a test runs that start programs of their own (node and its Chromium, a
//! shell script and its nodes, a `python3` wrapper and its interpreter): spawned in a
//! process group of their own and killed as a group when the test is done with them,
//! however it ends.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// A child leading its own process group; the group is killed on drop if it still runs.
pub struct Group(pub Child);

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Group> {
        cmd.process_group(0).spawn().map(Group)
    }

    /// Kills the whole group now and reaps the leader.
    pub fn kill(&mut self) {
        // SAFETY: kill(2) on the process group of a child we spawned.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
