//! The participant's own pages under [`PREFIX`] (docs/pages.md): download
//! my work, reset my environment, take the organiser's fixes, raise a
//! hand. Plain HTML forms, no JavaScript, served by the front whatever
//! Jupyter's state (a participant whose Jupyter is broken is the one who
//! needs the reset).
//!
//! **Who may use them**: the holder of the login token, and no one else.
//! The front sees the token once, in the login link (`?token=` on any path,
//! or on these pages themselves), and answers with a cookie of its own for
//! [`PREFIX`] alone (HttpOnly, SameSite=Strict, Secure under TLS) that
//! holds no secret: a random nonce and an HMAC of it keyed by the token.
//! A script sends the token in `Authorization: token <t>` instead. A new
//! token (`jupyter-agent token --rotate`) ends every session.
//!
//! **Nothing changes but by a POST** that carries `confirm=yes` and, with
//! the cookie, the session's anti-forgery token (an HMAC of the session's
//! nonce), from a page of the same origin (`Origin` and `Sec-Fetch-Site`
//! are checked when the browser sends them). A GET of an action's path
//! shows what the action does and asks for the confirmation.

use std::path::PathBuf;
use std::sync::RwLock;

use http::header::{self, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;
use tracing::{info, warn};

use super::OwnBody;
use crate::actions::{ActionError, Actions, HandChange};
use crate::config::{Config, WorkspaceConfig};
use crate::state::State;
use crate::workspace::download::{self, Exclude};
use answer::{escape, html, json_reply, page_text, redirect, secure_headers};
use session::{query_value, same_origin, without_token, Holder, Keys};
use zip::zip_stream;

/// Where the pages are, on the front's port.
pub const PREFIX: &str = "/_agent/";
/// The session cookie's name; its path is [`PREFIX`].
pub const COOKIE: &str = "jupyter-agent-session";
/// The largest form a POST may carry (a hand's 280 characters, encoded).
const MAX_FORM: usize = 8 * 1024;
/// A download's chunks in flight between the archive's writer and the client.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The size of each.
const CHUNK: usize = 256 * 1024;
/// How long a page waits for an action's answer before it says the action
/// goes on: well within the front's idle limit, which would end a
/// connection that carries nothing for [`super::limits::IDLE`].
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(40);

/// What the pages need: the actions' channel, the materials' configuration,
/// and the key made from the login token.
pub struct Pages {
    actions: Option<Actions>,
    workspace: Option<WorkspaceConfig>,
    state_dir: PathBuf,
    /// `[workspace] download_exclude` and the env files, or why the
    /// configuration's globs cannot be used.
    exclude: Result<Exclude, String>,
    /// `[workspace] download_exclude` as written, for the page.
    excluded: Vec<String>,
    /// Keyed by the login token once it is known; none while it is not, or
    /// when the server checks no token (the pages are off then).
    key: RwLock<Option<Keys>>,
}

impl Pages {
    pub fn new(cfg: &Config, actions: Option<Actions>) -> Pages {
        Pages {
            actions,
            workspace: cfg.workspace.clone(),
            state_dir: cfg.state_dir.clone(),
            exclude: Exclude::for_workspace(cfg).map_err(|e| format!("{e:#}")),
            excluded: cfg.download_exclude.clone(),
            key: RwLock::new(None),
        }
    }
}

/// A page that refuses, boxed (it is large beside what it stands for).
type Refusal = Box<Response<OwnBody>>;

/// What a page request needs from the front.
pub struct Asked<'a> {
    pub pages: &'a Pages,
    pub state: Option<&'a watch::Receiver<State>>,
    /// HTTPS: the cookie is Secure.
    pub secure: bool,
}

