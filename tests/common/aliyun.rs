//! A stand-in for the organiser's `aliyun` CLI and the cloud behind it
//! (docs/room.md, "The aliyun calls", and "Testing without a cloud"): an
//! executable `aliyun` written into a folder of its own, to put first on the
//! `PATH` of `jupyter-room`, hands its arguments (NUL-separated, exactly as
//! received) to a fake cloud on 127.0.0.1, and prints its answer as the CLI
//! does: the JSON answer on stdout and exit 0, or an error text on stderr
//! and exit 1.
//!
//! The fake cloud answers the few ROS and ECS calls `jupyter-room` makes,
//! with the request parameters and answer shapes their API references
//! document, and refuses any other parameter as the API would
//! (`InvalidParameter`): `ros CreateStack`, `ListStacks` (its `Tag.N`
//! filter, pages of at most 50), `GetStack`, `ListStackResources` (each
//! participant's instance a copy `JupyterInstance[i]` of type
//! `ALIYUN::ECS::InstanceGroup`, as in the room template), `GetStackResource`
//! (`ShowResourceAttributes`: the group's `InstanceIds` and `PublicIps`
//! lists in `ResourceAttributes`), `DeleteStack`, and `ecs
//! DescribeInstances` (`InstanceIds` as a JSON list, pages of at most 100).
//!
//! A created stack is a room for real: one agent per participant
//! ([`ForegroundAgent`], each with its own [`Env`] and the config the test
//! makes for it, e.g. with the organiser's materials:
//! [`FakeCloud::start`]) against the real engine and the test image,
//! each reachable by the test as the participant's instance
//! ([`FakeCloud::instance`]: its config, its folder, its container), and
//! each participant's `jupyter-bootstrap` signalling the stack's own
//! stand-in wait condition ([`FakeRos`]) with the participant's name as its
//! id, as the room template's user data does. The
//! stack is `CREATE_IN_PROGRESS` until every participant has signalled,
//! then `CREATE_COMPLETE` with the template's outputs (`Room` = the wait
//! condition's `Data`, `Participants`, `PublicIps`).
//!
//! Each instance has a public address of its own, on the loopback network:
//! `127.X.Y.Z`, random per instance, and its agent's front listens on
//! `<that address>:8888` (plain HTTP: the tests' stacks set `TlsMode=off`),
//! as a real instance's front listens on its public IP's port 8888. So
//! `jupyter-room` finds each participant's front exactly as in the cloud,
//! from the address ECS reports, and nothing is sent off this host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use serde_json::{json, Value};

use super::agent::ForegroundAgent;
use super::bin;
use super::env::Env;
use super::http_fake::{self, FakeServer};
use super::ros::{FakeRos, WaitStatus};

/// The port of every instance's front (the room template's JupyterIngress).
pub const FRONT_PORT: u16 = 8888;

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

struct Instance {
    id: String,
    name: String,
    ip: String,
    /// The instance's world once its agent is started: its `Env`'s folder
    /// and container.
    home: Option<(PathBuf, String)>,
}

/// How a stack's instance configures its agent: the config text for the
/// instance's `Env` (one of the `Env`'s `base_config`, on `127.0.0.1:0`,
/// which the fake moves to the instance's address).
pub type Configure = dyn Fn(&Env) -> String + Send + Sync;

/// One participant's instance as the test sees it, once its agent is started.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub participant: String,
    /// Its `Env`'s folder: the agent's config (`config.toml`), its log
    /// (`agent.log`), whatever the config placed there.
    pub dir: PathBuf,
    /// Its container's name.
    pub container: String,
}

impl InstanceView {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// What its agent logged, for a failing test to show.
    pub fn said(&self) -> String {
        format!(
            "--- {}'s agent log:\n{}",
            self.participant,
            std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
        )
    }

