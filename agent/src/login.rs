//! The login token the agent chooses for Jupyter, once per instance, so that
//! the participant's URL survives every restart, reboot and re-creation of
//! the container (docs/jupyter.md#a-stable-login-token).
//!
//! `<state_dir>/login-token` (0600) keeps it. The container gets it through
//! `JUPYTER_TOKEN_FILE` (a read-only mount of `<state_dir>/container-token`,
//! owned by the container's user, mode 0400), so that the value is not in
//! `docker inspect`; where the agent cannot know that user's uid, or the
//! server ignored the file, through `JUPYTER_TOKEN`.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::config::TokenChoice;

/// Where the token is mounted in the container.
pub const MOUNTED_AT: &str = "/run/jupyter-agent/token";

/// The token the agent keeps.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("login-token")
}

/// The copy the container mounts.
pub fn mount_source(state_dir: &Path) -> PathBuf {
    state_dir.join("container-token")
}

/// Records that the server of an image ignored `JUPYTER_TOKEN_FILE`: that
/// image id gets `JUPYTER_TOKEN`.
fn env_only_path(state_dir: &Path) -> PathBuf {
    state_dir.join("token-by-env")
}

/// How the container receives the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Delivery {
    /// `JUPYTER_TOKEN_FILE`, the file owned by this uid and gid.
    File { uid: u32, gid: u32 },
    /// `JUPYTER_TOKEN`.
    Env,
}

/// The token Jupyter is to use, and how it gets there.
#[derive(Clone)]
pub struct Login {
    pub token: String,
    pub delivery: Delivery,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("token", &jupyter_proto::redact::MARK).field("delivery", &self.delivery).finish()
    }
}

impl Login {
    /// A short, one-way fingerprint of the token: part of the container's
    /// hash, so that a new token recreates the container.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.token.as_bytes())[..8])
    }
}

