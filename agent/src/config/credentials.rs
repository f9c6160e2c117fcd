//! A private registry's login, `[image] credentials`: a root-only TOML file
//! with `username` and `password` (docs/images.md#a-private-registry). It is
//! read at each pull and handed to the engine in the request's
//! `X-Registry-Auth` header, never in a process argument, a log or the state.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// What the file holds. `Debug` shows the user, never the password.
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// Reads `path`: a regular file (no symbolic link) owned by root, readable
/// by no one else, with exactly the
/// keys `username` and `password` (non-empty strings). Messages name the
/// file and the fix, never a value.
pub fn read(path: &Path) -> Result<Credentials> {
    let what = || format!("the registry credentials file {} ([image] credentials)", path.display());
    // Opened, then checked through the descriptor (config::paths).
    let text = match super::paths::read_private(path, super::paths::Private::RootOnly) {
        Ok(text) => text,
        Err(super::paths::FileRefused::Io(e)) => return Err(e).with_context(|| format!("reading {}", what())),
        Err(
            e @ (super::paths::FileRefused::Owner(_)
            | super::paths::FileRefused::Writable(_)
            | super::paths::FileRefused::Readable(_)),
        ) => bail!(
            "{} {e}: it must belong to root and be readable by no one else (chmod 600 {})",
            what(),
            path.display()
        ),
        Err(e) => bail!("{} {e}", what()),
    };
    // toml's messages quote the offending line, which may be the password.
    let table: toml::Table = text.parse().map_err(|_| {
        anyhow::anyhow!(
            "{} is not valid TOML; expected two lines: username = \"...\" and password = \"...\" (the content is not shown)",
            what()
        )
    })?;
    let mut username = None;
    let mut password = None;
    for (key, value) in table {
        let slot = match key.as_str() {
            "username" => &mut username,
            "password" => &mut password,
            _ => bail!("{} has the key {key:?}; expected only username and password", what()),
        };
        match value {
            toml::Value::String(s) if !s.is_empty() && !s.contains(['\n', '\r']) => *slot = Some(s),
            _ => bail!("{}: {key} must be a non-empty string on one line (the value is not shown)", what()),
        }
    }
    match (username, password) {
        (Some(username), Some(password)) => Ok(Credentials { username, password }),
        (None, _) => bail!("{} has no username; expected username = \"...\" and password = \"...\"", what()),
        (_, None) => bail!("{} has no password; expected username = \"...\" and password = \"...\"", what()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("registry.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_file_with_both_keys_is_read_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ok = file(d, "username = \"organiser@example\"\npassword = \"s3cret-pw\"\n", 0o600);
        let c = read(&ok).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("organiser@example", "s3cret-pw"));
        assert!(!format!("{c:?}").contains("s3cret-pw"));

        let open = file(d, "username = \"u\"\npassword = \"s3cret-pw\"\n", 0o644);
        let err = format!("{:#}", read(&open).unwrap_err());
        let expected = format!("must belong to root and be readable by no one else (chmod 600 {})", open.display());
        assert!(err.ends_with(&expected), "{err}");

        for (text, says) in [
            ("username = \"u\"\n", "has no password"),
            ("password = \"s3cret-pw\"\n", "has no username"),
            ("username = \"u\"\npassword = \"s3cret-pw\"\nserver = \"x\"\n", "has the key \"server\""),
            ("username = \"u\"\npassword = 5\n", "password must be a non-empty string"),
            ("username = u\npassword = \"s3cret-pw\"\n", "is not valid TOML"),
        ] {
            let path = file(d, text, 0o600);
            let err = format!("{:#}", read(&path).unwrap_err());
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(!err.contains("s3cret-pw"), "{err}");
        }
        // Opened, then checked: a link to a private file is refused (issue 22, item 9).
        let ok = file(d, "username = \"u\"\npassword = \"s3cret-pw\"\n", 0o600);
        std::os::unix::fs::symlink(&ok, d.join("link.toml")).unwrap();
        let err = format!("{:#}", read(&d.join("link.toml")).unwrap_err());
        assert!(err.contains("is a symbolic link"), "{err}");
        let err = format!("{:#}", read(&d.join("missing.toml")).unwrap_err());
        assert!(err.contains("missing.toml ([image] credentials)"), "{err}");
    }
}
