//! What the front shows while Jupyter is not ready (docs/front.md#the-progress-page):
//! the phase, the running step and its progress, as a page that follows
//! them live and turns into Jupyter by itself, and as JSON at
//! `/_agent/progress`. Never a URL, a token or an error's text: a failure
//! shows the failed step's name only, a certificate that could not be
//! renewed a fixed line. A raised hand is in the JSON, with its message,
//! for the organiser's room view (anyone who reaches the front reads it);
//! the page says only that help was requested.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::state::{CertKind, Phase, State};

/// The path of the JSON.
pub const PATH: &str = "/_agent/progress";

/// The facts the page and the JSON show.
#[derive(Debug, Serialize, PartialEq)]
pub struct Progress {
    /// As the state document spells it (`preparing-image`).
    pub phase: String,
    /// The running step (`image`), or none.
    pub step: Option<String>,
    /// Its progress line (a pull's percentage), or none.
    pub progress: Option<String>,
    /// Jupyter answers through the front: the page reloads into it.
    pub ready: bool,
    /// The step the setup failed at.
    pub failed_step: Option<String>,
    /// A fixed line when ACME fails: the trusted certificate could not be
    /// renewed, or a self-signed one stands in (docs/tls.md#when-renewals-fail).
    pub certificate: Option<&'static str>,
    /// The participant's raised hand (docs/api.md#raise-a-hand), or null.
    pub hand: Option<RaisedHand>,
}

/// A raised hand as the JSON carries it: both keys always present. The
/// message is the participant's text: escape it wherever it is shown.
#[derive(Debug, Serialize, PartialEq)]
pub struct RaisedHand {
    pub raised_at: DateTime<Utc>,
    pub message: Option<String>,
}

/// The line for a trusted certificate that could not be renewed.
const NOT_RENEWED: &str =
    "The HTTPS certificate could not be renewed; a self-signed one replaces it before it expires. \
     The organiser sees why in jupyter-agent status.";
/// The line while the self-signed fallback stands in for ACME.
const FALLBACK: &str = "This address serves a self-signed certificate until a trusted one can be had: \
     compare the fingerprint your browser shows with the organiser's.";

impl Progress {
    /// From the state, and whether the front forwards to Jupyter now.
    pub fn of(state: &State, forwarding: bool) -> Progress {
        let running = state.running_step();
        let failed_step = match state.phase {
            Phase::Failed => state.error.as_ref().map(|e| e.step.clone()),
            _ => None,
        };
        Progress {
            phase: state.phase.as_str().to_string(),
            step: running.map(|s| s.name.clone()),
            progress: running.and_then(|s| s.progress.clone()),
            ready: forwarding,
            failed_step,
            certificate: state.tls.as_ref().filter(|t| t.acme_error.is_some()).map(|t| match t.served {
                CertKind::Acme => NOT_RENEWED,
                _ => FALLBACK,
            }),
            hand: state.hand.as_ref().map(|h| RaisedHand { raised_at: h.raised_at, message: h.message.clone() }),
        }
    }

    /// The line for a raised hand, or nothing.
    fn hand_line(&self) -> String {
        self.hand
            .as_ref()
            .map_or_else(String::new, |h| format!("Help requested at {}.", h.raised_at.format("%H:%M UTC")))
    }

    /// The one line a participant reads.
    fn headline(&self) -> String {
        if let Some(step) = &self.failed_step {
            return format!("The setup failed at {step}; ask the organiser.");
        }
        let what = match &self.phase[..] {
            "pending" => "Starting",
            "installing-docker" => "Installing Docker",
            "preparing-gpu" => "Preparing the GPU (the NVIDIA driver can take 20 minutes and a restart)",
            "fetching-workspace" => "Fetching the materials",
            "preparing-image" => "Preparing the Jupyter image",
            "starting-container" => "Starting Jupyter",
            "waiting-for-token" => "Waiting for Jupyter to answer",
            "ready" => "Jupyter is starting again",
            "stopped" => "The setup was stopped; it goes on when the agent starts again",
            other => other,
        };
        format!("{what}…")
    }

