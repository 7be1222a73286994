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

    /// Reads the secret at `path`: it must exist, be readable by its owner only, and hold
    /// 64 hexadecimal digits. Each refusal says how to fix it.
    pub fn load(path: &Path) -> Result<ClusterSecret> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => refused(
                path,
                format!(
                    "no such file; make one with `greenroom keygen {}` and copy it to every member",
                    path.display()
                ),
            ),
            _ => refused(path, format!("cannot read it: {e}")),
        })?;
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
        let text = std::fs::read_to_string(path).map_err(|e| refused(path, format!("cannot read it: {e}")))?;
        let bad = || {
            refused(
                path,
                format!(
                    "it must hold {} hexadecimal digits, as `greenroom keygen` writes",
                    2 * SECRET_LEN
                ),
            )
        };
        let digits = text.trim();
        if digits.len() != 2 * SECRET_LEN {
            return Err(bad());
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
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
        let exposed = message(ClusterSecret::load(&write("exposed", &"ab".repeat(32), 0o644)).unwrap_err());
        assert!(exposed.contains("chmod 600"), "{exposed}");
        assert!(exposed.contains("0644"), "{exposed}");
        assert!(!exposed.contains(&"ab".repeat(32)), "the secret is never in a message");
        assert!(ClusterSecret::load(&write("fine", &"AB".repeat(32), 0o400)).is_ok());
    }
}
