//! The convention's key files: the cluster secret every member holds, and each admin's own
//! static key.
//!
//! * [`ClusterSecret`]: 32 random bytes that every member holds, mixed into every link's
//!   handshake, so that a machine without it cannot join or even finish a handshake. There
//!   is no default secret and no way to start a member without one.
//! * [`StaticKey`]: an admin's X25519 key pair, which its links prove to every peer. Kept
//!   in a key file (`--key-file`), it gives the admin the same identity across restarts:
//!   `greenroom status --convention` shows each member's key fingerprint, and a member
//!   that comes back at its address with another key is logged (another machine, or a
//!   replaced key file). Without a key file an admin makes a new key at each start.
//!
//! Both files hold their 32 bytes as 64 hexadecimal digits and a newline (easy to put in a
//! Kubernetes or Docker secret). Each must be readable by its owner only: a file that group
//! or others may read is refused, as `ssh` refuses an exposed private key. Neither key's
//! secret bytes ever appear in a log line or a `Debug` print.
//!
//! ```
//! use greenroom::convention::{ClusterSecret, StaticKey};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("cluster.key");
//! ClusterSecret::generate(&path)?; // `greenroom keygen cluster.key`
//! let secret = ClusterSecret::load(&path)?;
//! assert_eq!(format!("{secret:?}"), "ClusterSecret(<32 bytes, not shown>)");
//!
//! let (key, created) = StaticKey::load_or_create(&dir.path().join("node.key"))?;
//! assert!(created);
//! let (again, created) = StaticKey::load_or_create(&dir.path().join("node.key"))?;
//! assert!(!created);
//! assert_eq!(again.fingerprint(), key.fingerprint(), "the same identity after a restart");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::error::{Error, Result};

/// The length of a cluster secret, and of a static key's halves, in bytes.
pub const SECRET_LEN: usize = 32;

/// A convention's cluster secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; SECRET_LEN]);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret(<{SECRET_LEN} bytes, not shown>)")
    }
}

/// Which key file an error is about.
#[derive(Clone, Copy)]
enum KeyFile {
    Secret,
    Static,
}

impl KeyFile {
    fn refused(self, path: &Path, fix: impl Into<String>) -> Error {
        Error::ConventionKeyFile {
            what: match self {
                KeyFile::Secret => "convention secret",
                KeyFile::Static => "static key file",
            },
            path: path.to_owned(),
            fix: fix.into(),
        }
    }

    /// 32 bytes from the kernel's random source.
    fn random(self, path: &Path) -> Result<[u8; SECRET_LEN]> {
        let mut bytes = [0u8; SECRET_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut r| r.read_exact(&mut bytes))
            .map_err(|e| self.refused(path, format!("could not read random bytes from /dev/urandom: {e}")))?;
        Ok(bytes)
    }

    /// Writes `bytes` to a new file at `path` (mode 0600); refuses to overwrite one. The
    /// key is written to a temporary file beside it and linked into place whole, so that
    /// nobody ever reads a half-written key, and a crash leaves no empty file behind to
    /// block the next start.
    fn create(self, path: &Path, bytes: &[u8; SECRET_LEN], exists_fix: &str) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| self.refused(path, format!("could not create it: {e}")))
            .and_then(|mut file| {
                file.write_all(format!("{}\n", hex(bytes)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| self.refused(path, format!("could not write it: {e}")))
            })
            .and_then(|()| {
                std::fs::hard_link(&temporary, path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => self.refused(path, exists_fix),
                    _ => self.refused(path, format!("could not create it: {e}")),
                })
            });
        let _ = std::fs::remove_file(&temporary);
        written
    }

    /// Reads the key at `path`: it must exist, be a regular file owned by this user (or
    /// root) that no one else may read, and hold 64 hexadecimal digits. Each refusal says
    /// how to fix it. (A symbolic link is followed, as a Kubernetes secret volume needs;
    /// what is checked is the file opened, not the path looked at before.)
    fn read(self, path: &Path, missing_fix: String) -> Result<[u8; SECRET_LEN]> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.refused(path, missing_fix),
            _ => self.refused(path, format!("cannot read it: {e}")),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| self.refused(path, format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(self.refused(path, "it is not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(self.refused(
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
            return Err(self.refused(
                path,
                format!("it belongs to uid {owner}, not to this user (uid {me}) or root; `chown` it"),
            ));
        }
        let bad = || {
            let maker = match self {
                KeyFile::Secret => "as `greenroom keygen` writes",
                KeyFile::Static => "as the admin writes it (remove the file to make a new key)",
            };
            self.refused(
                path,
                format!("it must hold {} hexadecimal digits, {maker}", 2 * SECRET_LEN),
            )
        };
        // Read no more than a key's worth (and a little slack for whitespace).
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
        Ok(bytes)
    }
}