    /// `jupyter-agent --config <its config> ARGS`, as a participant on the
    /// instance runs it; its output.
    pub fn agent(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("jupyter-agent"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .expect("jupyter-agent runs")
    }
}

struct Stack {
    id: String,
    name: String,
    region: String,
    created: String,
    tags: Vec<(String, String)>,
    parameters: Vec<(String, String)>,
    participants: Vec<String>,
    instances: Vec<Instance>,
    ros: Arc<FakeRos>,
    deleted: bool,
    /// The thread that runs the stack's instances (an `Env` stays on the
    /// thread that made it), until told to stop or its sender is dropped.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stack {
    fn status(&self) -> (String, String) {
        if self.deleted {
            return ("DELETE_COMPLETE".into(), "Stack DELETE completed successfully".into());
        }
        match self.ros.wait_condition(self.participants.len()).status {
            WaitStatus::Complete => ("CREATE_COMPLETE".into(), "Stack CREATE completed successfully".into()),
            WaitStatus::Failed { reason } => ("CREATE_FAILED".into(), format!("WaitCondition failed: {reason}")),
            WaitStatus::Waiting { .. } => ("CREATE_IN_PROGRESS".into(), "Stack CREATE started".into()),
        }
    }
}

struct State {
    stacks: Vec<Stack>,
    /// Every call: its arguments after `aliyun`.
    calls: Vec<Vec<String>>,
    configure: Arc<Configure>,
}

/// A stack as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackView {
    pub name: String,
    pub tags: Vec<(String, String)>,
    pub participants: Vec<String>,
}

/// The fake cloud and its `aliyun` executable; stops (and tears down every
/// stack's agents) when dropped.
pub struct FakeCloud {
    state: Arc<Mutex<State>>,
    _server: FakeServer,
    dir: tempfile::TempDir,
}

impl FakeCloud {
    /// A cloud whose instances' agents have the config `configure` makes
    /// for each instance's `Env` (e.g. with a `[workspace]` of the
    /// organiser's materials); the fake moves its front from
    /// `127.0.0.1:0` to the instance's address.
    pub fn start(configure: impl Fn(&Env) -> String + Send + Sync + 'static) -> FakeCloud {
        let state =
            Arc::new(Mutex::new(State { stacks: Vec::new(), calls: Vec::new(), configure: Arc::new(configure) }));
        let s = state.clone();
        let server = FakeServer::tcp(move |request| Some(handle(&request, &s)));
        let dir = tempfile::tempdir().expect("a folder for the aliyun stand-in");
        let script = format!(
            "#!/bin/bash\n\
             # The tests' stand-in for the aliyun CLI (tests/common/aliyun.rs): its arguments go to the fake cloud.\n\
             out=$(mktemp) || exit 70\n\
             trap 'rm -f \"$out\" \"$out.h\"' EXIT\n\
             printf '%s\\0' \"$@\" | curl -sS --max-time 120 -o \"$out\" -D \"$out.h\" --data-binary @- {url}/call || exit 70\n\
             code=$(tr -d '\\r' < \"$out.h\" | sed -n 's/^[Xx]-[Ee]xit: *//p' | tail -n 1)\n\
             if [ \"$code\" = 0 ]; then cat \"$out\"; else cat \"$out\" >&2; fi\n\
             exit \"${{code:-70}}\"\n",
            url = server.url()
        );
        let path = dir.path().join("aliyun");
        std::fs::write(&path, script).expect("write the aliyun stand-in");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make it executable");
        FakeCloud { state, _server: server, dir }
    }

    /// The folder holding `aliyun`: first on the PATH of `jupyter-room`.
    pub fn bin_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn program(&self) -> PathBuf {
        self.dir.path().join("aliyun")
    }

    /// `PATH` with the stand-in first.
    pub fn path_env(&self) -> String {
        format!("{}:{}", self.bin_dir().display(), std::env::var("PATH").unwrap_or_default())
    }

    /// Every call so far, as `ros CreateStack ...` argument lists.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many calls of `product api` were made.
    pub fn count(&self, product: &str, api: &str) -> usize {
        self.calls().iter().filter(|c| c.len() >= 2 && c[0] == product && c[1] == api).count()
    }

