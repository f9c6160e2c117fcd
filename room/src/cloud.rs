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
mod tests {
    use super::*;
    use serde_json::json;

    /// ListStacks' documented example answer, trimmed, with two of the room's stacks.
    #[test]
    fn list_stacks_answer() {
        let answer = json!({
            "PageNumber": 1, "PageSize": 50, "TotalCount": 2,
            "RequestId": "B288A0BE-D927-4888-B0F7-B35EF84B6E6F",
            "Stacks": [
                {"StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691****", "StackName": "lab-2", "Status": "CREATE_IN_PROGRESS",
                 "StatusReason": "Stack CREATE started", "CreateTime": "2026-12-07T10:00:01", "RegionId": "cn-hangzhou",
                 "Tags": [{"Key": "jupyter-room", "Value": "lab"}]},
                {"StackId": "5b7d0962-4c1f-5a6f-c5db-b25cf702****", "StackName": "lab-1", "Status": "CREATE_COMPLETE",
                 "StatusReason": "", "CreateTime": "2026-12-07T10:00:00", "RegionId": "cn-hangzhou"}
            ]
        });
        let (stacks, total) = parse_list_stacks(&answer).unwrap();
        assert_eq!(total, 2);
        assert_eq!(stacks[0].name, "lab-2");
        assert_eq!(stacks[0].status_reason.as_deref(), Some("Stack CREATE started"));
        assert_eq!(stacks[1].status_reason, None, "an empty reason is none");
        assert_eq!(parse_list_stacks(&json!({"TotalCount": 0})).unwrap().0, []);
        assert!(parse_list_stacks(&json!({"Stacks": [{"Status": "x"}]})).is_err());
        assert_eq!(order_in_room("lab", "lab-10"), 10);
        assert_eq!(order_in_room("lab", "other"), u64::MAX);
    }

    #[test]
    fn get_stack_parameters_and_public_ips() {
        let answer = json!({
            "StackId": "s-1", "StackName": "lab-1", "Status": "CREATE_COMPLETE",
            "Parameters": [{"ParameterKey": "Participants", "ParameterValue": "alice,bob"},
                           {"ParameterKey": "TlsMode", "ParameterValue": "off"},
                           {"ParameterKey": "ALIYUN::StackName", "ParameterValue": "lab-1"}],
            "Outputs": [{"OutputKey": "PublicIps", "OutputValue": ["47.1.2.3", "47.1.2.4"], "Description": "..."}]
        });
        assert_eq!(parameter(&answer, "TlsMode").as_deref(), Some("off"));
        assert_eq!(parameter(&answer, "ZoneId"), None);
        assert_eq!(public_ips_output(&answer).unwrap(), ["47.1.2.3", "47.1.2.4"]);
        let as_string = json!({"Outputs": [{"OutputKey": "PublicIps", "OutputValue": "[\"47.1.2.3\"]"}]});
        assert_eq!(public_ips_output(&as_string).unwrap(), ["47.1.2.3"]);
        assert_eq!(front("47.1.2.3", Some("off")), "http://47.1.2.3:8888");
        assert_eq!(front("47.1.2.3", Some("acme")), "https://47.1.2.3:8888");
        assert_eq!(front("47.1.2.3", None), "https://47.1.2.3:8888");
    }

    /// ListStackResources' documented shape; a counted resource's copies
    /// are `Name[index]` (ROS FAQ on ALIYUN::Index and Count); each copy of
    /// the room's instance is an InstanceGroup, whose PhysicalResourceId is
    /// not an instance id and is not read.
    #[test]
    fn list_stack_resources_answer() {
        let answer = json!({
            "RequestId": "r",
            "Resources": [
                {"LogicalResourceId": "Vpc", "PhysicalResourceId": "vpc-1", "ResourceType": "ALIYUN::ECS::VPC", "Status": "CREATE_COMPLETE"},
                {"LogicalResourceId": "JupyterInstance[1]", "PhysicalResourceId": "d04af923-e6b7-4272-aeaa-47ec9777****",
                 "ResourceType": "ALIYUN::ECS::InstanceGroup", "Status": "CREATE_COMPLETE"},
                {"LogicalResourceId": "JupyterInstance[0]", "PhysicalResourceId": "e15bf034-f7c8-5383-bfbb-58fd0888****",
                 "ResourceType": "ALIYUN::ECS::InstanceGroup", "Status": "CREATE_COMPLETE"},
                {"LogicalResourceId": "JupyterInstance[2]", "PhysicalResourceId": "", "ResourceType": "ALIYUN::ECS::InstanceGroup",
                 "Status": "CREATE_IN_PROGRESS"},
                {"LogicalResourceId": "JupyterInstance[3]", "ResourceType": "ALIYUN::ECS::InstanceGroup"},
                {"LogicalResourceId": "JupyterInstanceX[4]", "ResourceType": "ALIYUN::ECS::InstanceGroup", "Status": "CREATE_COMPLETE"},
                {"LogicalResourceId": "JupyterAccessKey[0]", "PhysicalResourceId": "LTAI", "ResourceType": "ALIYUN::RAM::AccessKey"}
            ]
        });
        let copies = parse_instance_copies(&answer);
        assert_eq!(
            copies,
            [
                (1, "CREATE_COMPLETE".to_string()),
                (0, "CREATE_COMPLETE".to_string()),
                (2, "CREATE_IN_PROGRESS".to_string()),
                (3, String::new())
            ]
        );
        let asked: Vec<usize> = copies.iter().filter(|(_, s)| copy_may_have_instance(s)).map(|(i, _)| *i).collect();
        assert_eq!(asked, [1, 0, 3], "not the copy ROS is still creating; a copy without status is asked");
        for status in ["INIT_COMPLETE", "CREATE_FAILED", "DELETE_IN_PROGRESS", "DELETE_COMPLETE"] {
            assert!(!copy_may_have_instance(status), "{status}");
        }
        for status in ["CREATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE", "CHECK_COMPLETE", "IMPORT_COMPLETE"]
        {
            assert!(copy_may_have_instance(status), "{status}");
        }
    }

