//! The per-system runtime directory: where every endpoint's socket lives.
//!
//! ```text
//! $XDG_RUNTIME_DIR/greenroom/          (or /tmp/greenroom-<uid>/)   mode 0700
//! └── s<pid>-<n>/                      one actor system             mode 0700
//!     ├── 1.sock                       endpoint @1 (an actor or a client) listens here
//!     └── 2.sock
//! ```
//!
//! Both levels are created mode 0700 and must be owned by the current user: the directory
//! is the first line of defence (path sockets obey file permissions, abstract ones would
//! not), and every accepted connection still checks the peer's uid. Unix socket paths are
//! limited to 108 bytes, so the layout is short and the limit is checked up front.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use greenroom_protocol::Address;

use crate::error::{Error, Result};

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Longest file name we put in the directory: `u64::MAX` digits plus `.sock`.
const LONGEST_NAME: usize = 20 + 5;

/// The default parent of runtime directories: `$XDG_RUNTIME_DIR/greenroom`, or
/// `/tmp/greenroom-<uid>` when that is not set.
pub fn default_base() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("greenroom"),
        _ => std::env::temp_dir().join(format!("greenroom-{}", nix::unistd::getuid())),
    }
}

/// The socket path of `address` inside runtime directory `dir`.
pub fn socket_path(dir: &Path, address: Address) -> PathBuf {
    dir.join(format!("{}.sock", address.id()))
}

/// The runtime directory of the system named `name` (one started with `greenroom start`),
/// under `base` ([`default_base`] unless given).
pub fn named_system_dir(base: &Path, name: &str) -> Result<PathBuf> {
    let valid = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(Error::InvalidSystemName(name.to_owned()));
    }
    Ok(base.join(format!("n-{name}")))
}

/// Creates `base`, the parent of runtime directories, mode 0700, if it is not there.
pub fn create_base(base: &Path) -> Result<()> {
    ensure_private_dir(base, false).map_err(|why| Error::RuntimeDir {
        path: base.to_path_buf(),
        why,
    })
}

/// The names of the named systems whose directories are under `base` (running or stale).
pub fn named_systems(base: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("n-").map(str::to_owned))
                .filter(|name| named_system_dir(base, name).is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Where further clients connect to the admin of the system in `dir`.
pub fn admin_socket_path(dir: &Path) -> PathBuf {
    dir.join("admin.sock")
}

/// The socket of the convention gateway in `dir`, where endpoints connect to send to
/// actors of other nodes.
pub fn gateway_socket_path(dir: &Path) -> PathBuf {
    dir.join("gateway.sock")
}

/// Creates `dir` (and its parent) mode 0700, owned by this user, short enough for sockets.
pub fn create(dir: &Path) -> Result<()> {
    let bad = |why: String| Error::RuntimeDir {
        path: dir.to_path_buf(),
        why,
    };
    let len = dir.as_os_str().len() + 1 + LONGEST_NAME;
    if len > MAX_SOCKET_PATH {
        return Err(bad(format!(
            "too long for Unix socket paths ({len} > {MAX_SOCKET_PATH} bytes); choose a shorter runtime base directory"
        )));
    }
    if let Some(parent) = dir.parent() {
        ensure_private_dir(parent, false).map_err(bad)?;
    }
    ensure_private_dir(dir, true).map_err(bad)
}

fn ensure_private_dir(dir: &Path, must_be_new: bool) -> std::result::Result<(), String> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !must_be_new => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.is_dir() {
        return Err("exists and is not a directory".into());
    }
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "owned by uid {}, not by this user (uid {me}); refusing to use it",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make it private (mode 0700): {e}"))?;
    }
    Ok(())
}

/// The name of the runtime directory of the `n`-th system started by process `pid`.
pub fn system_dir_name(pid: u32, n: u64) -> String {
    format!("s{pid}-{n}")
}

/// Removes the runtime directories under `base` left by programs that are gone (an admin and
/// its client both SIGKILLed leave theirs behind). A directory is reclaimed only when the
/// process that started it no longer exists; one whose pid is alive — even if reused by an
/// unrelated process — is left alone. Returns the directories removed.
pub fn reclaim_stale(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut reclaimed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix('s'))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // Signal 0 checks for existence; EPERM means it exists under another user.
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            tracing::info!(dir = %path.display(), pid, "reclaiming a stale runtime directory");
            remove(&path);
            reclaimed.push(path);
        }
    }
    reclaimed
}

/// Removes a runtime directory and everything in it; logs instead of failing.
pub fn remove(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the runtime directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_directories() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("g").join("s1");
        create(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(create(&dir).is_err(), "a system directory must be new");
        remove(&dir);
        assert!(!dir.exists());
    }

    #[test]
    fn reclaims_only_directories_of_dead_programs() {
        let base = tempfile::tempdir().unwrap();
        let mine = base.path().join(system_dir_name(std::process::id(), 0));
        // A pid above the kernel's maximum cannot be alive.
        let dead = base.path().join(system_dir_name(4_194_305, 3));
        let unrelated = base.path().join("notes");
        for d in [&mine, &dead, &unrelated] {
            fs::create_dir(d).unwrap();
        }
        fs::write(dead.join("7.sock"), b"").unwrap();
        assert_eq!(reclaim_stale(base.path()), vec![dead.clone()]);
        assert!(mine.exists() && unrelated.exists() && !dead.exists());
    }

    #[test]
    fn refuses_paths_too_long_for_sockets() {
        let long = PathBuf::from("/tmp").join("x".repeat(100));
        let err = create(&long).unwrap_err().to_string();
        assert!(err.contains("too long for Unix socket paths"), "{err}");
    }
}
