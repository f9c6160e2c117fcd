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
    for status in ["CREATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE", "CHECK_COMPLETE", "IMPORT_COMPLETE"] {
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