impl Asked<'_> {
    /// Answers a request under [`PREFIX`] (or the prefix without its
    /// slash). A client that asks for JSON (`Accept: application/json`, a
    /// script such as `jupyter-room`) gets an action's outcome as JSON, and
    /// every refusal as `{"error": "..."}` with the same status.
    pub async fn answer(&self, req: Request<Incoming>) -> Response<OwnBody> {
        let json = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
        let response = self.page(req, json).await;
        let is_html =
            response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
        if !json || !is_html || response.status().as_u16() < 400 {
            return response;
        }
        let status = response.status();
        let page = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        json_reply(status, &serde_json::json!({ "error": page_text(&String::from_utf8_lossy(&page)) }))
    }

    async fn page(&self, req: Request<Incoming>, json: bool) -> Response<OwnBody> {
        let path = req.uri().path();
        if self.pages.pages_off() {
            return html(
                StatusCode::NOT_FOUND,
                "Not available",
                "<p>These pages need the login token, and this Jupyter has none (or it is not known yet). \
                 Ask the organiser.</p>",
            );
        }
        // The login link opened on the pages themselves: the cookie, then
        // the same page without the token in the address bar.
        let cookie = match req.method() == Method::GET {
            true => self.pages.login_cookie(req.uri(), self.secure),
            false => None,
        };
        let Some(page) = path.strip_prefix(PREFIX) else {
            return redirect(&without_token(PREFIX, req.uri().query()), cookie);
        };
        let page = page.to_string();
        if cookie.is_some() {
            return redirect(&without_token(path, req.uri().query()), cookie);
        }
        let Some(holder) = self.pages.holder(req.headers()) else {
            return html(
                StatusCode::FORBIDDEN,
                "Log in first",
                "<p>This page is for the participant who holds this Jupyter's login link. \
                 Open your login link (the address with <code>?token=</code> the organiser gave you) once in this \
                 browser, then come back to <a href=\"/_agent/\">/_agent/</a>.</p>",
            );
        };
        let method = req.method().clone();
        match (method, page.as_str()) {
            (Method::GET, "") => self.home().await,
            (Method::GET, "download") => self.download(req.uri()),
            (Method::GET, "reset") => self.confirm_reset(&holder),
            (Method::GET, "update") => self.confirm_update(&holder).await,
            (Method::GET, "hand") => self.confirm_hand(&holder),
            (Method::POST, "reset" | "update" | "hand") => {
                let form = match self.checked_form(&holder, req).await {
                    Ok(form) => form,
                    Err(refused) => return refused,
                };
                match page.as_str() {
                    "reset" => self.reset(json).await,
                    "update" => self.update(json).await,
                    _ => self.hand(&form, json).await,
                }
            }
            (_, "" | "download" | "reset" | "update" | "hand") => html(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "<p>This page is opened with GET, and an action is taken with the form's POST.</p>",
            ),
            _ => html(
                StatusCode::NOT_FOUND,
                "No such page",
                "<p>See <a href=\"/_agent/\">your environment's page</a>.</p>",
            ),
        }
    }

    /// The POST's form, once it is proven to come from the holder's own page
    /// and to be confirmed; else the refusal (nothing was done).
    async fn checked_form(
        &self,
        holder: &Holder,
        req: Request<Incoming>,
    ) -> Result<Vec<(String, String)>, Response<OwnBody>> {
        let forbidden = |why: &str| {
            html(StatusCode::FORBIDDEN, "Refused", &format!("<p>{}; nothing was done. Go back to <a href=\"/_agent/\">your environment's page</a> and try again.</p>", escape(why)))
        };
        if let Holder::Session { .. } = holder {
            if !same_origin(req.headers()) {
                return Err(forbidden("this request came from another site"));
            }
        }
        let body = http_body_util::Limited::new(req.into_body(), MAX_FORM)
            .collect()
            .await
            .map_err(|_| {
                html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too large",
                    &format!("<p>The form is larger than {MAX_FORM} bytes; nothing was done.</p>"),
                )
            })?
            .to_bytes();
        let form: Vec<(String, String)> =
            form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if let Holder::Session { nonce } = holder {
            let proven = field("csrf").is_some_and(|tag| self.pages.verify("csrf", nonce, tag));
            if !proven {
                return Err(forbidden(
                    "the form's anti-forgery token is missing or wrong (an old page, or another site)",
                ));
            }
        }
        if field("confirm") != Some("yes") {
            return Err(html(
                StatusCode::BAD_REQUEST,
                "Not confirmed",
                "<p>The action was not confirmed; nothing was done. Confirm it on its page.</p>",
            ));
        }
        Ok(form)
    }

    /// The hidden fields of a form: the anti-forgery token (with the
    /// cookie) and the confirmation.
    fn form_fields(&self, holder: &Holder) -> String {
        let csrf = match holder {
            Holder::Session { nonce } => self.pages.tag("csrf", nonce).unwrap_or_default(),
            Holder::Header => String::new(),
        };
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">")
    }

    fn state(&self) -> Option<State> {
        self.state.map(|s| s.borrow().clone())
    }

    fn workspace(&self) -> Result<&WorkspaceConfig, Refusal> {
        self.pages.workspace.as_ref().ok_or_else(|| {
            Box::new(html(
                StatusCode::CONFLICT,
                "No materials",
                "<p>This environment has no workshop materials configured (<code>[workspace]</code>), so there is \
                 nothing to download, reset or update here. Save your notebooks from JupyterLab (File, Download).</p>",
            ))
        })
    }

    async fn home(&self) -> Response<OwnBody> {
        let state = self.state();
        let mut body = String::new();
        let status = match state.as_ref().map(|s| s.phase.clone()) {
            Some(crate::state::Phase::Ready) => "Jupyter is ready.".to_string(),
            Some(crate::state::Phase::Failed) => {
                "The setup failed; you can still download your work or reset your environment.".to_string()
            }
            Some(phase) => format!("The setup is running ({}).", phase.as_str()),
            None => String::new(),
        };
        body.push_str(&format!("<p id=\"status\">{}</p>\n<p><a href=\"/\">Back to Jupyter</a></p>\n", escape(&status)));

        body.push_str("<h2>Ask for help</h2>\n");
        body.push_str(&format!("<p id=\"hand\">{}</p>\n", escape(&hand_line(state.as_ref()))));
        let hand_action =
            if state.as_ref().and_then(|s| s.hand.as_ref()).is_some() { "Lower my hand" } else { "Raise my hand" };
        body.push_str(&format!("<p><a id=\"hand-link\" href=\"/_agent/hand\">{hand_action}</a></p>\n"));

        if let Some(w) = &self.pages.workspace {
            body.push_str("<h2>My work</h2>\n");
            body.push_str(&format!(
                "<p><a id=\"download\" href=\"/_agent/download\" download>Download my work</a> (a .zip of <code>{}</code>{})</p>\n",
                escape(&w.path.display().to_string()),
                match &self.pages.excluded[..] {
                    [] => String::new(),
                    globs => format!(", without {}", escape(&globs.join(", "))),
                }
            ));
            // Their sizes are a walk of each: off the front's threads.
            let listed = {
                let w = w.clone();
                tokio::task::spawn_blocking(move || download::backups(&w))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            };
            match listed {
                Ok(backups) if !backups.is_empty() => {
                    body.push_str("<p>Copies moved aside by a reset:</p>\n<ul id=\"backups\">\n");
                    for b in backups {
                        let name = b.name.clone();
                        body.push_str(&format!(
                            "<li><a href=\"/_agent/download?backup={}\" download>{}</a></li>\n",
                            form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>(),
                            escape(&name)
                        ));
                    }
                    body.push_str("</ul>\n");
                }
                Ok(_) => {}
                Err(e) => warn!("listing the workspace's backups for the pages: {e:#}"),
            }
            body.push_str("<h2>The organiser's fixes</h2>\n<p><a id=\"update-link\" href=\"/_agent/update\">See whether the materials changed, and take the changes</a></p>\n");
            body.push_str(
                "<h2>Start again</h2>\n<p><a id=\"reset-link\" href=\"/_agent/reset\">Reset my environment</a></p>\n",
            );
        }
        html(StatusCode::OK, "Your Jupyter environment", &body)
    }

    fn download(&self, uri: &http::Uri) -> Response<OwnBody> {
        let w = match self.workspace() {
            Ok(w) => w,
            Err(refused) => return *refused,
        };
        let exclude = match &self.pages.exclude {
            Ok(e) => e.clone(),
            Err(why) => {
                return html(StatusCode::INTERNAL_SERVER_ERROR, "Cannot download", &format!("<p>{}</p>", escape(why)))
            }
        };
        let root = match uri.query().and_then(|q| query_value(q, "backup")) {
            None => w.path.clone(),
            Some(name) => match download::find_backup(w, &name) {
                Ok(Some(b)) => b.path,
                _ => {
                    return html(
                        StatusCode::NOT_FOUND,
                        "No such copy",
                        "<p>There is no such copy; see <a href=\"/_agent/\">the list</a>.</p>",
                    )
                }
            },
        };
        if !root.is_dir() {
            return html(
                StatusCode::NOT_FOUND,
                "Nothing to download",
                "<p>The folder does not exist (a reset may be under way); try again in a moment.</p>",
            );
        }
        let name = download::file_name(&root, chrono::Local::now().date_naive());
        let mut response = Response::new(zip_stream(root, exclude));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
        // file_name is ASCII letters, digits and ._- only.
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        secure_headers(headers);
        response
    }

    fn confirm_reset(&self, holder: &Holder) -> Response<OwnBody> {
        let w = match self.workspace() {
            Ok(w) => w,
            Err(refused) => return *refused,
        };
        let body = format!(
            "<p>A reset gives you the materials as they were at the start:</p>\n<ul>\n\
             <li>your folder <code>{path}</code> is moved aside as <code>{path}.bak-&lt;date and time&gt;</code>: \
             nothing is deleted, and you can download it from <a href=\"/_agent/\">your environment's page</a> afterwards;</li>\n\
             <li>the materials are fetched fresh;</li>\n\
             <li>Jupyter starts again in a new container: <strong>running kernels and unsaved changes are lost</strong>; \
             save your notebooks first.</li>\n</ul>\n\
             <p>Your login link stays the same.</p>\n\
             <form method=\"post\" action=\"/_agent/reset\">{fields}<button id=\"confirm\" type=\"submit\">Reset my environment</button></form>\n\
             <p><a href=\"/_agent/\">Cancel</a></p>\n",
            path = escape(&w.path.display().to_string()),
            fields = self.form_fields(holder),
        );
        html(StatusCode::OK, "Reset my environment?", &body)
    }

    async fn reset(&self, json: bool) -> Response<OwnBody> {
        let actions = match self.actions() {
            Ok(a) => a,
            Err(refused) => return *refused,
        };
        let actions = actions.clone();
        let Some(answer) = within(async move { actions.reset().await }).await else {
            return goes_on("reset", "Jupyter starts again once it is done", json);
        };
        match answer {
            Ok(done) if json => json_reply(StatusCode::OK, &done),
            Ok(done) => {
                info!(aside = %done.aside.display(), "the participant reset the workspace from the pages");
                let body = format!(
                    "<p id=\"done\">Your work was moved aside to <code>{}</code>, and the materials are fresh.</p>\n\
                     <p>Jupyter is starting again; <a href=\"/\">follow it here</a> and log in with the same link as before.</p>\n\
                     <p><a href=\"/_agent/\">Your environment's page</a> lists the copy for download.</p>\n",
                    escape(&done.aside.display().to_string())
                );
                html(StatusCode::OK, "Reset", &body)
            }
            Err(e) => action_error("Reset", e),
        }
    }

    async fn confirm_update(&self, holder: &Holder) -> Response<OwnBody> {
        let w = match self.workspace() {
            Ok(w) => w,
            Err(refused) => return *refused,
        };
        let (w, state_dir) = (w.clone(), self.pages.state_dir.clone());
        let checked =
            within(async move { crate::workspace::check(&w, &state_dir).await.map_err(|e| format!("{e:#}")) });
        let Some(checked) = checked.await else {
            return html(
                StatusCode::ACCEPTED,
                "The organiser's fixes",
                "<p id=\"fetching\">The new version of the materials is still being fetched: reload this page in a minute.</p>\n",
            );
        };
        let body = match checked {
            Ok(None) => "<p id=\"up-to-date\">The materials have not changed since you got them: there is nothing to take.</p>\n\
                         <p><a href=\"/_agent/\">Back</a></p>\n"
                .to_string(),
            Ok(Some(u)) if !u.changes_files() => format!(
                "<p>The materials moved ({} to {}), but nothing in your copy would change.</p>\n<form method=\"post\" action=\"/_agent/update\">{}<button id=\"confirm\" type=\"submit\">Take the new version</button></form>\n<p><a href=\"/_agent/\">Cancel</a></p>\n",
                escape(&short(&u.from)),
                escape(&short(&u.to)),
                self.form_fields(holder)
            ),
            Ok(Some(u)) => format!(
                "<p>The organiser changed the materials ({} to {}). Taking the changes does this, and never \
                 overwrites a file you changed:</p>\n{}\n<form method=\"post\" action=\"/_agent/update\">{}<button id=\"confirm\" type=\"submit\">Take the changes</button></form>\n<p><a href=\"/_agent/\">Cancel</a></p>\n",
                escape(&short(&u.from)),
                escape(&short(&u.to)),
                changes_list(&u),
                self.form_fields(holder)
            ),
            Err(e) => format!("<p>Whether the materials changed cannot be seen now: {}</p>\n<p><a href=\"/_agent/\">Back</a></p>\n", escape(&e)),
        };
        html(StatusCode::OK, "The organiser's fixes", &body)
    }

    async fn update(&self, json: bool) -> Response<OwnBody> {
        let actions = match self.actions() {
            Ok(a) => a,
            Err(refused) => return *refused,
        };
        let actions = actions.clone();
        let Some(answer) = within(async move { actions.update().await }).await else {
            return goes_on("update", "your environment's page shows the new version once it is done", json);
        };
        match answer {
            Ok(u) if json => json_reply(StatusCode::OK, &u),
            Ok(u) if u.up_to_date => html(StatusCode::OK, "Up to date", "<p id=\"done\">Nothing to take: the materials have not changed.</p><p><a href=\"/_agent/\">Back</a></p>"),
            Ok(u) => {
                let body = format!(
                    "<p id=\"done\">Your copy now has the organiser's version {}:</p>\n{}\n<p>Reopen a notebook that changed to see the new version. <a href=\"/\">Back to Jupyter</a></p>\n",
                    escape(&short(&u.to)),
                    changes_list(&u)
                );
                html(StatusCode::OK, "Updated", &body)
            }
            Err(e) => action_error("Update", e),
        }
    }

    fn confirm_hand(&self, holder: &Holder) -> Response<OwnBody> {
        let state = self.state();
        let raised = state.as_ref().and_then(|s| s.hand.as_ref()).is_some();
        let fields = self.form_fields(holder);
        let body = if raised {
            format!(
                "<p id=\"hand\">{}</p>\n<form method=\"post\" action=\"/_agent/hand\">{fields}<input type=\"hidden\" name=\"raise\" value=\"no\">\
                 <button id=\"confirm\" type=\"submit\">Lower my hand</button></form>\n<p><a href=\"/_agent/\">Cancel</a></p>\n",
                escape(&hand_line(state.as_ref()))
            )
        } else {
            format!(
                "<p>The organiser sees a raised hand in the room's view, with your message. It lowers itself after {} \
                 or when the organiser answers.</p>\n<form method=\"post\" action=\"/_agent/hand\">{fields}<input type=\"hidden\" name=\"raise\" value=\"yes\">\
                 <p><label>What do you need? (optional, at most {} characters)<br><input id=\"message\" name=\"message\" size=\"60\" maxlength=\"{}\"></label></p>\
                 <button id=\"confirm\" type=\"submit\">Raise my hand</button></form>\n<p><a href=\"/_agent/\">Cancel</a></p>\n",
                jupyter_proto::duration::show(crate::actions::HAND_TTL),
                crate::actions::HAND_MESSAGE_MAX,
                crate::actions::HAND_MESSAGE_MAX,
            )
        };
        html(StatusCode::OK, "Ask for help", &body)
    }

    async fn hand(&self, form: &[(String, String)], json: bool) -> Response<OwnBody> {
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let change = match field("raise") {
            Some("yes") => match HandChange::raise(field("message")) {
                Ok(change) => change,
                Err(e) => return action_error("Raise a hand", e),
            },
            Some("no") => HandChange::Lower,
            _ => {
                return html(
                    StatusCode::BAD_REQUEST,
                    "Not understood",
                    "<p>The form says neither raise nor lower; nothing was done.</p>",
                )
            }
        };
        let actions = match self.actions() {
            Ok(a) => a,
            Err(refused) => return *refused,
        };
        match actions.hand(change).await {
            Ok(hand) if json => json_reply(StatusCode::OK, &jupyter_proto::state::HandAnswer { hand }),
            Ok(Some(_)) => html(
                StatusCode::OK,
                "Hand raised",
                "<p id=\"done\">Your hand is raised: the organiser sees it.</p><p><a href=\"/_agent/\">Back</a></p>",
            ),
            Ok(None) => html(
                StatusCode::OK,
                "Hand lowered",
                "<p id=\"done\">Your hand is lowered.</p><p><a href=\"/_agent/\">Back</a></p>",
            ),
            Err(e) => action_error("Raise a hand", e),
        }
    }

    fn actions(&self) -> Result<&Actions, Refusal> {
        let refused = || {
            Box::new(html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not now",
                "<p>The agent takes no actions now; ask the organiser.</p>",
            ))
        };
        self.pages.actions.as_ref().ok_or_else(refused)
    }
}

