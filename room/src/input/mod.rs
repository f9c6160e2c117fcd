//! What the organiser hands over, in any of the shapes ROS prints it, read
//! into one [`Room`]: each participant with a [`State`].
//!
//! Accepted (room/README.md lists the sources):
//!
//! - the whole answer of `aliyun ros GetStack`: an object whose `Outputs` is
//!   a list of `{OutputKey, OutputValue, Description}`; the `Room` output
//!   holds the signals, the `Participants` output (else the `Participants`
//!   parameter) the names;
//! - that `Outputs` list alone (`... | jq .Outputs`), or one output entry;
//! - the `Room` output's value alone, or the wait condition's `Data`
//!   attribute: an object mapping each signal id (the participant) to the
//!   signal's `data`, or that object as a JSON string.
//!
//! An output's value may be JSON itself or a string holding JSON (the
//! wait condition's `Data` is documented as a JSON string), and so may each
//! participant's signal data. `Participants` may be a JSON list or a
//! comma-separated string (the room template's `Participants` parameter).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The output holding the wait condition's signals, keyed by participant.
pub const ROOM_OUTPUT: &str = "Room";
/// The output (or parameter) naming the participants, in the room's order.
pub const PARTICIPANTS_KEY: &str = "Participants";
/// The templates' parameter for the workshop's end: each instance's
/// automatic release time (docs/room.md#the-end-of-the-workshop).
pub const END_TIME_KEY: &str = "EndTime";

/// How deep a string holding JSON that holds a string holding JSON is
/// unwrapped before the value is taken as it is.
const MAX_NESTING: usize = 4;
/// Longest reason kept from a participant's signal, in characters.
const MAX_REASON: usize = 500;
/// How many GPU names of a participant are kept (an instance has at most 8).
const MAX_GPUS: usize = 16;

/// What the input says, in a form every output is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// With a Participants list, exactly the listed names, in its order;
    /// without one, every signal's id, by name.
    pub participants: Vec<Participant>,
    /// Ids that signalled but are not in the Participants list: a
    /// participant renamed in place (the old name's signal stays in the wait
    /// condition's Data) or removed. Neither a row nor counted; by name.
    pub unlisted: Vec<String>,
    /// Present when the input was the whole GetStack answer.
    pub stack: Option<StackInfo>,
}

/// The stack itself, from a GetStack answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackInfo {
    pub name: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    /// The answer had a Participants list or parameter but no Room output yet.
    pub room_missing: bool,
    /// The workshop's end, from the answer's Parameters list.
    pub end_time: EndTime,
}

/// The `EndTime` parameter of a stack, as its GetStack answer gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EndTime {
    /// The answer lists no parameters (or it is not a whole GetStack
    /// answer): nothing is known.
    #[default]
    Unknown,
    /// The parameters say no end: `EndTime` empty, or a template without it.
    /// The instances run until the stack is deleted.
    NotSet,
    /// ECS releases every instance of the stack at this time (UTC,
    /// `yyyy-MM-ddTHH:mm:ssZ` as the template's pattern allows).
    At(String),
}