impl ClusterSecret {
    /// Writes a new random secret to `path` (mode 0600). Refuses to overwrite a file.
    pub fn generate(path: &Path) -> Result<ClusterSecret> {
        let bytes = KeyFile::Secret.random(path)?;
        KeyFile::Secret.create(
            path,
            &bytes,
            "the file exists; a convention's secret is made once and copied to every member (remove the file first to replace it)",
        )?;
        Ok(ClusterSecret(bytes))
    }

    /// Reads the secret at `path`: it must exist, be a regular file owned by this user (or
    /// root) that no one else may read, and hold 64 hexadecimal digits. Each refusal says how
    /// to fix it. (A symbolic link is followed, as a Kubernetes secret volume needs.)
    pub fn load(path: &Path) -> Result<ClusterSecret> {
        let missing = format!(
            "no such file; make one with `greenroom keygen {}` and copy it to every member",
            path.display()
        );
        KeyFile::Secret.read(path, missing).map(ClusterSecret)
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

/// An admin's X25519 static key pair: the identity its links prove to peers.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKey {
    private: [u8; SECRET_LEN],
    public: [u8; SECRET_LEN],
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKey({}, private half not shown)", self.fingerprint())
    }
}

impl StaticKey {
    /// A new random key pair, kept in memory only.
    pub fn generate() -> Result<StaticKey> {
        let private = KeyFile::Static.random(Path::new("-"))?;
        Ok(StaticKey::from_private(private))
    }

    /// The key pair kept at `path`, made there first (mode 0600) if there is no file yet;
    /// says whether it was made now. The file holds the private half, checked as the
    /// cluster secret's file is.
    pub fn load_or_create(path: &Path) -> Result<(StaticKey, bool)> {
        let dangling = "it is a symbolic link to nothing; remove it, or point it at a key file".to_owned();
        match KeyFile::Static.read(path, dangling) {
            Ok(private) => Ok((StaticKey::from_private(private), false)),
            Err(_) if !path.exists() && !path.is_symlink() => {
                let key = StaticKey::generate()?;
                KeyFile::Static.create(
                    path,
                    &key.private,
                    "the file appeared while this admin was making it; start again",
                )?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The key pair whose private half is `bytes` (as a gateway is given it by its admin).
    pub(crate) fn from_private_bytes(bytes: &[u8]) -> Option<StaticKey> {
        Some(StaticKey::from_private(bytes.try_into().ok()?))
    }

    fn from_private(private: [u8; SECRET_LEN]) -> StaticKey {
        use snow::{params::DHChoice, resolvers::CryptoResolver};
        let mut public = [0u8; SECRET_LEN];
        if let Some(mut dh) = snow::resolvers::DefaultResolver.resolve_dh(&DHChoice::Curve25519) {
            dh.set(&private);
            public.copy_from_slice(dh.pubkey());
        }
        StaticKey { private, public }
    }

    /// The public half, as peers see it ([`super::Link::peer_key`]).
    pub fn public(&self) -> &[u8; SECRET_LEN] {
        &self.public
    }

    /// The private half, for the handshake.
    pub(crate) fn private(&self) -> &[u8; SECRET_LEN] {
        &self.private
    }

    /// A short name for the public half, for logs and `greenroom status`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }
}

/// A short name for a static public key: its first 8 bytes in hexadecimal.
pub fn fingerprint(public: &[u8]) -> String {
    hex(&public[..public.len().min(8)])
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
    fn a_static_key_is_made_once_then_kept_and_its_file_is_checked_like_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let (made, created) = StaticKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (kept, created) = StaticKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(kept, made);
        assert_ne!(made.public(), made.private(), "the public half is derived, not copied");
        assert_ne!(StaticKey::generate().unwrap().public(), made.public());
        assert!(!format!("{made:?}").contains(&hex(made.private())));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let exposed = message(StaticKey::load_or_create(&path).unwrap_err());
        assert!(exposed.starts_with("static key file"), "{exposed}");
        assert!(exposed.contains("chmod 600"), "{exposed}");
        std::fs::write(dir.path().join("short.key"), "abcd\n").unwrap();
        std::fs::set_permissions(dir.path().join("short.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let short = message(StaticKey::load_or_create(&dir.path().join("short.key")).unwrap_err());
        assert!(short.contains("64 hexadecimal digits"), "{short}");
        assert!(short.contains("remove the file to make a new key"), "{short}");
        let nowhere = message(StaticKey::load_or_create(&dir.path().join("no-dir/node.key")).unwrap_err());
        assert!(nowhere.contains("could not create it"), "{nowhere}");
        let dangling = dir.path().join("dangling.key");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        let dangling = message(StaticKey::load_or_create(&dangling).unwrap_err());
        assert!(dangling.contains("symbolic link to nothing"), "{dangling}");
        // Nothing but the key files is left in the directory: no temporary file.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dangling.key", "node.key", "short.key"]);
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
