//! The signing key of a run that was given none (`SHOP_JWT_SIGNING_KEYS` unset), kept in a file
//! so that a restart does not log every customer out: created once, readable by its owner only,
//! reused by every later start on the same data directory.
//!
//! The file holds one `SHOP_JWT_SIGNING_KEYS` entry (`kid=<base64url seed>`). It is written
//! under a temporary name and linked into place, so a crash never leaves a half-written key, and
//! two processes starting together end up with the same one.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use shop_platform::config::SecretString;

use crate::tokens::{generate_key, parse_signing_keys, signing_key_entry};

/// The key file's name in the data directory.
pub const FILE_NAME: &str = "jwt-signing-key";

/// The signing keys kept at `path` (in `SHOP_JWT_SIGNING_KEYS` form), generating and storing a
/// key first if the file does not exist yet.
pub fn load_or_create(path: &Path) -> anyhow::Result<SecretString> {
    if !path.exists() {
        create(path)?;
    }
    let raw = fs::read_to_string(path).with_context(|| format!("reading the signing key file {}", path.display()))?;
    parse_signing_keys(raw.trim())
        .map_err(|reason| anyhow::anyhow!("the signing key file {} is not valid: {reason}", path.display()))?;
    warn_if_readable_by_others(path);
    Ok(SecretString::from(raw.trim().to_owned()))
}

/// Writes a fresh key to `path`, unless another process got there first.
fn create(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let (kid, seed) = generate_key();
    let temporary = temporary_path(path);
    let written = write_private(&temporary, &signing_key_entry(&kid, &seed));
    // Linking fails if the file exists: then the key already there is the one.
    let linked = written.and_then(|()| match fs::hard_link(&temporary, path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), %kid, "generated the access-token signing key");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    });
    fs::remove_file(&temporary).ok();
    linked.with_context(|| format!("writing the signing key file {}", path.display()))
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Creates `path` with permissions 0600 (on Unix) and writes `content` to disk.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{content}\n").as_bytes())?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the signing key file is readable by other users: chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use shop_platform::config::ExposeSecret as _;

    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(FILE_NAME);
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.expose_secret(), again.expose_secret());
        let keys = parse_signing_keys(first.expose_secret()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].0.starts_with("generated-"), "{keys:?}");
        // Nothing but the key is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[cfg(unix)]
    #[test]
    fn only_its_owner_may_read_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "k1=short\n").unwrap();
        let error = load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("is not valid"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "k1=short\n");
    }
}