impl EndTime {
    /// The time, when one is set: what [`crate::snapshot::StackSeen::ends_at`] holds.
    pub fn at(&self) -> Option<&str> {
        match self {
            EndTime::At(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub name: String,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Jupyter answers: the full login URL, token included; `gpus`: the
    /// GPUs its container has, by name, when the data names them.
    Ready { url: String, gpus: Vec<String> },
    /// The instance's setup failed, at `step` when it said.
    Failed { step: Option<String>, reason: String },
    /// Listed, but no signal yet.
    Waiting,
}

impl State {
    pub fn label(&self) -> &'static str {
        match self {
            State::Ready { .. } => "ready",
            State::Failed { .. } => "failed",
            State::Waiting => "waiting",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub ready: usize,
    pub failed: usize,
    pub waiting: usize,
}

impl Room {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for p in &self.participants {
            match p.state {
                State::Ready { .. } => c.ready += 1,
                State::Failed { .. } => c.failed += 1,
                State::Waiting => c.waiting += 1,
            }
        }
        c
    }

    /// Every participant is ready (and there is at least one).
    pub fn all_ready(&self) -> bool {
        !self.participants.is_empty() && self.participants.iter().all(|p| matches!(p.state, State::Ready { .. }))
    }
}

/// Why the input cannot be read; the caller prefixes the input's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// What the input may be, for messages.
pub const EXPECTED: &str = "expected the JSON that `aliyun ros GetStack` prints (an object with \"Outputs\"), \
its Outputs list, the Room output's value (an object mapping each participant to its signal data) \
or the wait condition's Data (that object as a JSON string)";

fn err<T>(message: impl Into<String>) -> Result<T, InputError> {
    Err(InputError(message.into()))
}

/// Reads the input text.
pub fn parse(text: &str) -> Result<Room, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return err(format!("empty; {EXPECTED}"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| InputError(format!("not JSON ({e}); {EXPECTED}")))?;
    from_value(value, 0)
}

fn from_value(value: Value, depth: usize) -> Result<Room, InputError> {
    match value {
        Value::Object(map) if is_get_stack(&map) => from_get_stack(map),
        Value::Object(map) if is_output_entry(&map) => from_outputs(&[Value::Object(map)], None, None),
        Value::Object(map) if is_error_answer(&map) => err(format!(
            "an error answer, not a stack: {}: {}; {EXPECTED}",
            string_field(&map, "Code").unwrap_or_default(),
            string_field(&map, "Message").unwrap_or_default()
        )),
        Value::Object(map) => bare_room(map),
        Value::Array(items) if !items.is_empty() && items.iter().all(is_output_value) => {
            from_outputs(&items, None, None)
        }
        Value::String(s) if depth < MAX_NESTING => match serde_json::from_str::<Value>(&s) {
            Ok(inner) => from_value(inner, depth + 1),
            Err(e) => err(format!("a string that is not JSON ({e}); {EXPECTED}")),
        },
        other => err(format!("{}; {EXPECTED}", describe(&other))),
    }
}

fn is_get_stack(map: &Map<String, Value>) -> bool {
    map.contains_key("Outputs") || (map.contains_key("StackId") && map.contains_key("Status"))
}

/// What the API answers instead of a stack (`{"RequestId", "Code", "Message"}`).
fn is_error_answer(map: &Map<String, Value>) -> bool {
    map.contains_key("Code") && map.contains_key("Message")
}

/// An object given alone: the Room output's value or the wait condition's
/// Data. Refused when it has entries and none of them reads as signal data:
/// then it is some other JSON, not a room.
fn bare_room(map: Map<String, Value>) -> Result<Room, InputError> {
    let entries = map.len();
    let mut recognised = 0;
    let signals = map
        .into_iter()
        .map(|(name, data)| {
            let state = read_signal(data, 0).inspect(|_| recognised += 1).unwrap_or_else(failed_data);
            (name, state)
        })
        .collect();
    if entries > 0 && recognised == 0 {
        return err(format!(
            "an object none of whose values is a participant's signal data ({{\"url\": ...}} or \
             {{\"error\": ..., \"step\": ...}}); {EXPECTED}"
        ));
    }
    Ok(assemble(None, signals, None))
}

fn is_output_entry(map: &Map<String, Value>) -> bool {
    matches!(map.get("OutputKey"), Some(Value::String(_)))
}

fn is_output_value(value: &Value) -> bool {
    matches!(value, Value::Object(map) if is_output_entry(map))
}

/// "a number", "a list of 3", ... for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(a) if a.is_empty() => "an empty list".into(),
        Value::Array(_) => "a list that is not GetStack's Outputs".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn string_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

fn from_get_stack(map: Map<String, Value>) -> Result<Room, InputError> {
    let params = match map.get("Parameters") {
        Some(Value::Array(params)) => Some(params.as_slice()),
        _ => None,
    };
    let mut stack = StackInfo {
        name: string_field(&map, "StackName"),
        status: string_field(&map, "Status"),
        status_reason: string_field(&map, "StatusReason"),
        room_missing: false,
        end_time: params.map_or(EndTime::Unknown, end_time),
    };
    let outputs: &[Value] = match map.get("Outputs") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => &[],
        Some(other) => {
            return err(format!(
                "\"Outputs\" is {}: expected a list of {{\"OutputKey\", \"OutputValue\"}} objects",
                describe(other)
            ))
        }
    };
    // The room template's Participants parameter (names and commas), when the
    // Participants output is not there (yet).
    let parameter = params.and_then(|params| parameter(params, PARTICIPANTS_KEY));
    let room = from_outputs(outputs, parameter, Some(&mut stack))?;
    Ok(Room { stack: Some(stack), ..room })
}

/// A parameter's value from GetStack's `Parameters` list of
/// `{ParameterKey, ParameterValue}`.
fn parameter(params: &[Value], key: &str) -> Option<Value> {
    params.iter().find_map(|p| {
        let p = p.as_object()?;
        (p.get("ParameterKey")?.as_str()? == key).then(|| p.get("ParameterValue").cloned().unwrap_or(Value::Null))
    })
}

/// The end time the parameters give: the template's `EndTime` when set; no
/// end when it is empty, or when the stack's template has no such parameter
/// (made before it existed: its instances have no release time either).
fn end_time(params: &[Value]) -> EndTime {
    match parameter(params, END_TIME_KEY) {
        None | Some(Value::Null) => EndTime::NotSet,
        Some(Value::String(s)) if s.trim().is_empty() => EndTime::NotSet,
        Some(Value::String(s)) => EndTime::At(s.trim().to_string()),
        Some(other) => EndTime::At(other.to_string()),
    }
}

fn from_outputs(
    outputs: &[Value],
    participants_parameter: Option<Value>,
    stack: Option<&mut StackInfo>,
) -> Result<Room, InputError> {
    let mut room_value = None;
    let mut participants_value = None;
    let mut keys = Vec::new();
    for (i, entry) in outputs.iter().enumerate() {
        let Some(map) = entry.as_object().filter(|m| is_output_entry(m)) else {
            return err(format!(
                "Outputs[{i}] is {}: expected an object with \"OutputKey\" and \"OutputValue\"",
                describe(entry)
            ));
        };
        let key = map["OutputKey"].as_str().unwrap_or_default();
        let value = map.get("OutputValue").cloned().unwrap_or(Value::Null);
        match key {
            ROOM_OUTPUT => room_value = Some(value),
            PARTICIPANTS_KEY => participants_value = Some(value),
            _ => {}
        }
        keys.push(key.to_string());
    }
    let listed = match (participants_value, participants_parameter) {
        (Some(v), _) => Some(participants(v, "the Participants output")?),
        (None, Some(v)) => Some(participants(v, "the Participants parameter")?),
        (None, None) => None,
    };
    let signals = match room_value {
        Some(v) => signals(v, "the Room output", 0)?,
        None if listed.is_some() => {
            if let Some(stack) = stack {
                stack.room_missing = true;
            }
            Vec::new()
        }
        None => {
            let found = if keys.is_empty() { "no outputs".to_string() } else { format!("outputs {}", keys.join(", ")) };
            return err(format!(
                "no output named \"{ROOM_OUTPUT}\" and no Participants list (found {found}): expected the \
                 outputs of a room stack; a GetStack called with --OutputOption Disabled has none"
            ));
        }
    };
    Ok(assemble(listed, signals, None))
}

/// The participants' names from a JSON list, or from a string holding a JSON
/// list or comma-separated names; blanks dropped, duplicates kept once.
fn participants(value: Value, what: &str) -> Result<Vec<String>, InputError> {
    let names: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) => names.push(s),
                    Value::Number(n) => names.push(n.to_string()),
                    other => {
                        return err(format!(
                            "{what}[{i}] is {}: expected a participant's name (a string)",
                            describe(&other)
                        ))
                    }
                }
            }
            names
        }
        Value::String(s) if s.trim_start().starts_with('[') => match serde_json::from_str::<Value>(&s) {
            Ok(list @ Value::Array(_)) => return participants(list, what),
            _ => return err(format!("{what} starts with '[' but is not a JSON list of names")),
        },
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        other => {
            return err(format!("{what} is {}: expected a list of names or a comma-separated string", describe(&other)))
        }
    };
    let mut seen = std::collections::HashSet::new();
    Ok(names.into_iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty() && seen.insert(n.clone())).collect())
}