    /// GetStackResource with ShowResourceAttributes: the documented answer
    /// (its example's fields), with an InstanceGroup's attributes in the
    /// `ResourceAttributes` list.
    #[test]
    fn get_stack_resource_answer() {
        let answer = json!({
            "Status": "CREATE_COMPLETE", "Description": "", "RequestId": "B288A0BE-D927-4888-B0F7-B35EF84B6E6",
            "StatusReason": "state changed", "PhysicalResourceId": "d04af923-e6b7-4272-aeaa-47ec9777****",
            "CreateTime": "2026-12-07T10:00:05", "UpdateTime": "2026-12-07T10:01:29", "Metadata": {},
            "ResourceType": "ALIYUN::ECS::InstanceGroup", "LogicalResourceId": "JupyterInstance[1]",
            "StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691****", "StackName": "lab-1",
            "ResourceAttributes": [
                {"Key": "InstanceIds", "Value": ["i-bp1dyf5aeyu5xj2d****"]},
                {"Key": "PrivateIps", "Value": ["192.168.0.10"]},
                {"Key": "PublicIps", "Value": ["47.1.2.3"]},
                {"Key": "HostNames", "Value": ["jupyter-bob"]}
            ]
        });
        assert_eq!(resource_attribute(&answer, "InstanceIds"), Some(&json!(["i-bp1dyf5aeyu5xj2d****"])));
        assert_eq!(copy_address(&answer).as_deref(), Some("47.1.2.3"), "PublicIps, not PrivateIps");

        let with =
            |attributes: Value| json!({"ResourceType": "ALIYUN::ECS::InstanceGroup", "ResourceAttributes": attributes});
        // A list given as its JSON text, as ROS gives some list outputs.
        assert_eq!(
            copy_address(&with(json!([{"Key": "PublicIps", "Value": "[\"47.1.2.4\"]"}]))).as_deref(),
            Some("47.1.2.4")
        );
        // Entries that map the name to the value, and one map of them all.
        assert_eq!(copy_address(&with(json!([{"PublicIps": ["47.1.2.5"]}]))).as_deref(), Some("47.1.2.5"));
        assert_eq!(copy_address(&with(json!({"PublicIps": ["47.1.2.6"]}))).as_deref(), Some("47.1.2.6"));
        // An instance without a public address yet, and attributes not shown.
        assert_eq!(copy_address(&with(json!([{"Key": "PublicIps", "Value": []}]))), None);
        assert_eq!(copy_address(&with(json!([{"Key": "PublicIps", "Value": [""]}]))), None);
        assert_eq!(copy_address(&with(json!([{"Key": "PublicIps", "Value": null}]))), None);
        assert_eq!(copy_address(&json!({"ResourceType": "ALIYUN::ECS::InstanceGroup"})), None);
        // A copy of a stack made before the group: an ALIYUN::ECS::Instance's PublicIp.
        let instance = json!({"ResourceType": "ALIYUN::ECS::Instance",
            "ResourceAttributes": [{"Key": "InstanceId", "Value": "i-1"}, {"Key": "PublicIp", "Value": "47.1.2.7"}]});
        assert_eq!(copy_address(&instance).as_deref(), Some("47.1.2.7"));
    }