    /// The stacks not deleted.
    pub fn stacks(&self) -> Vec<StackView> {
        let state = self.state.lock().unwrap();
        state
            .stacks
            .iter()
            .filter(|s| !s.deleted)
            .map(|s| StackView { name: s.name.clone(), tags: s.tags.clone(), participants: s.participants.clone() })
            .collect()
    }

    /// `participant`'s instance (in a stack not deleted), once its agent
    /// is started.
    pub fn instance(&self, participant: &str) -> Option<InstanceView> {
        let state = self.state.lock().unwrap();
        state.stacks.iter().filter(|s| !s.deleted).find_map(|s| {
            let i = s.participants.iter().position(|p| p == participant)?;
            let (dir, container) = s.instances[i].home.clone()?;
            Some(InstanceView { participant: participant.to_string(), dir, container })
        })
    }

    /// Each participant's instance address, by name.
    pub fn addresses(&self) -> BTreeMap<String, String> {
        let state = self.state.lock().unwrap();
        let mut out = BTreeMap::new();
        for s in state.stacks.iter().filter(|s| !s.deleted) {
            for (p, i) in s.participants.iter().zip(&s.instances) {
                out.insert(p.clone(), i.ip.clone());
            }
        }
        out
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        // Every stack's instances stopped and their containers removed before the test ends.
        let threads: Vec<_> = self
            .state
            .lock()
            .unwrap()
            .stacks
            .iter_mut()
            .filter_map(|s| {
                s.stop.take();
                s.thread.take()
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A fresh loopback address, `127.X.Y.Z`, unlikely to be another test
/// run's, whose port 8888 is free now (the agent binds it a moment later).
fn loopback_address() -> String {
    for _ in 0..20 {
        let n = INSTANCES.fetch_add(1, Ordering::SeqCst) as u64;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        let mix = (u64::from(std::process::id()) << 20) ^ (nanos >> 4) ^ (n.wrapping_mul(0x9e37_79b9));
        let ip = format!("127.{}.{}.{}", 16 + mix % 200, (mix >> 8) % 250 + 1, (mix >> 16) % 250 + 2);
        if std::net::TcpListener::bind((ip.as_str(), FRONT_PORT)).is_ok() {
            return ip;
        }
    }
    panic!("port {FRONT_PORT} is taken on every loopback address tried: does something listen on 0.0.0.0:{FRONT_PORT}?")
}

/// The aliyun CLI's error output for an API error, and exit 1.
fn api_error(code: &str, message: &str) -> http_fake::Response {
    let text = format!(
        "ERROR: SDK.ServerError\nErrorCode: {code}\nRecommend: https://api.aliyun.com/troubleshoot\n\
         RequestId: 00000000-FAKE\nMessage: {message}\n"
    );
    let mut r = http_fake::response(200, Some("text/plain"), text);
    r.headers_mut().insert("x-exit", "1".parse().unwrap());
    r
}

fn answer(value: Value) -> http_fake::Response {
    let mut r = http_fake::response(200, Some("application/json"), format!("{value:#}\n"));
    r.headers_mut().insert("x-exit", "0".parse().unwrap());
    r
}

fn handle(request: &http_fake::Request, state: &Arc<Mutex<State>>) -> http_fake::Response {
    let mut args: Vec<String> =
        request.body.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    state.lock().unwrap().calls.push(args.clone());
    if args.len() < 2 {
        return api_error("InvalidCommand", "expected: aliyun <product> <Api> --Name value ...");
    }
    let mut params: Vec<(String, String)> = Vec::new();
    let mut rest = args[2..].iter();
    while let Some(name) = rest.next() {
        let Some(name) = name.strip_prefix("--") else {
            return api_error("InvalidParameter", &format!("{name}: expected --Name value"));
        };
        let Some(value) = rest.next() else {
            return api_error("InvalidParameter", &format!("--{name} has no value"));
        };
        params.push((name.to_string(), value.clone()));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let allowed: &[&str] = match (args[0].as_str(), args[1].as_str()) {
        ("ros", "CreateStack") => {
            &["RegionId", "StackName", "TemplateBody", "TimeoutInMinutes", "DisableRollback", "Parameters.", "Tags."]
        }
        ("ros", "ListStacks") => &["RegionId", "Tag.", "PageSize", "PageNumber", "StackName.", "Status."],
        ("ros", "GetStack" | "ListStackResources" | "DeleteStack") => &["RegionId", "StackId"],
        ("ros", "GetStackResource") => &[
            "RegionId",
            "StackId",
            "LogicalResourceId",
            "ShowResourceAttributes",
            "ResourceAttributes.",
            "ClientToken",
        ],
        ("ecs", "DescribeInstances") => &["RegionId", "InstanceIds", "PageSize", "PageNumber"],
        (product, api) => return api_error("InvalidAction.NotFound", &format!("{product} {api}: not in the fake")),
    };
    for (name, _) in &params {
        let ok = allowed.iter().any(|a| if a.ends_with('.') { numbered(name, a) } else { name == a });
        if !ok {
            return api_error("InvalidParameter", &format!("{} {}: unknown parameter --{name}", args[0], args[1]));
        }
    }
    let Some(region) = get("RegionId") else {
        return api_error("MissingRegionId", "RegionId is mandatory for this action.");
    };
    match args[1].as_str() {
        "CreateStack" => create_stack(&params, &region, state),
        "ListStacks" => list_stacks(&params, &region, state),
        "GetStack" | "ListStackResources" | "GetStackResource" | "DeleteStack" => {
            let Some(id) = get("StackId") else { return api_error("MissingStackId", "StackId is mandatory") };
            let mut st = state.lock().unwrap();
            let Some(stack) = st.stacks.iter_mut().find(|s| s.id == id && s.region == region && !s.deleted) else {
                return api_error("StackNotFound", &format!("The Stack ({id}) could not be found."));
            };
            match args[1].as_str() {
                "GetStack" => answer(get_stack(stack)),
                "ListStackResources" => answer(stack_resources(stack)),
                "GetStackResource" => stack_resource(stack, &params),
                _ => {
                    // ROS deletes in the background: the stack's thread stops its agents.
                    stack.deleted = true;
                    stack.stop.take();
                    answer(json!({"RequestId": "00000000-FAKE-DELETE"}))
                }
            }
        }
        _ => describe_instances(&params, state),
    }
}

/// `Name.N.Field` or `Name.N` with N from 1.
fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('.').next())
        .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 1))
}

/// The values of a numbered list parameter: `Tags.1.Key`/`Tags.1.Value` -> [(key, value)].
fn pairs(params: &[(String, String)], list: &str, key: &str, value: &str) -> Vec<(String, String)> {
    let mut by_n: BTreeMap<u32, (String, String)> = BTreeMap::new();
    for (name, v) in params {
        let Some(rest) = name.strip_prefix(&format!("{list}.")) else { continue };
        let Some((n, field)) = rest.split_once('.') else { continue };
        let Ok(n) = n.parse::<u32>() else { continue };
        let entry = by_n.entry(n).or_default();
        if field == key {
            entry.0 = v.clone();
        } else if field == value {
            entry.1 = v.clone();
        }
    }
    by_n.into_values().collect()
}

fn create_stack(params: &[(String, String)], region: &str, state: &Arc<Mutex<State>>) -> http_fake::Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(name) = get("StackName") else { return api_error("MissingStackName", "StackName is mandatory") };
    let Some(body) = get("TemplateBody") else {
        return api_error("InvalidTemplate", "either TemplateBody or TemplateURL is required");
    };
    if !body.contains("ROSTemplateFormatVersion") || !body.contains("JupyterInstance:") {
        return api_error("InvalidTemplate", "not the room template");
    }
    let parameters = pairs(params, "Parameters", "ParameterKey", "ParameterValue");
    let tags = pairs(params, "Tags", "Key", "Value");
    let Some(participants) = parameters.iter().find(|(k, _)| k == "Participants").map(|(_, v)| v.clone()) else {
        return api_error("StackValidationFailed", "Parameter Participants is required");
    };
    let valid = participants.split(',').all(|n| {
        (1..=20).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }) && participants.split(',').count() <= 30;
    if !valid {
        return api_error("StackValidationFailed", "Parameter Participants does not match the AllowedPattern");
    }
    let participants: Vec<String> = participants.split(',').map(String::from).collect();
    let mut st = state.lock().unwrap();
    if st.stacks.iter().any(|s| s.name == name && s.region == region && !s.deleted) {
        return api_error("StackExists", &format!("The Stack ({name}) already exists."));
    }
    let n = st.stacks.len();
    let id = format!(
        "{:08x}-fake-4f5f-b4ca-{:012x}",
        0x4a6c_9851u32 + n as u32,
        std::process::id() as u64 * 1000 + n as u64
    );
    let instances: Vec<Instance> = participants
        .iter()
        .enumerate()
        .map(|(i, p)| Instance {
            id: format!("i-fake{n:02}{i:02}{}", std::process::id()),
            name: format!("ecs-imagesearchhandson-{p}"),
            ip: loopback_address(),
            home: None,
        })
        .collect();
    let ros = Arc::new(FakeRos::start());
    let (stop, stopped) = mpsc::channel::<()>();
    let starting: Vec<(String, String)> =
        participants.iter().cloned().zip(instances.iter().map(|i| i.ip.clone())).collect();
    let configure = st.configure.clone();
    let state = state.clone();
    let stack_id = id.clone();
    st.stacks.push(Stack {
        id: id.clone(),
        name: name.clone(),
        region: region.to_string(),
        created: format!("2026-12-07T10:00:{:02}", n % 60),
        tags,
        parameters,
        participants,
        instances,
        ros: ros.clone(),
        deleted: false,
        stop: Some(stop),
        thread: None,
    });
    let thread = std::thread::spawn(move || {
        let world = boot(&name, starting, &ros, &*configure, |i, env| {
            let mut st = state.lock().unwrap();
            if let Some(stack) = st.stacks.iter_mut().find(|s| s.id == stack_id) {
                stack.instances[i].home = Some((env.dir.path().to_path_buf(), env.name.clone()));
            }
        });
        // Until the stack is deleted or the fake stops (the sender dropped).
        let _ = stopped.recv();
        drop(world);
    });
    st.stacks.last_mut().expect("just pushed").thread = Some(thread);
    answer(json!({"RequestId": "00000000-FAKE-CREATE", "StackId": id}))
}

