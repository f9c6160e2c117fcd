//! A room in the cloud: its stacks found by their tag, each stack's
//! participants and reports (GetStack, read by [`crate::input`]), and each
//! participant's public address, made into one [`Snapshot`].
//!
//! The calls and the answers' shapes are those ROS and ECS document
//! (docs/room.md, "The aliyun calls"):
//!
//! - `ros ListStacks --RegionId R --Tag.1.Key jupyter-room --Tag.1.Value ROOM
//!   --PageSize 50 --PageNumber N`: `{"Stacks": [{"StackId", "StackName",
//!   "Status", "StatusReason", "CreateTime", ...}], "TotalCount", ...}`;
//! - `ros GetStack --RegionId R --StackId ID`: `{"StackId", "StackName",
//!   "Status", "StatusReason", "Parameters": [{"ParameterKey",
//!   "ParameterValue"}], "Outputs": [{"OutputKey", "OutputValue"}], ...}`;
//! - when the stack's `PublicIps` output is not there yet,
//!   `ros ListStackResources --RegionId R --StackId ID`: `{"Resources":
//!   [{"LogicalResourceId", "ResourceType", "Status", ...}]}`; the
//!   template's counted `JupyterInstance` (an `ALIYUN::ECS::InstanceGroup`
//!   of one instance) becomes `JupyterInstance[0]`, `JupyterInstance[1]`,
//!   ..., copy `i` being the participant at `ALIYUN::Index` `i` of the
//!   Participants list; then, for each copy ROS has created,
//!   `ros GetStackResource --RegionId R --StackId ID --LogicalResourceId
//!   'JupyterInstance[i]' --ShowResourceAttributes true`: `{"LogicalResourceId",
//!   "ResourceType", "Status", "ResourceAttributes": [{"Key": "PublicIps",
//!   "Value": ["1.2.3.4"]}, ...], ...}`, the group's `PublicIps` attribute
//!   being the copy's address.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::aliyun::{Aliyun, Call, CloudError};
use crate::input::{self, Participant, Room};
use crate::snapshot::{Seat, Snapshot, StackSeen};
use crate::up::TAG_KEY;

/// The most aliyun calls this runs at once. ROS allows 50 concurrent stack
/// operations per account ("Limits", <https://www.alibabacloud.com/help/doc-detail/28854.htm>);
/// `up` stays at a tenth of that, leaving the account room for anything
/// else under way, and reads are bounded alike.
pub const MAX_PARALLEL: usize = 5;

/// ListStacks' largest page (its PageSize: at most 50).
const PAGE_SIZE: usize = 50;

/// The resource of the template that is each participant's instance.
pub const INSTANCE_RESOURCE: &str = "JupyterInstance";

/// The port each participant's front listens on (the template's
/// `JupyterIngress`, the agent's `[container] publish`).
pub const FRONT_PORT: u16 = 8888;

/// A stack as ListStacks shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub create_time: String,
}