/// Waits for `ask` at most [`ANSWER_WITHIN`]; past it `None`, and `ask`
/// goes on by itself (an action asked stays asked, and is taken when the
/// agent gets to it).
async fn within<T: Send + 'static>(ask: impl std::future::Future<Output = T> + Send + 'static) -> Option<T> {
    let task = tokio::spawn(ask);
    match tokio::time::timeout(ANSWER_WITHIN, task).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// The answer to an action that takes longer than [`ANSWER_WITHIN`].
fn goes_on(what: &str, then: &str, json: bool) -> Response<OwnBody> {
    if json {
        return json_reply(StatusCode::ACCEPTED, &serde_json::json!({ "under_way": true }));
    }
    html(
        StatusCode::ACCEPTED,
        "Under way",
        &format!(
            "<p id=\"under-way\">The {what} was asked and goes on (it waits for the setup when one runs): {then}. \
             Follow it on <a href=\"/\">the progress page</a>.</p>\n<p><a href=\"/_agent/\">Your environment's page</a></p>\n"
        ),
    )
}

fn hand_line(state: Option<&State>) -> String {
    match state.and_then(|s| s.hand.as_ref()) {
        None => "Your hand is not raised.".into(),
        Some(h) => {
            let at = h.raised_at.format("%H:%M UTC");
            match &h.message {
                Some(m) => format!("You asked for help at {at}: {m}"),
                None => format!("You asked for help at {at}."),
            }
        }
    }
}

/// A commit's first 12 characters, a sha256's too.
fn short(identity: &str) -> String {
    identity.chars().take(12).collect()
}

fn changes_list(u: &crate::workspace::Updated) -> String {
    let items: String = u
        .changes()
        .into_iter()
        .map(|(what, file)| format!("<li>{what}: <code>{}</code></li>\n", escape(&file)))
        .collect();
    if items.is_empty() {
        return "<p>No file changes.</p>".into();
    }
    format!("<ul id=\"changes\">\n{items}</ul>")
}

fn action_error(what: &str, e: ActionError) -> Response<OwnBody> {
    let status = match &e {
        ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
        ActionError::Refused(_) => StatusCode::CONFLICT,
        ActionError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        ActionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    html(
        status,
        &format!("{what}: not done"),
        &format!("<p id=\"error\">{}</p>\n<p><a href=\"/_agent/\">Back</a></p>\n", escape(&e.to_string())),
    )
}

mod answer;
mod session;
mod zip;

#[cfg(test)]
mod tests;
