//! The convention's cluster secret: 32 random bytes that every member holds, mixed into
//! every link's handshake, so that a machine without it cannot join or even finish a
//! handshake.
//!
//! The file holds the bytes as 64 hexadecimal digits and a newline (easy to put in a
//! Kubernetes or Docker secret). It must be readable by its owner only: a file that group or
//! others may read is refused, as `ssh` refuses an exposed private key. There is no default
//! secret and no way to start a member without one. The secret's bytes never appear in a
//! log line or a `Debug` print.
//!
//! ```
//! use greenroom::convention::ClusterSecret;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("cluster.key");
//! ClusterSecret::generate(&path)?; // `greenroom keygen cluster.key`
//! let secret = ClusterSecret::load(&path)?;
//! assert_eq!(format!("{secret:?}"), "ClusterSecret(<32 bytes, not shown>)");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::error::{Error, Result};

/// The length of a cluster secret in bytes.
pub const SECRET_LEN: usize = 32;

/// A convention's cluster secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; SECRET_LEN]);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret(<{SECRET_LEN} bytes, not shown>)")
    }
}

fn refused(path: &Path, fix: impl Into<String>) -> Error {
    Error::ConventionSecret {
        path: path.to_owned(),
        fix: fix.into(),
    }
}

impl ClusterSecret {
    /// Writes a new random secret to `path` (mode 0600). Refuses to overwrite a file.
    pub fn generate(path: &Path) -> Result<ClusterSecret> {
        let mut bytes = [0u8; SECRET_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut r| r.read_exact(&mut bytes))
            .map_err(|e| refused(path, format!("could not read random bytes from /dev/urandom: {e}")))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => refused(
                    path,
                    "the file exists; a convention's secret is made once and copied to every member (remove the file first to replace it)",
                ),
                _ => refused(path, format!("could not create it: {e}")),
            })?;
        file.write_all(format!("{}\n", hex(&bytes)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| refused(path, format!("could not write it: {e}")))?;
        Ok(ClusterSecret(bytes))
    }

    /// Reads the secret at `path`: it must exist, be a regular file owned by this user (or
    /// root) that no one else may read, and hold 64 hexadecimal digits. Each refusal says how
    /// to fix it. (A symbolic link is followed, as a Kubernetes secret volume needs; what is
    /// checked is the file opened, not the path looked at before.)
    pub fn load(path: &Path) -> Result<ClusterSecret> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => refused(
                path,
                format!(
                    "no such file; make one with `greenroom keygen {}` and copy it to every member",
                    path.display()
                ),
            ),
            _ => refused(path, format!("cannot read it: {e}")),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| refused(path, format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(refused(path, "it is not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(refused(
                path,
                format!(
                    "it may be read by others (mode {mode:04o}); run `chmod 600 {}`",
                    path.display()
                ),
            ));
        }
        let me = nix::unistd::getuid().as_raw();
        let owner = std::os::unix::fs::MetadataExt::uid(&meta);
        if owner != me && owner != 0 {
            return Err(refused(
                path,
                format!("it belongs to uid {owner}, not to this user (uid {me}) or root; `chown` it"),
            ));
        }
        let bad = || {
            refused(
                path,
                format!(
                    "it must hold {} hexadecimal digits, as `greenroom keygen` writes",
                    2 * SECRET_LEN
                ),
            )
        };
        // Read no more than a secret's worth (and a little slack for whitespace).
        let mut text = String::new();
        file.take(4 * SECRET_LEN as u64)
            .read_to_string(&mut text)
            .map_err(|_| bad())?;
        let digits = text.trim().as_bytes();
        if digits.len() != 2 * SECRET_LEN || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(ClusterSecret(bytes))
    }

    /// The secret's bytes, for the handshake's pre-shared key.
    pub(crate) fn bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// A secret from bytes (tests).
    #[doc(hidden)]
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> ClusterSecret {
        ClusterSecret(bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn keygen_writes_an_owner_only_file_that_loads_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let made = ClusterSecret::generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ClusterSecret::load(&path).unwrap(), made);
        let again = message(ClusterSecret::generate(&path).unwrap_err());
        assert!(again.contains("the file exists"), "{again}");
        assert_ne!(
            ClusterSecret::generate(&dir.path().join("k2")).unwrap(),
            made,
            "random each time"
        );
    }

    #[test]
    fn a_missing_short_malformed_or_exposed_secret_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = message(ClusterSecret::load(&dir.path().join("none")).unwrap_err());
        assert!(missing.contains("greenroom keygen"), "{missing}");

        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let short = message(ClusterSecret::load(&write("short", "abcd\n", 0o600)).unwrap_err());
        assert!(short.contains("64 hexadecimal digits"), "{short}");
        let not_hex = message(ClusterSecret::load(&write("nothex", &"zz".repeat(32), 0o600)).unwrap_err());
        assert!(not_hex.contains("64 hexadecimal digits"), "{not_hex}");
        let plus = message(ClusterSecret::load(&write("plus", &"+a".repeat(32), 0o600)).unwrap_err());
        assert!(plus.contains("64 hexadecimal digits"), "{plus}");
        for (name, mode) in [
            ("world", 0o644),
            ("group", 0o640),
            ("group-write", 0o620),
            ("other-write", 0o602),
        ] {
            let exposed = message(ClusterSecret::load(&write(name, &"ab".repeat(32), mode)).unwrap_err());
            assert!(exposed.contains("chmod 600"), "{exposed}");
            assert!(exposed.contains(&format!("{mode:04o}")), "{exposed}");
            assert!(!exposed.contains(&"ab".repeat(32)), "the secret is never in a message");
        }
        let dir_path = dir.path().join("a-directory");
        std::fs::create_dir(&dir_path).unwrap();
        std::fs::set_permissions(&dir_path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let not_file = message(ClusterSecret::load(&dir_path).unwrap_err());
        assert!(not_file.contains("not a regular file"), "{not_file}");
        // A symbolic link to a good file is followed (Kubernetes mounts secrets so).
        let target = write("target", &"cd".repeat(32), 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(ClusterSecret::load(&link).is_ok());
        assert!(ClusterSecret::load(&write("fine", &"AB".repeat(32), 0o400)).is_ok());
    }
}