/// The instances of a stack: an agent each (its config from `configure`,
/// its log in its `Env`'s `agent.log`; `started` told each one's index and
/// `Env`), then its bootstrap signalling; the agents (first, so that they
/// stop before their `Env` removes the container) and their `Env`s.
fn boot(
    stack: &str,
    participants: Vec<(String, String)>,
    ros: &FakeRos,
    configure: &Configure,
    started: impl Fn(usize, &Env),
) -> (Vec<ForegroundAgent>, Vec<Env>) {
    let mut envs = Vec::new();
    let mut agents = Vec::new();
    for (i, (name, ip)) in participants.iter().enumerate() {
        let env = Env::new(&format!("cloud-{stack}-{name}"));
        let config = configure(&env);
        let (publish, url_host) = ("publish = \"127.0.0.1:0\"", "url_host = \"127.0.0.1\"");
        assert!(
            config.contains(publish) && config.contains(url_host),
            "the fake cloud's config for {name} has no {publish} and {url_host} to move to its address:\n{config}"
        );
        let config = config
            .replace(publish, &format!("publish = \"{ip}:{FRONT_PORT}\""))
            .replace(url_host, &format!("url_host = \"{ip}\""));
        env.write_config(&config);
        agents.push(ForegroundAgent::start_logging(&env, &env.path("agent.log")));
        started(i, &env);
        envs.push(env);
    }
    let sockets: Vec<PathBuf> = envs.iter().map(Env::socket).collect();
    std::thread::scope(|s| {
        for ((name, _), socket) in participants.iter().zip(&sockets) {
            s.spawn(move || {
                let _ = Command::new(bin("jupyter-bootstrap"))
                    .arg("wait")
                    .arg("--socket")
                    .arg(socket)
                    .args(["--timeout", "4m", "--ros-id", name, "--ros-data", "json", "--ros-failure", "data"])
                    .env("JUPYTER_BOOTSTRAP_ROS_NOTIFY", ros.curl_cli())
                    .output();
            });
        }
    });
    (agents, envs)
}