/// The signals of a Room value: participant -> state.
fn signals(value: Value, what: &str, depth: usize) -> Result<Vec<(String, State)>, InputError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => Ok(signals_from_map(map)),
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) if depth < MAX_NESTING => match serde_json::from_str::<Value>(&s) {
            Ok(inner) => signals(inner, what, depth + 1),
            Err(e) => err(format!(
                "{what} is a string that is not JSON ({e}): expected an object mapping each participant to \
                 its signal data"
            )),
        },
        other => err(format!(
            "{what} is {}: expected an object mapping each participant to its signal data",
            describe(&other)
        )),
    }
}

fn signals_from_map(map: Map<String, Value>) -> Vec<(String, State)> {
    map.into_iter().map(|(name, data)| (name, state(data))).collect()
}

/// One participant's signal data: `{"url": ...}` is ready, `{"error": ...,
/// "step": ...}` failed, nothing waiting; a string holding such an object is
/// read the same way, and a bare http(s) URL (a single-instance stack's
/// data) is ready. Anything else is reported as a failure that says what
/// arrived, so that one odd signal does not hide the rest of the room.
pub fn state(data: Value) -> State {
    read_signal(data, 0).unwrap_or_else(failed_data)
}

fn failed_data(reason: String) -> State {
    State::Failed { step: None, reason: jupyter_proto::redact::bound(&reason, MAX_REASON) }
}