    /// A room of two stacks, one complete (addresses from its PublicIps
    /// output, TLS on) and one building (addresses from its instances,
    /// TLS off, one instance without an address yet), from canned answers.
    #[test]
    fn a_snapshot_merges_the_stacks_in_the_rooms_order() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Answers from files named by the API, the StackId and the
        // LogicalResourceId; every call logged.
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> {dir}/calls\napi=\"$2\"; shift 2; id=\"\"; res=\"\"\n\
             while [ $# -gt 0 ]; do case \"$1\" in --StackId) id=\"$2\";; --LogicalResourceId) res=\"$2\";; esac; shift 2; done\n\
             cat \"{dir}/$api$id$res.json\"\n",
            dir = d.display()
        );
        std::fs::write(d.join("aliyun"), script).unwrap();
        std::fs::set_permissions(d.join("aliyun"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let write = |name: &str, v: Value| std::fs::write(d.join(format!("{name}.json")), v.to_string()).unwrap();
        write(
            "ListStacks",
            json!({"TotalCount": 3, "Stacks": [
            {"StackId": "s-2", "StackName": "lab-2", "Status": "CREATE_IN_PROGRESS"},
            {"StackId": "s-0", "StackName": "lab-0", "Status": "DELETE_COMPLETE"},
            {"StackId": "s-1", "StackName": "lab-1", "Status": "CREATE_COMPLETE"}]}),
        );
        write(
            "GetStacks-1",
            json!({"StackId": "s-1", "StackName": "lab-1", "Status": "CREATE_COMPLETE",
            "Parameters": [{"ParameterKey": "Participants", "ParameterValue": "alice,bob"},
                           {"ParameterKey": "TlsMode", "ParameterValue": "acme"}],
            "Outputs": [{"OutputKey": "Room", "OutputValue": "{\"alice\": \"{\\\"url\\\": \\\"https://47.0.0.1:8888/?token=t1\\\"}\"}"},
                        {"OutputKey": "Participants", "OutputValue": ["alice", "bob"]},
                        {"OutputKey": "PublicIps", "OutputValue": ["47.0.0.1", "47.0.0.2"]}]}),
        );
        write(
            "GetStacks-2",
            json!({"StackId": "s-2", "StackName": "lab-2", "Status": "CREATE_IN_PROGRESS",
            "Parameters": [{"ParameterKey": "Participants", "ParameterValue": "carol,dave"},
                           {"ParameterKey": "TlsMode", "ParameterValue": "off"}]}),
        );
        write(
            "ListStackResourcess-2",
            json!({"Resources": [
            {"LogicalResourceId": "JupyterInstance[1]", "PhysicalResourceId": "g-dave", "ResourceType": "ALIYUN::ECS::InstanceGroup",
             "Status": "CREATE_COMPLETE"},
            {"LogicalResourceId": "JupyterInstance[0]", "PhysicalResourceId": "g-carol", "ResourceType": "ALIYUN::ECS::InstanceGroup",
             "Status": "CREATE_COMPLETE"},
            {"LogicalResourceId": "JupyterInstance[2]", "PhysicalResourceId": "", "ResourceType": "ALIYUN::ECS::InstanceGroup",
             "Status": "CREATE_IN_PROGRESS"}]}),
        );
        write(
            "GetStackResources-2JupyterInstance[0]",
            json!({"LogicalResourceId": "JupyterInstance[0]", "ResourceType": "ALIYUN::ECS::InstanceGroup", "Status": "CREATE_COMPLETE",
            "ResourceAttributes": [{"Key": "InstanceIds", "Value": ["i-carol"]}, {"Key": "PublicIps", "Value": ["47.0.0.3"]}]}),
        );
        write(
            "GetStackResources-2JupyterInstance[1]",
            json!({"LogicalResourceId": "JupyterInstance[1]", "ResourceType": "ALIYUN::ECS::InstanceGroup", "Status": "CREATE_COMPLETE",
            "ResourceAttributes": [{"Key": "InstanceIds", "Value": ["i-dave"]}, {"Key": "PublicIps", "Value": []}]}),
        );

        let aliyun = Aliyun::new(Some(d.join("aliyun")));
        let snapshot = snapshot(&aliyun, "cn-hangzhou", "lab").unwrap();
        assert_eq!(snapshot.stacks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["lab-1", "lab-2"]);
        let seats: Vec<(&str, &str, Option<&str>, &str)> = snapshot
            .seats
            .iter()
            .map(|s| (s.name.as_str(), s.stack.as_str(), s.front.as_deref(), s.state.label()))
            .collect();
        assert_eq!(
            seats,
            [
                ("alice", "lab-1", Some("https://47.0.0.1:8888"), "ready"),
                ("bob", "lab-1", Some("https://47.0.0.2:8888"), "waiting"),
                ("carol", "lab-2", Some("http://47.0.0.3:8888"), "waiting"),
                ("dave", "lab-2", None, "waiting"),
            ]
        );
        assert_eq!(snapshot.seats[0].token(), Some("t1"));
        let calls = std::fs::read_to_string(d.join("calls")).unwrap();
        let mut asked: Vec<&str> = calls.lines().filter(|c| c.starts_with("ros GetStackResource ")).collect();
        asked.sort();
        assert_eq!(
            asked,
            [
                "ros GetStackResource --RegionId cn-hangzhou --StackId s-2 --LogicalResourceId JupyterInstance[0] --ShowResourceAttributes true",
                "ros GetStackResource --RegionId cn-hangzhou --StackId s-2 --LogicalResourceId JupyterInstance[1] --ShowResourceAttributes true",
            ],
            "the complete stack's addresses come from its output; copy 2 is not there (and beyond the two participants)"
        );
        assert!(!calls.contains("DescribeInstances"), "{calls}");
        assert_eq!(notes(&snapshot), ["lab-2 is still CREATE_IN_PROGRESS: who has not signalled yet is waiting"]);
    }

    #[test]
    fn parallel_keeps_the_order_and_the_bound() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<usize> = (0..20).collect();
        let out = parallel(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
    }
}