fn list_stacks(params: &[(String, String)], region: &str, state: &Arc<Mutex<State>>) -> http_fake::Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let size: usize = get("PageSize").and_then(|s| s.parse().ok()).unwrap_or(10);
    let page: usize = get("PageNumber").and_then(|s| s.parse().ok()).unwrap_or(1);
    if !(1..=50).contains(&size) || page < 1 {
        return api_error("InvalidParameter", "PageSize: 1 to 50; PageNumber: from 1");
    }
    let filter = pairs(params, "Tag", "Key", "Value");
    let st = state.lock().unwrap();
    let matching: Vec<&Stack> =
        st.stacks.iter().filter(|s| s.region == region && filter.iter().all(|f| s.tags.contains(f))).collect();
    let shown: Vec<Value> = matching
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|s| {
            let (status, reason) = s.status();
            json!({
                "StackId": s.id, "StackName": s.name, "Status": status, "StatusReason": reason,
                "CreateTime": s.created, "RegionId": s.region, "DisableRollback": false,
                "Tags": s.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
            })
        })
        .collect();
    answer(json!({
        "RequestId": "00000000-FAKE-LIST", "PageNumber": page, "PageSize": size,
        "TotalCount": matching.len(), "Stacks": shown
    }))
}

fn get_stack(s: &Stack) -> Value {
    let (status, reason) = s.status();
    let mut parameters: Vec<Value> =
        s.parameters.iter().map(|(k, v)| json!({"ParameterKey": k, "ParameterValue": v})).collect();
    parameters.push(json!({"ParameterKey": "ALIYUN::StackName", "ParameterValue": s.name}));
    parameters.push(json!({"ParameterKey": "ALIYUN::StackId", "ParameterValue": s.id}));
    parameters.push(json!({"ParameterKey": "ALIYUN::Region", "ParameterValue": s.region}));
    let mut answer = json!({
        "RequestId": "00000000-FAKE-GET", "StackId": s.id, "StackName": s.name, "RegionId": s.region,
        "Status": status, "StatusReason": reason, "CreateTime": s.created, "TimeoutInMinutes": 90,
        "DisableRollback": false, "Parameters": parameters,
        "Tags": s.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
    });
    // Outputs once the stack is complete, as ROS evaluates them then.
    if status == "CREATE_COMPLETE" {
        let condition = s.ros.wait_condition(s.participants.len());
        answer["Outputs"] = json!([
            {"OutputKey": "Room", "OutputValue": condition.data_json(), "Description": "Per participant, the wait condition's data"},
            {"OutputKey": "Participants", "OutputValue": s.participants, "Description": "The participants, in the order given (a list)."},
            {"OutputKey": "PublicIps", "OutputValue": s.instances.iter().map(|i| i.ip.clone()).collect::<Vec<_>>(),
             "Description": "The instances' public IP addresses, in the participants' order."},
        ]);
    }
    answer
}