/// The state the data says, or why it says none.
fn read_signal(data: Value, depth: usize) -> Result<State, String> {
    match data {
        Value::Null => Ok(State::Waiting),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                Ok(State::Waiting)
            } else if is_http_url(t) {
                Ok(State::Ready { url: t.to_string(), gpus: Vec::new() })
            } else if depth < MAX_NESTING && (t.starts_with('{') || t.starts_with('"')) {
                match serde_json::from_str::<Value>(t) {
                    Ok(inner) => read_signal(inner, depth + 1),
                    Err(_) => Err(format!("signal data that is not JSON: {t}")),
                }
            } else {
                Err(format!("unexpected signal data: {t}"))
            }
        }
        Value::Object(map) => {
            if let Some(error) = map.get("error").filter(|e| !e.is_null()) {
                let reason = match error {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let step = string_field(&map, "step").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                return Ok(State::Failed { step, reason: jupyter_proto::redact::bound(reason.trim(), MAX_REASON) });
            }
            match map.get("url") {
                Some(Value::String(url)) if is_http_url(url.trim()) => {
                    Ok(State::Ready { url: url.trim().to_string(), gpus: gpu_names(&map) })
                }
                Some(Value::String(url)) => Err(format!("\"url\" is not an http(s) URL: {url}")),
                Some(other) => Err(format!("\"url\" is not a string: {other}")),
                None => Err(format!("signal data with neither \"url\" nor \"error\": {}", Value::Object(map))),
            }
        }
        other => Err(format!("unexpected signal data: {other}")),
    }
}

/// The `"gpus"` of a ready participant's data (docs/ros.md#a-room): the
/// names that are strings, at most [`MAX_GPUS`]; anything else is no GPU.
fn gpu_names(map: &Map<String, Value>) -> Vec<String> {
    match map.get("gpus") {
        Some(Value::Array(names)) => {
            names.iter().filter_map(Value::as_str).take(MAX_GPUS).map(|n| n.trim().to_string()).collect()
        }
        _ => Vec::new(),
    }
}

/// `http://` or `https://` followed by a host: what a card may link and encode.
pub fn is_http_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return false;
    };
    !rest.is_empty() && !rest.starts_with('/') && !s.chars().any(char::is_whitespace)
}

/// The room in the order promised, one row per participant
/// (room/README.md, "Input"; docs/room.md, "Which signal a participant's row
/// shows"):
///
/// - One signal per id. ROS keeps one signal per id, a later one replacing
///   an earlier (`ALIYUN::ROS::WaitConditionHandle`); should an id appear
///   twice in the text all the same, the later one wins, as the JSON
///   parser keeps the last value of a repeated key. Ids that are equal once
///   surrounding blanks are dropped are one participant: the one spelled
///   without blanks wins (the room template's names have none).
/// - With a Participants list, the rows are its names, in its order, each
///   waiting until it has a signal. A signal under an id not in the list
///   belongs to a participant renamed in place or removed: it is not a row
///   and not counted, so a participant replaced by renaming is shown once,
///   under the name the stack has now ([`Room::unlisted`] names the others).
/// - Without a list, every id is a row, by name.
fn assemble(listed: Option<Vec<String>>, signals: Vec<(String, State)>, stack: Option<StackInfo>) -> Room {
    let mut by_name: BTreeMap<String, (State, bool)> = BTreeMap::new();
    for (raw, state) in signals {
        let name = raw.trim();
        let exact = name == raw;
        let keep = match by_name.get(name) {
            None => true,
            Some((_, theirs_exact)) => exact && !theirs_exact,
        };
        if keep {
            by_name.insert(name.to_string(), (state, exact));
        }
    }
    let listed = listed.unwrap_or_default();
    if listed.is_empty() {
        let participants = by_name.into_iter().map(|(name, (state, _))| Participant { name, state }).collect();
        return Room { participants, unlisted: Vec::new(), stack };
    }
    let participants = listed
        .into_iter()
        .map(|name| {
            let state = by_name.remove(&name).map_or(State::Waiting, |(state, _)| state);
            Participant { name, state }
        })
        .collect();
    Room { participants, unlisted: by_name.into_keys().collect(), stack }
}

#[cfg(test)]
mod tests;