/// Whether `s` can be a login token: URL-safe characters only (it goes into
/// the URL's query unescaped), 16 to 256 of them.
pub fn is_valid_token(s: &str) -> bool {
    (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// 24 random bytes (192 bits) from the kernel, as 48 hexadecimal digits:
/// the form Jupyter's own generated tokens take.
fn generate() -> Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a login token")?;
    Ok(hex::encode(bytes))
}

/// The agent's token: the one kept in the state directory, or a new one
/// when there is none yet.
pub fn load_or_create(state_dir: &Path) -> Result<String> {
    let path = token_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_valid_token(text.trim_end()) => return Ok(text.trim_end().to_string()),
        Ok(_) => bail!(
            "{} does not hold a valid token; remove it (a new one is made) or run jupyter-agent token --rotate",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    rotate(state_dir)
}

/// A new token in place of the old one; earlier URLs stop working once the
/// container is recreated with it.
pub fn rotate(state_dir: &Path) -> Result<String> {
    let token = generate()?;
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    crate::state::write_atomic(&token_path(state_dir), token.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", token_path(state_dir).display()))?;
    Ok(token)
}

/// An organiser's own token from `path`: owned by root, readable by no one
/// else, one valid token (a trailing newline is dropped).
pub fn read_given(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the login token file {} ([jupyter] token)", path.display()))?;
    if meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        bail!(
            "the login token file {} ([jupyter] token) must belong to root and be readable by no one else (chmod 600 {})",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the login token file {} ([jupyter] token)", path.display()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    if !is_valid_token(token) {
        bail!(
            "the login token file {} ([jupyter] token) must hold one token of 16 to 256 letters, digits, '-', '.', '_' or '~' (the value is not shown)",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// The uid and gid the container's processes run as, when the agent can
/// know them without looking inside the image: `[container] user`, else
/// the image's own `USER`, when numeric or empty (root).
pub fn numeric_user(configured: Option<&str>, image_user: Option<&str>) -> Option<(u32, u32)> {
    let user = configured.or(image_user).unwrap_or("");
    if user.is_empty() || user == "root" || user == "root:root" {
        return Some((0, 0));
    }
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid: u32 = u.parse().ok()?;
    let gid: u32 = if g.is_empty() { uid } else { g.parse().ok()? };
    Some((uid, gid))
}

/// What the configuration asks for, for an image (its id and `USER`):
/// `None` for `image` and `none`, which let the server choose.
pub fn for_container(
    choice: &TokenChoice,
    state_dir: &Path,
    configured_user: Option<&str>,
    image_id: &str,
    image_user: Option<&str>,
) -> Result<Option<Login>> {
    let token = match choice {
        TokenChoice::Image | TokenChoice::None => return Ok(None),
        TokenChoice::Generate => load_or_create(state_dir)?,
        TokenChoice::File(path) => read_given(path)?,
    };
    let env_only = std::fs::read_to_string(env_only_path(state_dir)).is_ok_and(|id| id.trim() == image_id);
    let delivery = match numeric_user(configured_user, image_user) {
        Some((uid, gid)) if !env_only => Delivery::File { uid, gid },
        _ => Delivery::Env,
    };
    Ok(Some(Login { token, delivery }))
}

/// Remembers that this image's server ignored `JUPYTER_TOKEN_FILE`.
pub fn remember_env_only(state_dir: &Path, image_id: &str) -> Result<()> {
    crate::state::write_atomic(&env_only_path(state_dir), image_id.as_bytes(), 0o600)
        .context("recording that the image's server ignores JUPYTER_TOKEN_FILE")
}

/// The login given by `JUPYTER_TOKEN` from now on, for an image whose
/// server ignored `JUPYTER_TOKEN_FILE` (remembered for this image).
pub fn env_only(login: Option<Login>, state_dir: &Path, image_id: &str) -> Result<Option<Login>> {
    remember_env_only(state_dir, image_id)?;
    Ok(login.map(|l| Login { delivery: Delivery::Env, ..l }))
}

/// Writes the copy the container mounts: owned by the container's user,
/// mode 0400, no trailing newline (the servers read the whole file as the
/// token). The state directory (0700) keeps other local users away from it.
pub fn write_mount_source(state_dir: &Path, login: &Login) -> Result<()> {
    let Delivery::File { uid, gid } = login.delivery else { return Ok(()) };
    let path = mount_source(state_dir);
    crate::state::write_atomic(&path, login.token.as_bytes(), 0o400)
        .with_context(|| format!("writing {}", path.display()))?;
    nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
        .with_context(|| format!("handing {} to the container's user {uid}:{gid}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_token_is_made_once_kept_0600_and_rotated_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.len(), 48);
        assert!(is_valid_token(&first));
        assert_eq!(load_or_create(dir.path()).unwrap(), first, "kept");
        let mode = std::fs::metadata(token_path(dir.path())).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = rotate(dir.path()).unwrap();
        assert_ne!(second, first);
        assert_eq!(load_or_create(dir.path()).unwrap(), second);
    }

    #[test]
    fn a_given_token_file_must_be_private_and_hold_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "organisers-own-token-1234\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_given(&path).unwrap_err().to_string().contains("readable by no one else"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_given(&path).unwrap(), "organisers-own-token-1234");
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_given(&path).unwrap_err().to_string().contains("(the value is not shown)"));
        std::fs::write(&path, "has space in it and is long\n").unwrap();
        assert!(read_given(&path).is_err());
    }

    #[test]
    fn the_uid_is_known_only_when_numeric_or_root() {
        assert_eq!(numeric_user(None, None), Some((0, 0)));
        assert_eq!(numeric_user(Some("root"), Some("1000")), Some((0, 0)));
        assert_eq!(numeric_user(None, Some("1000")), Some((1000, 1000)));
        assert_eq!(numeric_user(Some("1000:100"), None), Some((1000, 100)));
        assert_eq!(numeric_user(None, Some("jovyan")), None);
        assert_eq!(numeric_user(Some("1000:users"), None), None);
    }
}
