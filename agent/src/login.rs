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

use crate::config::paths::{read_private, FileRefused, Private};
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
    match read_private(&path, Private::RootOnly) {
        Ok(text) if is_valid_token(text.trim_end()) => return Ok(text.trim_end().to_string()),
        Ok(_) => bail!(
            "{} does not hold a valid token; remove it (a new one is made) or run jupyter-agent token --rotate",
            path.display()
        ),
        Err(FileRefused::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("the kept login token {} {e}; remove it (a new one is made)", path.display()),
    }
    rotate(state_dir)
}

/// The token kept in the state directory, if there is a valid one (none
/// is made): what the front's pages accept before the container step.
pub fn kept(state_dir: &Path) -> Option<String> {
    let text = read_private(&token_path(state_dir), Private::RootOnly).ok()?;
    let token = text.trim_end();
    is_valid_token(token).then(|| token.to_string())
}

/// A new token in place of the old one; earlier URLs stop working once the
/// container is recreated with it.
pub fn rotate(state_dir: &Path) -> Result<String> {
    let token = generate()?;
    crate::state::ensure_private_dir(state_dir)
        .with_context(|| format!("cannot use the state directory {}", state_dir.display()))?;
    crate::state::write_atomic(&token_path(state_dir), token.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", token_path(state_dir).display()))?;
    Ok(token)
}

/// An organiser's own token from `path`: owned by root, readable by no one
/// else, one valid token (a trailing newline is dropped).
pub fn read_given(path: &Path) -> Result<String> {
    let text = match read_private(path, Private::RootOnly) {
        Ok(text) => text,
        Err(FileRefused::Io(e)) => {
            return Err(e).with_context(|| format!("reading the login token file {} ([jupyter] token)", path.display()))
        }
        Err(e @ (FileRefused::Owner(_) | FileRefused::Writable(_) | FileRefused::Readable(_))) => bail!(
            "the login token file {} ([jupyter] token) {e}: it must belong to root and be readable by no one else (chmod 600 {})",
            path.display(),
            path.display()
        ),
        Err(e) => bail!("the login token file {} ([jupyter] token) {e}", path.display()),
    };
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

/// The host account that has the uid of the container's user, when one
/// does: it owns the token file the container mounts (and whatever the
/// container writes in its mounts). The 0700 state directory keeps it from
/// the token file, but the uid is better one no host account has
/// (docs/threat-model.md#a-local-user-on-the-instance-not-root).
pub fn container_user_on_host(state_dir: &Path) -> Option<(u32, String)> {
    let uid = std::fs::symlink_metadata(mount_source(state_dir)).ok()?.uid();
    if uid == 0 {
        return None;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    Some((uid, user.name))
}

/// What `status` and `doctor` say about [`container_user_on_host`].
pub fn container_user_warning(state_dir: &Path) -> Option<String> {
    let (uid, name) = container_user_on_host(state_dir)?;
    Some(format!(
        "the container runs as uid {uid}, which is the host account {name}: it owns the token file the container mounts ({}) and whatever the container writes in its mounts",
        mount_source(state_dir).display()
    ))
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

    /// `token --rotate` on a host where the agent never ran makes the state
    /// directory 0700, as the agent does (issue 22, item 7).
    #[test]
    fn rotating_makes_the_state_directory_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        rotate(&state).unwrap();
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    }

    /// Token files are opened, then checked (no symbolic link, a regular
    /// file, root's, private): a link cannot swap in another file between
    /// the check and the read (issue 22, item 9).
    #[test]
    fn token_files_are_opened_then_checked() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "organisers-own-token-1234\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = format!("{:#}", read_given(&link).unwrap_err());
        assert!(err.contains("is a symbolic link"), "{err}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = format!("{:#}", read_given(&fifo).unwrap_err());
        assert!(err.contains("is not a regular file"), "{err}");

        let state = dir.path().join("state");
        load_or_create(&state).unwrap();
        std::fs::remove_file(token_path(&state)).unwrap();
        std::os::unix::fs::symlink(&real, token_path(&state)).unwrap();
        let err = format!("{:#}", load_or_create(&state).unwrap_err());
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    /// A host account with the container's uid is named (issue 22, item 7).
    #[test]
    fn a_host_account_with_the_containers_uid_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(container_user_on_host(dir.path()), None, "no token file");
        let source = mount_source(dir.path());
        std::fs::write(&source, "t").unwrap();
        assert_eq!(container_user_on_host(dir.path()), None, "root's");
        std::os::unix::fs::chown(&source, Some(65534), None).unwrap();
        assert_eq!(container_user_on_host(dir.path()), Some((65534, "nobody".to_string())));
        std::os::unix::fs::chown(&source, Some(54321), None).unwrap();
        assert_eq!(container_user_on_host(dir.path()), None, "no such account");
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