/// A copy of the counted `JupyterInstance`: an InstanceGroup of one
/// instance. Its physical id is the group's own, not the instance's.
fn group_id(s: &Stack, i: usize) -> String {
    format!("{}-group-{i}", s.id)
}

fn stack_resources(s: &Stack) -> Value {
    let mut resources = vec![
        json!({"LogicalResourceId": "Vpc", "PhysicalResourceId": "vpc-fake", "ResourceType": "ALIYUN::ECS::VPC",
               "Status": "CREATE_COMPLETE", "StackId": s.id, "StackName": s.name}),
        json!({"LogicalResourceId": "JupyterWaitCondition", "PhysicalResourceId": "", "ResourceType": "ALIYUN::ROS::WaitCondition",
               "Status": s.status().0, "StackId": s.id, "StackName": s.name}),
    ];
    for i in 0..s.instances.len() {
        resources.push(json!({
            "LogicalResourceId": format!("JupyterInstance[{i}]"), "PhysicalResourceId": group_id(s, i),
            "ResourceType": "ALIYUN::ECS::InstanceGroup", "Status": "CREATE_COMPLETE", "StackId": s.id, "StackName": s.name
        }));
    }
    json!({"RequestId": "00000000-FAKE-RESOURCES", "Resources": resources})
}

