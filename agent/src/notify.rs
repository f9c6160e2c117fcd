//! The service manager's notifications (sd_notify(3)): when `NOTIFY_SOCKET`
//! names a socket (systemd sets it for a `Type=notify` unit), `READY=1` once
//! the local API answers, then a `STATUS=` line at every change of the
//! phase or of the running step, so that `systemctl status jupyter-agent`
//! shows where the setup is, and `STOPPING=1` on the way out.
//!
//! The protocol: one datagram per message, newline-separated `KEY=VALUE`
//! assignments, to the AF_UNIX datagram socket at the path in
//! `NOTIFY_SOCKET`, or in the abstract namespace when the value starts with
//! `@` (sd_notify(3), "Notes"). Without the variable nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::state::State;

/// A connection to the service manager, when there is one.
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// The last `STATUS=` sent, so that a change of anything else sends nothing.
    last: Option<String>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is unset or unusable.
    pub fn from_env() -> Option<Notifier> {
        Notifier::at(&std::env::var_os("NOTIFY_SOCKET")?.to_string_lossy())
    }

    /// To the socket `path` names (`@name`: in the abstract namespace).
    pub fn at(path: &str) -> Option<Notifier> {
        let address = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
            None => SocketAddr::from_pathname(path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, address, last: None })
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            tracing::debug!(error = %e, "cannot notify the service manager");
        }
    }

    /// `READY=1`: the local API answers.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `STATUS=...` for this state, when it differs from the last one sent.
    pub fn status(&mut self, state: &State) {
        let line = status_line(state);
        if self.last.as_deref() != Some(line.as_str()) {
            self.send(&format!("STATUS={line}"));
            self.last = Some(line);
        }
    }
}

/// One line (no newline: it would end the assignment) for `systemctl status`.
pub fn status_line(state: &State) -> String {
    let phase = state.phase.as_str();
    let line = match (state.running_step(), &state.error, &state.jupyter) {
        (Some(step), _, _) => format!("{phase}: {}", step.name),
        (None, Some(error), _) => format!("{phase}: {} failed: {}", error.step, error.cause),
        (None, None, Some(_)) if state.is_ready() => "ready: jupyter-agent url prints the login URL".to_string(),
        _ => phase.to_string(),
    };
    jupyter_proto::redact::bound(&line.replace(['\n', '\r'], " "), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_socket_named_by_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::at(path.to_str().unwrap()).unwrap();
        n.ready();
        let mut state = crate::state::fresh();
        state.begin("image", crate::state::Phase::PreparingImage);
        n.status(&state);
        n.status(&state);
        state.end("image", crate::state::StepStatus::Done, None);
        state.begin("container", crate::state::Phase::StartingContainer);
        n.status(&state);
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        listener.set_nonblocking(true).unwrap();
        while let Ok(n) = listener.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            ["READY=1", "STATUS=preparing-image: image", "STATUS=starting-container: container"],
            "one datagram per change"
        );
    }
}