    /// The page: the facts now, then the script follows `/_agent/progress`
    /// every second and reloads once Jupyter answers.
    pub fn page(&self) -> String {
        let step = self.step.as_deref().unwrap_or("");
        let progress = self.progress.as_deref().unwrap_or("");
        let certificate = self.certificate.unwrap_or("");
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preparing Jupyter</title>
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style>
body{{font-family:system-ui,sans-serif;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;background:#f5f5f5;color:#222}}
main{{background:#fff;padding:2em 2.5em;border-radius:8px;box-shadow:0 1px 4px #0002;max-width:36em}}
h1{{font-size:1.3em;margin:0 0 .8em}} p{{margin:.4em 0}} code{{background:#eee;padding:0 .3em}} .small{{color:#666;font-size:.9em}}
</style></head>
<body><main>
<h1 id="phase">{headline}</h1>
<p>Step: <code id="step">{step}</code></p>
<p id="progress">{progress}</p>
<p id="certificate">{certificate}</p>
<p id="hand">{hand}</p>
<p class="small">This page follows the setup and opens Jupyter by itself when it is ready.</p>
<p class="small"><a id="pages" href="/_agent/">Your environment</a>: download your work, reset it, ask for help.</p>
</main>
<script>
async function follow() {{
  try {{
    const r = await fetch("{PATH}", {{cache: "no-store"}});
    const p = await r.json();
    if (p.ready) {{ location.reload(); return; }}
    document.getElementById("phase").textContent = p.failed_step
      ? "The setup failed at " + p.failed_step + "; ask the organiser."
      : (HEADLINES[p.phase] || p.phase) + "…";
    document.getElementById("step").textContent = p.step || "";
    document.getElementById("progress").textContent = p.progress || "";
    document.getElementById("certificate").textContent = p.certificate || "";
    document.getElementById("hand").textContent =
      p.hand ? "Help requested at " + p.hand.raised_at.substring(11, 16) + " UTC." : "";
  }} catch (e) {{}}
  setTimeout(follow, 1000);
}}
const HEADLINES = {headlines};
setTimeout(follow, 1000);
</script>
</body></html>
"#,
            headline = escape(&self.headline()),
            step = escape(step),
            progress = escape(progress),
            certificate = escape(certificate),
            hand = escape(&self.hand_line()),
            headlines = headlines_json(),
        )
    }
}

/// The headlines by phase, for the script.
fn headlines_json() -> String {
    let phases = [
        "pending",
        "installing-docker",
        "preparing-gpu",
        "fetching-workspace",
        "preparing-image",
        "starting-container",
        "waiting-for-token",
        "ready",
        "stopped",
    ];
    let map: serde_json::Map<String, serde_json::Value> = phases
        .iter()
        .map(|p| {
            let line = Progress {
                phase: p.to_string(),
                step: None,
                progress: None,
                ready: false,
                failed_step: None,
                certificate: None,
                hand: None,
            }
            .headline();
            (p.to_string(), line.trim_end_matches('…').into())
        })
        .collect();
    serde_json::Value::Object(map).to_string().replace('<', "\\u003c")
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Failure;

    #[test]
    fn the_page_shows_the_step_and_its_progress_and_a_failure_by_its_step_only() {
        let mut state = crate::state::fresh();
        state.phase = Phase::PreparingImage;
        state.steps.push(crate::state::Step {
            name: "image".into(),
            phase: Phase::PreparingImage,
            status: crate::state::StepStatus::Running,
            started_at: None,
            ended_at: None,
            detail: None,
            progress: Some("pulling: 37% of 120 MB <b>".into()),
        });
        let p = Progress::of(&state, false);
        assert_eq!((p.step.as_deref(), p.ready, p.failed_step.as_deref()), (Some("image"), false, None));
        let page = p.page();
        assert!(page.contains("<code id=\"step\">image</code>"), "{page}");
        assert!(page.contains("37% of 120 MB &lt;b&gt;"), "escaped: {page}");
        assert!(page.contains("Preparing the Jupyter image"));

        state.phase = Phase::Failed;
        state.error = Some(Failure {
            step: "image".into(),
            cause: "pull access denied for secret-registry/x".into(),
            exit_code: None,
            log_tail: vec!["token=abc".into()],
        });
        let failed = Progress::of(&state, false);
        let json = serde_json::to_string(&failed).unwrap();
        assert!(!json.contains("secret-registry") && !json.contains("abc"), "{json}");
        assert!(failed.page().contains("The setup failed at image; ask the organiser."));
        assert_eq!(failed.certificate, None);
    }

    #[test]
    fn a_raised_hand_is_in_the_json_with_its_message_and_on_the_page_as_a_line() {
        let mut state = crate::state::fresh();
        let json = serde_json::to_value(Progress::of(&state, false)).unwrap();
        assert_eq!(json["hand"], serde_json::Value::Null);
        state.hand = Some(crate::state::Hand {
            raised_at: "2026-12-07T10:02:00Z".parse().unwrap(),
            message: Some("<script>x</script>".into()),
        });
        let p = Progress::of(&state, false);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["hand"],
            serde_json::json!({"raised_at": "2026-12-07T10:02:00Z", "message": "<script>x</script>"})
        );
        let page = p.page();
        assert!(page.contains("<p id=\"hand\">Help requested at 10:02 UTC.</p>"), "{page}");
        assert!(!page.contains("<script>x"), "the message is not on the page");
        state.hand.as_mut().unwrap().message = None;
        assert_eq!(
            serde_json::to_value(Progress::of(&state, false)).unwrap()["hand"]["message"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn a_certificate_not_renewed_or_replaced_by_the_fallback_is_said_without_the_reason() {
        use crate::state::CertKind;
        let mut state = crate::state::fresh();
        state.phase = Phase::Ready;
        let tls = crate::state::TlsState {
            mode: CertKind::Acme,
            served: CertKind::Acme,
            listen: "0.0.0.0:8888".parse().unwrap(),
            subject: "IP 203.0.113.7".into(),
            issuer: "CN=R13".into(),
            not_after: chrono::Utc::now(),
            fingerprint: "AB:CD".into(),
            next_renewal: None,
            acme_error: None,
        };
        state.tls = Some(tls.clone());
        assert_eq!(Progress::of(&state, false).certificate, None, "renewed in time: nothing to say");
        state.tls =
            Some(crate::state::TlsState { acme_error: Some("port 80 closed at secret-host".into()), ..tls.clone() });
        let p = Progress::of(&state, false);
        let line = p.certificate.unwrap();
        assert!(line.contains("could not be renewed"), "{line}");
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("secret-host") && json.contains("could not be renewed"), "{json}");
        assert!(p.page().contains("<p id=\"certificate\">The HTTPS certificate"), "{}", p.page());
        state.tls = Some(crate::state::TlsState {
            served: CertKind::SelfSigned,
            acme_error: Some("port 80 closed".into()),
            ..tls
        });
        assert!(Progress::of(&state, false).certificate.unwrap().contains("self-signed"));
    }
}
