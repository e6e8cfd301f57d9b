//! One process per run directory: `dlcli train` holds `dlcli.lock` (the holder's pid and
//! start time) for as long as it writes there, so a second `train --resume` or `--force` on
//! the same directory is refused instead of interleaving checkpoints. A lock whose holder is
//! gone (killed with -9, the machine rebooted) is recognised as stale and taken over: the pid
//! is not running, or runs a process that started at another time (a reused pid).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The lock's file in a run directory.
pub const LOCK: &str = "dlcli.lock";

/// A held lock on a run directory, released when dropped.
pub struct RunLock {
    path: PathBuf,
}

/// A process as the lock names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    pid: u32,
    /// Clock ticks after boot at which it started (Linux's /proc/PID/stat field 22); 0 where
    /// the system does not say.
    started: u64,
}

impl Holder {
    fn this() -> Holder {
        let pid = std::process::id();
        Holder { pid, started: started(pid).unwrap_or(0) }
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut words = text.split_whitespace();
        Some(Holder { pid: words.next()?.parse().ok()?, started: words.next()?.parse().ok()? })
    }

    /// Whether this process still runs. Without /proc (not Linux) a lock is taken as held.
    fn running(&self) -> bool {
        if !Path::new("/proc/self/stat").exists() {
            return true;
        }
        started(self.pid).is_some_and(|s| s == self.started)
    }
}

/// When process `pid` started, from /proc (None if it is not running).
fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: count fields after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl RunLock {
    /// Takes the lock of run directory `dir`, taking over a stale one (with a warning).
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK);
        let this = Holder::this();
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    writeln!(file, "{} {}", this.pid, this.started)
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).ok().and_then(|t| Holder::parse(&t));
                    match holder {
                        Some(h) if h.running() => bail!(
                            "{} is in use by dlcli process {} (its lock {}); wait for it to finish or stop it first",
                            dir.display(),
                            h.pid,
                            path.display()
                        ),
                        _ => {
                            let who =
                                holder.map_or("an unreadable holder".to_string(), |h| format!("process {}", h.pid));
                            eprintln!(
                                "warning: {} was left by {who}, which is no longer running; taking it over",
                                path.display()
                            );
                            std::fs::remove_file(&path)
                                .with_context(|| format!("removing the stale {}", path.display()))?;
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("{}: another process took the lock as this one took over the stale one; try again", path.display())
    }

    /// Fails if a running process holds `dir` (what `--force` checks before removing it).
    pub fn refuse_if_held(dir: &Path) -> Result<()> {
        drop(RunLock::acquire(dir)?);
        Ok(())
    }

    fn release(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_is_refused_and_a_dead_or_reused_pid_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("dlcli-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let held = RunLock::acquire(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(LOCK)).unwrap();
        assert_eq!(Holder::parse(&text), Some(Holder::this()));
        let refused = RunLock::acquire(&dir).err().unwrap().to_string();
        assert!(refused.contains(&format!("in use by dlcli process {}", std::process::id())), "{refused}");
        drop(held);
        assert!(!dir.join(LOCK).exists(), "dropping the lock removes it");
        // A pid that runs nothing, and this pid with another start time (a reused pid).
        for stale in
            [format!("{} 1\n", u32::MAX - 1), format!("{} {}\n", std::process::id(), Holder::this().started + 1)]
        {
            std::fs::write(dir.join(LOCK), stale).unwrap();
            let lock = RunLock::acquire(&dir).unwrap();
            let text = std::fs::read_to_string(dir.join(LOCK)).unwrap();
            assert_eq!(Holder::parse(&text), Some(Holder::this()));
            drop(lock);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