impl Listed {
    /// Deleted stacks may still be listed for a while; they are no longer the room's.
    pub fn is_gone(&self) -> bool {
        self.status == "DELETE_COMPLETE"
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// One page of ListStacks: its stacks and TotalCount.
pub fn parse_list_stacks(answer: &Value) -> Result<(Vec<Listed>, usize), String> {
    let stacks = match answer.get("Stacks") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => &Vec::new(),
        Some(_) => return Err("\"Stacks\" is not a list".into()),
    };
    let mut out = Vec::new();
    for s in stacks {
        let (Some(id), Some(name)) = (str_field(s, "StackId"), str_field(s, "StackName")) else {
            return Err("a stack without StackId or StackName".into());
        };
        out.push(Listed {
            id,
            name,
            status: str_field(s, "Status").unwrap_or_default(),
            status_reason: str_field(s, "StatusReason").filter(|r| !r.is_empty()),
            create_time: str_field(s, "CreateTime").unwrap_or_default(),
        });
    }
    let total = answer.get("TotalCount").and_then(Value::as_u64).map_or(out.len(), |t| t as usize);
    Ok((out, total))
}

/// Every stack tagged `jupyter-room=<room>` that is not deleted, in the
/// room's order: by the number after the room's name (`lab-2` before
/// `lab-10`), then by creation time.
pub fn list_stacks(aliyun: &Aliyun, region: &str, room: &str) -> Result<Vec<Listed>, CloudError> {
    let mut all = Vec::new();
    for page in 1.. {
        let call = Call::new("ros", "ListStacks")
            .param("RegionId", region)
            .param("Tag.1.Key", TAG_KEY)
            .param("Tag.1.Value", room)
            .param("PageSize", PAGE_SIZE.to_string())
            .param("PageNumber", page.to_string());
        let answer = aliyun.run(&call)?;
        let (stacks, total) = parse_list_stacks(&answer).map_err(|e| CloudError(format!("{}: {e}", call.label())))?;
        let got = stacks.len();
        all.extend(stacks);
        if got == 0 || all.len() >= total || page >= 100 {
            break;
        }
    }
    all.retain(|s| !s.is_gone());
    all.sort_by_key(|s| (order_in_room(room, &s.name), s.create_time.clone()));
    Ok(all)
}

fn order_in_room(room: &str, stack: &str) -> u64 {
    stack.strip_prefix(room).and_then(|r| r.strip_prefix('-')).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

pub fn get_stack(aliyun: &Aliyun, region: &str, id: &str) -> Result<Value, CloudError> {
    aliyun.run(&Call::new("ros", "GetStack").param("RegionId", region).param("StackId", id))
}

/// A parameter's value in a GetStack answer.
pub fn parameter(stack: &Value, key: &str) -> Option<String> {
    stack
        .get("Parameters")?
        .as_array()?
        .iter()
        .find_map(|p| {
            (p.get("ParameterKey")?.as_str()? == key).then(|| p.get("ParameterValue").and_then(Value::as_str))?
        })
        .map(str::to_string)
}

/// An output's value in a GetStack answer.
fn output<'a>(stack: &'a Value, key: &str) -> Option<&'a Value> {
    stack
        .get("Outputs")?
        .as_array()?
        .iter()
        .find(|o| o.get("OutputKey").and_then(Value::as_str) == Some(key))?
        .get("OutputValue")
}

/// The `PublicIps` output: a list of addresses in the participants' order
/// (also when ROS gives it as a string holding that JSON list).
pub fn public_ips_output(stack: &Value) -> Option<Vec<String>> {
    let value = output(stack, "PublicIps")?;
    let list = match value {
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        other => other.clone(),
    };
    list.as_array()?.iter().map(|ip| ip.as_str().map(str::to_string)).collect()
}

/// ListStackResources: each copy of [`INSTANCE_RESOURCE`] (`JupyterInstance[3]`
/// -> 3) with its `Status`. Its `PhysicalResourceId` is not read: for an
/// `ALIYUN::ECS::InstanceGroup` it is not documented to be an instance id.
pub fn parse_instance_copies(answer: &Value) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for r in answer.get("Resources").and_then(Value::as_array).into_iter().flatten() {
        let Some(logical) = r.get("LogicalResourceId").and_then(Value::as_str) else { continue };
        let Some(index) = logical
            .strip_prefix(INSTANCE_RESOURCE)
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        out.push((index, str_field(r, "Status").unwrap_or_default()));
    }
    out
}

/// Whether a copy in this status may have its instance (and so an
/// address): not before ROS has created it, nor while it is deleted. An
/// unknown or missing status is asked all the same.
pub fn copy_may_have_instance(status: &str) -> bool {
    !(status == "INIT_COMPLETE"
        || status == "CREATE_IN_PROGRESS"
        || status == "CREATE_FAILED"
        || status.starts_with("DELETE_"))
}

/// An attribute's value in a GetStackResource answer (`ShowResourceAttributes
/// true`): its `ResourceAttributes` list, each entry `{"Key": name, "Value":
/// value}`; an entry that is a map of the name to its value, and a map of
/// every name to its value, are read alike.
pub fn resource_attribute<'a>(answer: &'a Value, name: &str) -> Option<&'a Value> {
    match answer.get("ResourceAttributes")? {
        Value::Array(entries) => entries.iter().find_map(|e| {
            if e.get("Key").and_then(Value::as_str) == Some(name) {
                e.get("Value")
            } else {
                e.get(name)
            }
        }),
        Value::Object(map) => map.get(name),
        _ => None,
    }
}