/// GetStackResource of one copy of `JupyterInstance`: with
/// `ShowResourceAttributes true`, the group's attributes (lists, as the
/// group has them), those named by `ResourceAttributes.N` when given.
fn stack_resource(s: &Stack, params: &[(String, String)]) -> http_fake::Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(logical) = get("LogicalResourceId") else {
        return api_error("MissingLogicalResourceId", "LogicalResourceId is mandatory for this action.");
    };
    let index = logical
        .strip_prefix("JupyterInstance[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|i| *i < s.instances.len());
    let Some(i) = index else {
        return api_error(
            "ResourceNotFound",
            &format!("The Resource ({logical}) could not be found in Stack {}.", s.name),
        );
    };
    let instance = &s.instances[i];
    let mut answer = json!({
        "RequestId": "00000000-FAKE-RESOURCE", "StackId": s.id, "StackName": s.name,
        "LogicalResourceId": logical, "PhysicalResourceId": group_id(s, i), "ResourceType": "ALIYUN::ECS::InstanceGroup",
        "Status": "CREATE_COMPLETE", "StatusReason": "state changed", "Description": "",
        "CreateTime": s.created, "UpdateTime": s.created, "Metadata": {},
    });
    let show = match get("ShowResourceAttributes").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return api_error("InvalidParameter", &format!("ShowResourceAttributes: true or false, not {other}"))
        }
    };
    if show {
        let wanted: Vec<String> =
            params.iter().filter(|(n, _)| numbered(n, "ResourceAttributes.")).map(|(_, v)| v.clone()).collect();
        let all = [
            ("InstanceIds", json!([instance.id])),
            ("PublicIps", json!([instance.ip])),
            ("PrivateIps", json!(["192.168.0.10"])),
            ("HostNames", json!([format!("jupyter-{}", s.participants[i])])),
        ];
        let shown: Vec<Value> = all
            .into_iter()
            .filter(|(k, _)| wanted.is_empty() || wanted.iter().any(|w| w == k))
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        answer["ResourceAttributes"] = Value::Array(shown);
    }
    self::answer(answer)
}

fn describe_instances(params: &[(String, String)], state: &Arc<Mutex<State>>) -> http_fake::Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let ids: Vec<String> = match get("InstanceIds").map(|s| serde_json::from_str::<Vec<String>>(&s)) {
        None => Vec::new(),
        Some(Ok(ids)) if ids.len() <= 100 => ids,
        Some(_) => return api_error("InvalidInstanceIds.Malformed", "InstanceIds: a JSON list of at most 100 ids"),
    };
    let size: usize = get("PageSize").and_then(|s| s.parse().ok()).unwrap_or(10);
    if !(1..=100).contains(&size) {
        return api_error("InvalidParameter", "PageSize: 1 to 100");
    }
    let st = state.lock().unwrap();
    let found: Vec<Value> = st
        .stacks
        .iter()
        .filter(|s| !s.deleted)
        .flat_map(|s| s.instances.iter())
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .take(size)
        .map(|i| {
            json!({
                "InstanceId": i.id, "InstanceName": i.name, "Status": "Running",
                "PublicIpAddress": {"IpAddress": [i.ip]}, "EipAddress": {"IpAddress": "", "AllocationId": ""},
                "VpcAttributes": {"PrivateIpAddress": {"IpAddress": ["192.168.0.10"]}},
            })
        })
        .collect();
    answer(json!({
        "RequestId": "00000000-FAKE-DESCRIBE", "PageNumber": 1, "PageSize": size, "TotalCount": found.len(),
        "Instances": {"Instance": found}
    }))
}