/// The first address in an attribute's value: a list of addresses (the
/// group's `PublicIps`), that list as a JSON string, or one address (an
/// `ALIYUN::ECS::Instance`'s `PublicIp`). Empty is none.
pub fn first_address(value: &Value) -> Option<String> {
    match value {
        Value::Array(ips) => ips.iter().find_map(first_address),
        Value::String(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str::<Value>(s).ok().as_ref().and_then(first_address)
        }
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// A copy's public address from its GetStackResource answer: the
/// InstanceGroup's `PublicIps` (a group of one: its one address), else the
/// `PublicIp` of an `ALIYUN::ECS::Instance` (stacks made from the
/// templates before the group).
pub fn copy_address(answer: &Value) -> Option<String> {
    resource_attribute(answer, "PublicIps")
        .and_then(first_address)
        .or_else(|| resource_attribute(answer, "PublicIp").and_then(first_address))
}

/// The front of a participant whose instance has this address.
pub fn front(ip: &str, tls_mode: Option<&str>) -> String {
    let scheme = if tls_mode == Some("off") { "http" } else { "https" };
    if ip.contains(':') {
        format!("{scheme}://[{ip}]:{FRONT_PORT}")
    } else {
        format!("{scheme}://{ip}:{FRONT_PORT}")
    }
}

/// One stack looked at: what ROS says of it and its participants.
#[derive(Debug, Clone)]
pub struct StackLook {
    pub seen: StackSeen,
    /// The GetStack answer read as a room (its participants, its unlisted ids).
    pub room: Room,
    /// Each participant's front, in the room's order.
    pub fronts: Vec<Option<String>>,
    /// The GetStack answer itself (the certificate fingerprints the
    /// participants' setups reported are read from it: `fronts::fingerprints`).
    pub answer: Value,
    /// The stack's `TlsMode` parameter.
    tls: Option<String>,
    /// Whether the fronts came from the `PublicIps` output (else they are
    /// to be found through the stack's resources).
    from_output: bool,
}

/// GetStack of one stack, and the fronts its `PublicIps` output gives (all
/// none while the output is not there).
pub fn look(aliyun: &Aliyun, region: &str, listed: &Listed) -> Result<StackLook, CloudError> {
    let answer = get_stack(aliyun, region, &listed.id)?;
    let label = format!("aliyun ros GetStack (StackId {})", listed.id);
    let room = input::parse(&answer.to_string()).map_err(|e| CloudError(format!("{label}: {e}")))?;
    let tls = parameter(&answer, "TlsMode");
    let n = room.participants.len();
    let output = public_ips_output(&answer).filter(|ips| ips.len() == n);
    let from_output = output.is_some();
    let fronts = match output {
        Some(ips) => ips.into_iter().map(|ip| Some(ip).filter(|ip| !ip.is_empty())).collect(),
        None => vec![None; n],
    };
    let fronts = fronts.into_iter().map(|ip: Option<String>| ip.map(|ip| front(&ip, tls.as_deref()))).collect();
    let seen = StackSeen {
        name: str_field(&answer, "StackName").unwrap_or_else(|| listed.name.clone()),
        id: listed.id.clone(),
        status: str_field(&answer, "Status").unwrap_or_else(|| listed.status.clone()),
        status_reason: str_field(&answer, "StatusReason").filter(|r| !r.is_empty()).or(listed.status_reason.clone()),
        ends_at: room.stack.as_ref().and_then(|st| st.end_time.at()).map(str::to_string),
    };
    Ok(StackLook { seen, room, fronts, tls, from_output, answer })
}

/// The fronts of the stacks whose `PublicIps` output is not there yet,
/// through their resources: ListStackResources of each such stack (which
/// copies of [`INSTANCE_RESOURCE`] exist, and their status), then
/// GetStackResource of each copy that may have its instance, reading the
/// copy's own `PublicIps` attribute. Every call of both rounds, over all
/// the stacks, runs at most [`MAX_PARALLEL`] at once.
pub fn fronts_from_resources(aliyun: &Aliyun, region: &str, looks: &mut [StackLook]) -> Result<(), CloudError> {
    let pending: Vec<usize> = (0..looks.len()).filter(|&i| !looks[i].from_output).collect();
    let listed = parallel(&pending, MAX_PARALLEL, |&i| {
        aliyun
            .run(&Call::new("ros", "ListStackResources").param("RegionId", region).param("StackId", &looks[i].seen.id))
    });
    // (look, copy index): one GetStackResource each.
    let mut copies: Vec<(usize, usize)> = Vec::new();
    for (&i, answer) in pending.iter().zip(listed) {
        let n = looks[i].fronts.len();
        copies.extend(
            parse_instance_copies(&answer?)
                .into_iter()
                .filter(|(index, status)| *index < n && copy_may_have_instance(status))
                .map(|(index, _)| (i, index)),
        );
    }
    let found = parallel(&copies, MAX_PARALLEL, |&(i, index)| {
        aliyun
            .run(
                &Call::new("ros", "GetStackResource")
                    .param("RegionId", region)
                    .param("StackId", &looks[i].seen.id)
                    .param("LogicalResourceId", format!("{INSTANCE_RESOURCE}[{index}]"))
                    .param("ShowResourceAttributes", "true"),
            )
            .map(|answer| copy_address(&answer))
    });
    for (&(i, index), ip) in copies.iter().zip(found) {
        let look = &mut looks[i];
        look.fronts[index] = ip?.map(|ip| front(&ip, look.tls.as_deref()));
    }
    Ok(())
}

/// `f` over `items`, at most `bound` at once, the results in the items' order.
pub fn parallel<T: Sync, R: Send>(items: &[T], bound: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> = items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..bound.max(1).min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *results[i].lock().unwrap() = Some(r);
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap().expect("every item ran")).collect()
}

/// The room now: its stacks and every participant of every stack.
pub fn snapshot(aliyun: &Aliyun, region: &str, room: &str) -> Result<Snapshot, CloudError> {
    Ok(snapshot_looks(aliyun, region, room)?.0)
}

/// The snapshot, and each stack's look (its unlisted ids, for notes).
pub fn snapshot_looks(aliyun: &Aliyun, region: &str, room: &str) -> Result<(Snapshot, Vec<StackLook>), CloudError> {
    let listed = list_stacks(aliyun, region, room)?;
    let mut looks: Vec<StackLook> =
        parallel(&listed, MAX_PARALLEL, |l| look(aliyun, region, l)).into_iter().collect::<Result<_, _>>()?;
    fronts_from_resources(aliyun, region, &mut looks)?;
    let mut snapshot = Snapshot { room: room.to_string(), stacks: Vec::new(), seats: Vec::new() };
    for look in &looks {
        snapshot.stacks.push(look.seen.clone());
        for (p, front) in look.room.participants.iter().zip(&look.fronts) {
            snapshot.seats.push(Seat {
                name: p.name.clone(),
                stack: look.seen.name.clone(),
                front: front.clone(),
                state: p.state.clone(),
            });
        }
    }
    Ok((snapshot, looks))
}

/// The snapshot as one room for `show` and `cards`.
pub fn as_room(snapshot: &Snapshot, looks: &[StackLook]) -> Room {
    Room {
        participants: snapshot
            .seats
            .iter()
            .map(|s| Participant { name: s.name.clone(), state: s.state.clone() })
            .collect(),
        unlisted: looks.iter().flat_map(|l| l.room.unlisted.iter().cloned()).collect(),
        stack: None,
    }
}

/// What the organiser should know of the stacks themselves.
pub fn notes(snapshot: &Snapshot) -> Vec<String> {
    use crate::text::{one_line, scrub};
    let mut notes = Vec::new();
    if snapshot.stacks.is_empty() {
        notes.push(format!(
            "no stack is tagged {TAG_KEY}={} in this region: create the room with `jupyter-room up`",
            snapshot.room
        ));
    }
    for s in &snapshot.stacks {
        let reason = s.status_reason.as_deref().map(|r| one_line(&scrub(r))).unwrap_or_default();
        if s.status.ends_with("_IN_PROGRESS") {
            notes.push(format!("{} is still {}: who has not signalled yet is waiting", s.name, s.status));
        } else if s.status.ends_with("_FAILED") || s.status.contains("ROLLBACK") {
            notes.push(format!("{} is {}: {reason}", s.name, s.status));
        }
    }
    notes
}

/// Starts deleting a stack (DeleteStack returns at once; ROS deletes it in
/// the background).
pub fn delete_stack(aliyun: &Aliyun, region: &str, id: &str) -> Result<(), CloudError> {
    aliyun.run(&Call::new("ros", "DeleteStack").param("RegionId", region).param("StackId", id)).map(|_| ())
}

#[cfg(test)]
mod tests;
