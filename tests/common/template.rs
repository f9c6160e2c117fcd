//! The ROS template checker behind the template tests: YAML access to
//! `userdata/template.yml`, `Fn::Sub` rendering, reference resolution
//! (`Ref`, `Fn::GetAtt`, `${...}`, `DependsOn`, parameter groups), required
//! properties per resource type from ROS's reference pages, and the bounds
//! of the user data once substituted. Reads files only: no cloud account,
//! Docker or network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

/// ROS's limit on an instance's `UserData` (docs/ros.md#user-data; the
/// reference pages of `ALIYUN::ECS::Instance` and `ALIYUN::ECS::InstanceGroup`:
/// "The user data can be up to 16 KB in size").
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// The type of the templates' instance: a group of one (`MaxAmount: 1`),
/// since only `ALIYUN::ECS::InstanceGroup` has `AutoReleaseTime`, which
/// `EndTime` sets (docs/room.md#the-end-of-the-workshop).
pub const INSTANCE: &str = "ALIYUN::ECS::InstanceGroup";

/// https://www.alibabacloud.com/help/en/ros/user-guide/pseudo-parameters
const PSEUDO_PARAMETERS: &[&str] = &[
    "ALIYUN::StackName",
    "ALIYUN::StackId",
    "ALIYUN::Region",
    "ALIYUN::AccountId",
    "ALIYUN::TenantId",
    "ALIYUN::ResourceGroupId",
    "ALIYUN::NoValue",
    "ALIYUN::Index",
];

/// What the ROS reference says about a resource type the template uses.
struct ResourceType {
    name: &'static str,
    /// Required properties; an inner list with several names means "at least
    /// one of these".
    required: &'static [&'static [&'static str]],
    /// What `Fn::GetAtt` can read ("Return values").
    attributes: &'static [&'static str],
    /// The page under https://www.alibabacloud.com/help/en/ros/developer-reference/
    page: &'static str,
}

/// Every type the template uses, from its ROS reference page (the page's
/// "Properties" table, column "Required", and "Return values"; also kept in
/// the AlibabaCloudDocs/ros repository as `intl.en-US/.../<type>.md`). A
/// resource of a type missing here fails the test
/// `template::resources_have_their_required_properties`:
/// read its page and add it.
const RESOURCE_TYPES: &[ResourceType] = &[
    ResourceType {
        name: "ALIYUN::VPC::EIP",
        // Every property is optional (Bandwidth defaults to 5 Mbit/s).
        required: &[],
        attributes: &["EipAddress", "AllocationId", "OrderId", "Isp"],
        page: "aliyun-vpc-eip",
    },
    ResourceType {
        name: "ALIYUN::VPC::EIPAssociation",
        required: &[&["AllocationId"], &["InstanceId"]],
        attributes: &["EipAddress", "AllocationId"],
        page: "aliyun-vpc-eipassociation",
    },
    ResourceType {
        name: "ALIYUN::ECS::VPC",
        required: &[],
        attributes: &["VpcId", "VRouterId", "RouteTableId"],
        page: "aliyun-ecs-vpc",
    },
    ResourceType {
        name: "ALIYUN::ECS::VSwitch",
        required: &[&["VpcId"], &["ZoneId"], &["CidrBlock"]],
        attributes: &["VSwitchId"],
        page: "aliyun-ecs-vswitch",
    },
    ResourceType {
        name: "ALIYUN::ECS::SecurityGroup",
        required: &[],
        attributes: &["SecurityGroupId"],
        page: "aliyun-ecs-securitygroup",
    },
    ResourceType {
        name: "ALIYUN::ECS::SecurityGroupIngress",
        // "You must specify at least one of the SourceGroupId and SourceCidrIp
        // parameters."
        required: &[&["IpProtocol"], &["PortRange"], &["SourceCidrIp", "SourceGroupId"]],
        attributes: &[],
        page: "aliyun-ecs-securitygroupingress",
    },
    ResourceType {
        name: "ALIYUN::ECS::Instance",
        required: &[&["ImageId"], &["InstanceType"]],
        attributes: &[
            "InstanceId",
            "PrivateIp",
            "InnerIp",
            "PublicIp",
            "ZoneId",
            "HostName",
            "PrimaryNetworkInterfaceId",
        ],
        page: "aliyun-ecs-instance",
    },
    ResourceType {
        name: "ALIYUN::ECS::InstanceGroup",
        // ImageId is marked required on the page the AlibabaCloudDocs/ros
        // repository keeps; the templates set it either way.
        required: &[&["ImageId"], &["InstanceType"], &["MaxAmount"]],
        attributes: &[
            "InstanceIds",
            "PrivateIps",
            "InnerIps",
            "PublicIps",
            "HostNames",
            "OrderId",
            "ZoneIds",
            "Ipv6AddressIds",
            "Ipv6Addresses",
        ],
        page: "aliyun-ecs-instancegroup",
    },
    ResourceType {
        name: "ALIYUN::OSS::Bucket",
        required: &[&["BucketName"]],
        attributes: &["Name", "DomainName", "InternalDomainName"],
        page: "aliyun-oss-bucket",
    },
    ResourceType {
        name: "ALIYUN::RAM::User",
        required: &[&["UserName"]],
        attributes: &["UserName", "UserId", "CreateDate", "LastLoginDate"],
        page: "aliyun-ram-user",
    },
    ResourceType {
        name: "ALIYUN::RAM::AccessKey",
        required: &[&["UserName"]],
        attributes: &["AccessKeyId", "AccessKeySecret", "Status"],
        page: "aliyun-ram-accesskey",
    },
    ResourceType {
        name: "ALIYUN::RAM::AttachPolicyToUser",
        required: &[&["PolicyType"], &["UserName"], &["PolicyName"]],
        attributes: &[],
        page: "aliyun-ram-attachpolicytouser",
    },
    ResourceType {
        name: "ALIYUN::RAM::ManagedPolicy",
        // The page marks only PolicyName required; a policy without a
        // document grants nothing (RAM's CreatePolicy needs one).
        required: &[&["PolicyName"], &["PolicyDocument", "PolicyDocumentUnchecked"]],
        attributes: &["PolicyName"],
        page: "aliyun-ram-managedpolicy",
    },
    ResourceType {
        name: "ALIYUN::ROS::WaitConditionHandle",
        required: &[],
        attributes: &["CurlCli", "WindowsCurlCli", "PowerShellCurlCli", "URL", "Headers"],
        page: "aliyun-ros-waitconditionhandle",
    },
    ResourceType {
        name: "ALIYUN::ROS::WaitCondition",
        required: &[&["Handle"], &["Timeout"]],
        attributes: &["Data", "ErrorData", "JoinedErrorData", "LastData", "LastErrorData", "JoinedLastErrorData"],
        page: "aliyun-ros-waitcondition",
    },
];

fn resource_type(name: &str) -> Option<&'static ResourceType> {
    RESOURCE_TYPES.iter().find(|t| t.name == name)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn render_userdata() -> Command {
    Command::new(repo().join("scripts/render-userdata.py"))
}

// --- YAML access ---------------------------------------------------------------

/// `node[key]`, or None when absent (or when `node` is not a mapping).
pub fn get<'a>(node: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let value = &node[key];
    (!value.is_badvalue()).then_some(value)
}

/// The string-keyed entries of a mapping, in order.
pub fn entries(node: &Yaml) -> Vec<(&str, &Yaml)> {
    node.as_hash().map(|h| h.iter().filter_map(|(k, v)| Some((k.as_str()?, v))).collect()).unwrap_or_default()
}

/// A function call: a one-entry mapping whose key is `Ref` or `Fn::...`.
pub fn function(node: &Yaml) -> Option<(&str, &Yaml)> {
    let h = node.as_hash()?;
    if h.len() != 1 {
        return None;
    }
    let (k, v) = h.iter().next()?;
    let name = k.as_str()?;
    (name == "Ref" || name.starts_with("Fn::")).then_some((name, v))
}

/// `{Ref: X}` -> X.
pub fn as_ref(node: &Yaml) -> Option<&str> {
    match function(node)? {
        ("Ref", Yaml::String(name)) => Some(name),
        _ => None,
    }
}

/// `{Fn::GetAtt: [R, A]}` (or `R.A`) -> (R, A).
pub fn as_get_att(node: &Yaml) -> Option<(&str, &str)> {
    match function(node)? {
        ("Fn::GetAtt", Yaml::Array(a)) if a.len() == 2 => Some((a[0].as_str()?, a[1].as_str()?)),
        ("Fn::GetAtt", Yaml::String(s)) => s.split_once('.'),
        _ => None,
    }
}

/// An integer, written as one or as a string of digits.
/// `{Fn::Select: ['0', {Fn::GetAtt: [R, A]}]}` -> (R, A): the first element
/// of a list attribute (an instance group's `InstanceIds`, `PublicIps`).
pub fn as_first_of_get_att(node: &Yaml) -> Option<(&str, &str)> {
    match function(node)? {
        ("Fn::Select", Yaml::Array(a)) if a.len() == 2 && a[0].as_str() == Some("0") => as_get_att(&a[1]),
        _ => None,
    }
}

pub fn as_int(node: &Yaml) -> Option<i64> {
    match node {
        Yaml::Integer(i) => Some(*i),
        Yaml::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A DependsOn value: one name or a list of names.
pub fn depends_on(resource: &Yaml) -> Vec<&str> {
    match get(resource, "DependsOn") {
        Some(Yaml::String(s)) => vec![s.as_str()],
        Some(Yaml::Array(a)) => a.iter().filter_map(Yaml::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Walks an `Fn::Sub` string: `${!X}` becomes the literal `${X}`; for each
/// `${Name}` the closure gives the text that replaces it. Err on a `${`
/// without its `}`.
pub fn sub_render(s: &str, mut var: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        if let Some(literal) = after.strip_prefix('!') {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let end = after.find('}').ok_or_else(|| format!("unterminated ${{ at byte {}", s.len() - rest.len() + i))?;
        out.push_str(&var(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables an `Fn::Sub` string names (in order, repeats included).
pub fn sub_names(s: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    sub_render(s, |name| {
        names.push(name.to_string());
        Ok(String::new())
    })?;
    Ok(names)
}

/// A duration as jupyter-bootstrap's --timeout takes it: seconds, or a
/// number with s, m or h.
pub fn duration_secs(s: &str) -> Option<i64> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = digits.parse().ok()?;
    Some(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    })
}

// --- The template ----------------------------------------------------------------

pub struct Template {
    pub root: Yaml,
}

impl Template {
    /// The single-participant template, `userdata/template.yml`.
    pub fn load() -> Self {
        Template::load_file("userdata/template.yml")
    }

    /// A template of the repository, by its path.
    pub fn load_file(rel: &str) -> Self {
        let text = read(rel);
        let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel} does not parse: {e}"));
        assert_eq!(docs.len(), 1, "{rel} holds {} YAML documents, expected 1", docs.len());
        Template { root: docs.remove(0) }
    }

    pub fn section(&self, name: &str) -> Vec<(&str, &Yaml)> {
        entries(&self.root[name])
    }

    pub fn parameter(&self, name: &str) -> Option<&Yaml> {
        get(&self.root["Parameters"], name)
    }

    pub fn resource(&self, name: &str) -> Option<&Yaml> {
        get(&self.root["Resources"], name)
    }

    pub fn condition(&self, name: &str) -> Option<&Yaml> {
        get(&self.root["Conditions"], name)
    }

    pub fn type_of(&self, resource: &str) -> Option<&str> {
        self.resource(resource)?["Type"].as_str()
    }

    pub fn resources_of(&self, ty: &str) -> Vec<(&str, &Yaml)> {
        self.section("Resources").into_iter().filter(|(_, r)| r["Type"].as_str() == Some(ty)).collect()
    }

    /// The one resource of a type; panics when there are none or several.
    pub fn only(&self, ty: &str) -> (&str, &Yaml) {
        let all = self.resources_of(ty);
        assert_eq!(
            all.len(),
            1,
            "expected exactly one {ty}, found {:?}",
            all.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        all[0]
    }

    /// The instance's `UserData`: the `Fn::Sub` string and its variable map.
    pub fn user_data(&self) -> (&str, Vec<(&str, &Yaml)>) {
        let (name, instance) = self.only(INSTANCE);
        let user_data = get(&instance["Properties"], "UserData").unwrap_or_else(|| panic!("{name} has no UserData"));
        match function(user_data) {
            Some(("Fn::Sub", Yaml::Array(args))) if args.len() == 2 => {
                let text = args[0]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}.UserData: Fn::Sub's first argument is not a string"));
                assert!(args[1].is_hash(), "{name}.UserData: Fn::Sub's second argument is not a mapping");
                (text, entries(&args[1]))
            }
            _ => panic!("{name}.UserData is not the two-argument Fn::Sub [string, variables]: {user_data:?}"),
        }
    }

    /// The literal value of a UserData variable.
    pub fn user_data_literal(&self, var: &str) -> String {
        let (_, vars) = self.user_data();
        let value = vars.iter().find(|(k, _)| *k == var).unwrap_or_else(|| panic!("UserData maps no {var}")).1;
        value.as_str().unwrap_or_else(|| panic!("UserData's {var} is not a literal string: {value:?}")).to_string()
    }
}

// --- References ------------------------------------------------------------------

/// Collects every broken reference, with where it is.
struct References<'t> {
    t: &'t Template,
    errors: Vec<String>,
    /// Parameters something refers to.
    used: BTreeSet<String>,
}

impl<'t> References<'t> {
    /// `Ref` (and a `${Name}` outside a variable map): a parameter, a resource
    /// or a pseudo parameter.
    fn name(&mut self, name: &str, at: &str) {
        if self.t.parameter(name).is_some() {
            self.used.insert(name.to_string());
        } else if self.t.resource(name).is_none() && !PSEUDO_PARAMETERS.contains(&name) {
            self.errors.push(format!("{at}: `{name}` is neither a parameter, a resource nor a pseudo parameter"));
        }
    }

    /// `Fn::GetAtt` (and `${Resource.Attribute}`): a resource and one of its
    /// type's attributes.
    fn attribute(&mut self, resource: &str, attribute: &str, at: &str) {
        let Some(ty) = self.t.type_of(resource) else {
            self.errors.push(format!("{at}: GetAtt of `{resource}`, which is not a resource"));
            return;
        };
        match resource_type(ty) {
            Some(t) if !t.attributes.contains(&attribute) => {
                self.errors.push(format!("{at}: {ty} has no attribute `{attribute}` (it has {:?})", t.attributes))
            }
            // Unknown types are reported by resources_have_their_required_properties.
            _ => {}
        }
    }

    fn sub_string(&mut self, s: &str, vars: &BTreeSet<&str>, at: &str) {
        match sub_names(s) {
            Err(e) => self.errors.push(format!("{at}: Fn::Sub string: {e}")),
            Ok(names) => {
                for name in names {
                    if vars.contains(name.as_str()) {
                        continue;
                    }
                    match name.split_once('.') {
                        Some((resource, attribute)) => self.attribute(resource, attribute, at),
                        None => self.name(&name, at),
                    }
                }
            }
        }
    }

    fn walk(&mut self, node: &Yaml, at: &str) {
        if let Some((f, arg)) = function(node) {
            match f {
                "Ref" => {
                    match arg.as_str() {
                        Some(name) => self.name(name, at),
                        None => self.errors.push(format!("{at}: Ref of a non-string {arg:?}")),
                    }
                    return;
                }
                "Fn::GetAtt" => {
                    match as_get_att(node) {
                        Some((resource, attribute)) => self.attribute(resource, attribute, at),
                        None => self.errors.push(format!("{at}: Fn::GetAtt wants [resource, attribute], got {arg:?}")),
                    }
                    return;
                }
                // Fn::If [condition, if true, if false]: the first names a condition.
                "Fn::If" => {
                    match arg.as_vec().map(Vec::as_slice) {
                        Some([condition, yes, no]) => {
                            if condition.as_str().and_then(|c| self.t.condition(c)).is_none() {
                                self.errors.push(format!("{at}: Fn::If on {condition:?}, which is not a condition"));
                            }
                            self.walk(yes, &format!("{at}.Fn::If[1]"));
                            self.walk(no, &format!("{at}.Fn::If[2]"));
                        }
                        _ => self.errors.push(format!("{at}: Fn::If wants [condition, value, value], got {arg:?}")),
                    }
                    return;
                }
                "Fn::Sub" => {
                    match arg {
                        Yaml::String(s) => self.sub_string(s, &BTreeSet::new(), at),
                        Yaml::Array(a) if a.len() == 2 && a[0].as_str().is_some() && a[1].is_hash() => {
                            let vars = entries(&a[1]);
                            for (key, value) in &vars {
                                self.walk(value, &format!("{at}.Fn::Sub[1].{key}"));
                            }
                            let s = a[0].as_str().unwrap_or_default();
                            let keys: BTreeSet<&str> = vars.iter().map(|(k, _)| *k).collect();
                            self.sub_string(s, &keys, at);
                            // A variable the string never names is a mistake too.
                            let named: BTreeSet<String> = sub_names(s).unwrap_or_default().into_iter().collect();
                            for key in keys.iter().filter(|k| !named.contains(**k)) {
                                self.errors.push(format!("{at}: Fn::Sub variable `{key}` is not used in the string"));
                            }
                        }
                        _ => self
                            .errors
                            .push(format!("{at}: Fn::Sub wants a string or [string, variables], got {arg:?}")),
                    }
                    return;
                }
                _ => {}
            }
        }
        match node {
            Yaml::Hash(_) => {
                for (key, value) in entries(node) {
                    self.walk(value, &format!("{at}.{key}"));
                }
            }
            Yaml::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    self.walk(value, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }
}

// --- Checks ----------------------------------------------------------------------

impl Template {
    /// Every `Ref`, `Fn::GetAtt`, `${...}` of `Fn::Sub` and `DependsOn` that
    /// names nothing; every parameter never used, or not in exactly one of
    /// the console's parameter groups; each with where it is.
    pub fn broken_references(&self) -> Vec<String> {
        let mut refs = References { t: self, errors: Vec::new(), used: BTreeSet::new() };

        for (name, resource) in self.section("Resources") {
            if let Some(properties) = get(resource, "Properties") {
                refs.walk(properties, &format!("Resources.{name}.Properties"));
            }
            // A counted resource (docs/ros.md#counted-resources).
            if let Some(count) = get(resource, "Count") {
                refs.walk(count, &format!("Resources.{name}.Count"));
            }
            for dep in depends_on(resource) {
                if dep == name || self.resource(dep).is_none() {
                    refs.errors.push(format!("Resources.{name}.DependsOn: `{dep}` is not another resource"));
                    continue;
                }
                // A resource under a condition may not exist: ROS does not
                // document DependsOn on one whose condition is false, so only
                // a resource under the same condition may depend on it.
                let theirs = self.resource(dep).and_then(|r| get(r, "Condition")).and_then(Yaml::as_str);
                if theirs.is_some() && theirs != get(resource, "Condition").and_then(Yaml::as_str) {
                    refs.errors.push(format!(
                        "Resources.{name}.DependsOn: `{dep}` exists only under the condition {}",
                        theirs.unwrap_or_default()
                    ));
                }
            }
        }
        for section in ["Outputs", "Conditions"] {
            for (name, node) in self.section(section) {
                refs.walk(node, &format!("{section}.{name}"));
            }
        }
        // The `Condition` of a resource or an output names a condition
        // (https://www.alibabacloud.com/help/en/ros/user-guide/conditions).
        for section in ["Resources", "Outputs"] {
            for (name, node) in self.section(section) {
                if let Some(condition) = get(node, "Condition") {
                    match condition.as_str() {
                        Some(c) if self.condition(c).is_some() => {}
                        _ => refs.errors.push(format!("{section}.{name}.Condition: {condition:?} is not a condition")),
                    }
                }
            }
        }

        // The console's metadata: groups list defined parameters, each parameter
        // once; AssociationPropertyMetadata's ${X} name parameters.
        let parameters: Vec<&str> = self.section("Parameters").into_iter().map(|(n, _)| n).collect();
        let mut grouped: BTreeMap<&str, usize> = BTreeMap::new();
        let groups = &self.root["Metadata"]["ALIYUN::ROS::Interface"]["ParameterGroups"];
        for group in groups.as_vec().map(Vec::as_slice).unwrap_or_default() {
            for p in group["Parameters"].as_vec().map(Vec::as_slice).unwrap_or_default() {
                let p = p.as_str().unwrap_or_default();
                if !parameters.contains(&p) {
                    refs.errors.push(format!("Metadata ParameterGroups: `{p}` is not a parameter"));
                }
                *grouped.entry(p).or_default() += 1;
            }
        }
        for p in &parameters {
            match grouped.get(p) {
                Some(1) => {}
                n => refs.errors.push(format!("parameter `{p}` is in {} ParameterGroups, expected 1", n.unwrap_or(&0))),
            }
            for (key, value) in entries(&self.root["Parameters"][*p]["AssociationPropertyMetadata"]) {
                for name in value.as_str().map(sub_names).and_then(Result::ok).unwrap_or_default() {
                    if !parameters.contains(&name.as_str()) {
                        refs.errors.push(format!(
                            "Parameters.{p}.AssociationPropertyMetadata.{key}: `{name}` is not a parameter"
                        ));
                    }
                }
            }
        }

        for p in &parameters {
            if !refs.used.contains(*p) {
                refs.errors.push(format!("parameter `{p}` is never used"));
            }
        }
        refs.errors
    }

    /// Every property a resource lacks that its type's ROS reference page
    /// requires, and every resource of a type not in `RESOURCE_TYPES`.
    pub fn missing_properties(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, resource) in self.section("Resources") {
            let ty = resource["Type"].as_str().unwrap_or_default();
            let Some(known) = resource_type(ty) else {
                errors.push(format!(
                    "{name}: type `{ty}` is not in RESOURCE_TYPES; add its required properties and attributes from its ROS \
                     reference page"
                ));
                continue;
            };
            let properties = &resource["Properties"];
            for alternatives in known.required {
                let present = alternatives.iter().any(|p| get(properties, p).is_some_and(|v| !v.is_null()));
                if !present {
                    errors.push(format!(
                        "{name} ({ty}): missing required property {} \
                         (https://www.alibabacloud.com/help/en/ros/developer-reference/{})",
                        alternatives.join(" or "),
                        known.page
                    ));
                }
            }
        }
        errors
    }
}

// --- Helpers of the user data checks -----------------------------------------------

/// Markers (`@@Name@@`) of userdata.sh, as render-userdata finds them.
pub fn markers(script: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = script;
    while let Some(i) = rest.find("@@") {
        let after = &rest[i + 2..];
        let name_len = after.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(after.len());
        let name = &after[..name_len];
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) && after[name_len..].starts_with("@@") {
            found.insert(name.to_string());
            rest = &after[name_len + 2..];
        } else {
            rest = &rest[i + 1..];
        }
    }
    found
}

/// A CurlCli as ROS hands it out (docs/ros.md#curlcli), at its realistic length.
pub fn realistic_curl_cli() -> String {
    format!(
        "curl -i -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
         -H 'x-acs-region-id: ap-northeast-1' \
         http://100.100.100.110/waitcondition?stackname=stack-imagesearchhandson-taro\
         &stackid=4a6c9851-3b0f-4f5f-b4ca-a14bf6910a2c&resource=JupyterWaitConditionHandle\
         &expire=1893456000&signature={}",
        "Zm9vYmFyYmF6cXV4".repeat(3)
    )
}

/// What each UserData variable is at its longest, so that the substituted
/// script has a bound: a parameter's MaxLength (or its longest allowed
/// value), or the attribute's documented maximum.
pub fn longest_value(t: &Template, var: &str, value: &Yaml) -> Result<usize, String> {
    if let Some(literal) = value.as_str() {
        return Ok(literal.len());
    }
    if let Some(name) = as_ref(value) {
        if name == "ALIYUN::Region" {
            return Ok(32);
        }
        let p = t.parameter(name).ok_or_else(|| format!("{var}: Ref of `{name}`, not a parameter"))?;
        if let Some(max) = get(p, "MaxLength").and_then(as_int) {
            return Ok(usize::try_from(max).unwrap_or(0));
        }
        if let Some(values) = get(p, "AllowedValues").and_then(Yaml::as_vec) {
            return Ok(values.iter().filter_map(Yaml::as_str).map(str::len).max().unwrap_or(0));
        }
        return Err(format!("{var}: parameter `{name}` has neither MaxLength nor AllowedValues; give it a MaxLength"));
    }
    // One copy's value of a counted resource's attribute (a room):
    // `Fn::Select [ALIYUN::Index, X]` is as long as an element of X.
    if let Some(("Fn::Select", Yaml::Array(a))) = function(value) {
        if a.len() == 2 && as_ref(&a[0]) == Some("ALIYUN::Index") {
            return longest_value(t, var, &a[1]);
        }
    }
    match as_get_att(value).map(|(r, a)| (t.type_of(r).unwrap_or_default(), a)) {
        // A signed URL plus three headers: about 350 bytes in practice.
        Some(("ALIYUN::ROS::WaitConditionHandle", "CurlCli")) => Ok(1024),
        Some(("ALIYUN::RAM::AccessKey", "AccessKeyId" | "AccessKeySecret")) => Ok(64),
        // OSS bucket names are at most 63 characters.
        Some(("ALIYUN::OSS::Bucket", "Name")) => Ok(63),
        _ => Err(format!("{var}: no length bound known for {value:?}; add one to longest_value")),
    }
}

/// Whether a PortRange ("22/22", "1/65535", "-1/-1") includes a port.
pub fn covers(range: &str, port: i64) -> bool {
    match range.split_once('/').map(|(a, b)| (a.parse::<i64>(), b.parse::<i64>())) {
        Some((Ok(-1), Ok(-1))) => true,
        Some((Ok(from), Ok(to))) => from <= port && port <= to,
        _ => false,
    }
}

// --- HTTPS: the TlsMode parameter ----------------------------------------------------

/// The agent's `[tls] mode`s, in the order the templates offer them.
pub const TLS_MODES: [&str; 3] = ["acme", "self-signed", "off"];

/// Both templates' HTTPS wiring (`rel` is the template's path, for the
/// messages and the raw text): a `TlsMode` parameter offering exactly the
/// agent's three modes, acme by default, which the user data receives; a
/// condition comparing it to acme; port 80 opened by exactly one ingress rule
/// of the instance's security group, tcp 80/80 from 0.0.0.0/0 (Let's Encrypt
/// validates from addresses it does not publish, so not from the CIDR
/// parameter), which exists only under that condition; and every output that
/// describes the login URL says it is https unless TlsMode is off.
pub fn assert_tls_wiring(t: &Template, rel: &str) {
    let p = t.parameter("TlsMode").unwrap_or_else(|| panic!("{rel}: no TlsMode parameter"));
    assert_eq!(p["Type"].as_str(), Some("String"), "{rel}: TlsMode.Type");
    assert_eq!(p["Default"].as_str(), Some("acme"), "{rel}: TlsMode defaults to acme");
    let allowed: Vec<&str> =
        p["AllowedValues"].as_vec().map(|v| v.iter().filter_map(Yaml::as_str).collect()).unwrap_or_default();
    assert_eq!(allowed, TLS_MODES, "{rel}: TlsMode.AllowedValues are the agent's modes");
    // ROS reads YAML 1.1, where a bare off is the boolean false (this
    // parser, YAML 1.2, reads it as the string): the text quotes it.
    for (i, line) in read(rel).lines().enumerate() {
        let l = line.trim();
        assert!(
            l.starts_with('#') || !(l == "- off" || l.ends_with(": off") || l.contains("[off") || l.contains(" off]")),
            "{rel}:{}: a bare off is false in YAML 1.1; quote it ('off'): {l}",
            i + 1
        );
    }

    // The user data gets the parameter.
    let (_, vars) = t.user_data();
    let value =
        vars.iter().find(|(k, _)| *k == "TlsMode").unwrap_or_else(|| panic!("{rel}: UserData maps no TlsMode")).1;
    assert_eq!(as_ref(value), Some("TlsMode"), "{rel}: UserData's TlsMode is not Ref TlsMode");

    // The conditions that hold exactly when TlsMode is acme.
    let is_acme = |node: &Yaml| match function(node) {
        Some(("Fn::Equals", Yaml::Array(a))) if a.len() == 2 => {
            (as_ref(&a[0]) == Some("TlsMode") && a[1].as_str() == Some("acme"))
                || (a[0].as_str() == Some("acme") && as_ref(&a[1]) == Some("TlsMode"))
        }
        _ => false,
    };
    let acme: Vec<&str> = t.section("Conditions").into_iter().filter(|(_, c)| is_acme(c)).map(|(n, _)| n).collect();
    assert!(!acme.is_empty(), "{rel}: no condition is Fn::Equals [Ref TlsMode, acme]");

    // Every rule of the instance's security group that lets port 80 in.
    let (instance, i) = t.only(INSTANCE);
    let group = as_ref(&i["Properties"]["SecurityGroupId"])
        .unwrap_or_else(|| panic!("{rel}: {instance}.SecurityGroupId is not a Ref"));
    let opens_80 = |r: &Yaml| {
        matches!(r["IpProtocol"].as_str(), Some("tcp" | "all"))
            && r["PortRange"].as_str().is_some_and(|range| covers(range, 80))
            && r["Policy"].as_str().unwrap_or("accept") == "accept"
    };
    let inline = t.resource(group).unwrap()["Properties"]["SecurityGroupIngress"].as_vec().cloned().unwrap_or_default();
    assert!(!inline.iter().any(opens_80), "{rel}: an inline rule of {group} opens port 80 whatever TlsMode is");
    let rules: Vec<(&str, &Yaml)> = t
        .resources_of("ALIYUN::ECS::SecurityGroupIngress")
        .into_iter()
        .filter(|(_, r)| as_ref(&r["Properties"]["SecurityGroupId"]) == Some(group) && opens_80(&r["Properties"]))
        .collect();
    let [(name, rule)] = rules.as_slice() else {
        panic!("{rel}: {} ingress rules of {group} open port 80, expected 1: {rules:?}", rules.len())
    };
    let condition = rule["Condition"].as_str();
    assert!(
        condition.is_some_and(|c| acme.contains(&c)),
        "{rel}: {name} must exist only when TlsMode is acme (Condition one of {acme:?}), has Condition {condition:?}"
    );
    let props = &rule["Properties"];
    assert_eq!(props["IpProtocol"].as_str(), Some("tcp"), "{rel}: {name}.IpProtocol");
    assert_eq!(props["PortRange"].as_str(), Some("80/80"), "{rel}: {name}.PortRange: port 80 only");
    assert_eq!(
        props["SourceCidrIp"].as_str(),
        Some("0.0.0.0/0"),
        "{rel}: {name}.SourceCidrIp: Let's Encrypt validates from unpublished addresses, so 0.0.0.0/0 whatever the \
         allowed CIDR"
    );

    // The login URL's scheme, as the outputs describe it.
    let mut described = 0;
    for (output, o) in t.section("Outputs") {
        let description = o["Description"].as_str().unwrap_or_default();
        if description.contains("URL") || description.contains("http://") {
            described += 1;
            assert!(
                description.contains("https://") && description.contains("unless TlsMode is off"),
                "{rel}: the output {output} must say the URL is https unless TlsMode is off: {description}"
            );
        }
    }
    assert!(described > 0, "{rel}: no output describes the login URL");
}

/// Python's `re` verdict on each value: matched in full by the pattern
/// (ROS does not name its regular expression dialect; the templates'
/// patterns use only what every dialect shares).
pub fn python_re_fullmatch(pattern: &str, values: &[&str]) -> Vec<bool> {
    let script = "import re, sys\n\
                  p = sys.argv[1]\n\
                  for v in sys.argv[2:]:\n\
                  \x20   print(int(re.search(p, v) is not None and re.fullmatch(p, v) is not None))\n";
    let out = Command::new("python3").arg("-c").arg(script).arg(pattern).args(values).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Vec<bool> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l == "1").collect();
    assert_eq!(verdicts.len(), values.len());
    verdicts
}

/// The workshop's end (docs/room.md#the-end-of-the-workshop): an `EndTime`
/// parameter, empty by default, whose pattern takes exactly empty or the
/// UTC time format ECS documents for `AutoReleaseTime`
/// (`yyyy-MM-ddTHH:mm:ssZ`), listed in a parameter group, described as
/// releasing the instance and not the rest of the stack; and the one
/// pay-as-you-go instance (a group of one) whose `AutoReleaseTime` is that
/// parameter when it is set and no property at all (`ALIYUN::NoValue`)
/// when it is empty, through `Fn::If` on a condition comparing it to ''.
pub fn assert_end_time_wiring(t: &Template, rel: &str) {
    let p = t.parameter("EndTime").unwrap_or_else(|| panic!("{rel}: no EndTime parameter"));
    assert_eq!(p["Type"].as_str(), Some("String"), "{rel}: EndTime's AllowedPattern is documented for String");
    assert_eq!(p["Default"].as_str(), Some(""), "{rel}: EndTime empty by default (no end)");
    let description = p["Description"].as_str().unwrap_or_default();
    for says in
        ["UTC", "yyyy-MM-ddTHH:mm:ssZ", "30 minutes", "3 years", "empty for no end", "releases", "jupyter-room down"]
    {
        assert!(description.contains(says), "{rel}: EndTime's Description does not say `{says}`: {description}");
    }
    let groups = t.root["Metadata"]["ALIYUN::ROS::Interface"]["ParameterGroups"].as_vec().cloned().unwrap_or_default();
    assert!(
        groups
            .iter()
            .any(|g| g["Parameters"].as_vec().is_some_and(|ps| ps.iter().any(|n| n.as_str() == Some("EndTime")))),
        "{rel}: EndTime is in no parameter group"
    );

    let pattern = p["AllowedPattern"].as_str().unwrap_or_else(|| panic!("{rel}: EndTime has no AllowedPattern"));
    let accepted = ["", "2026-12-08T09:00:00Z", "2029-02-28T23:59:59Z", "2027-01-31T00:30:00Z", "2026-10-01T12:05:07Z"];
    let refused = [
        "2026-12-08T09:00Z",
        "2026-12-08 09:00:00Z",
        "2026-12-08T09:00:00",
        "2026-12-08T09:00:00+08:00",
        "2026-12-08T09:00:00.000Z",
        "2026-12-08t09:00:00z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-12-32T00:00:00Z",
        "2026-12-00T00:00:00Z",
        "2026-12-08T24:00:00Z",
        "2026-12-08T09:60:00Z",
        "2026-12-08T09:00:60Z",
        "26-12-08T09:00:00Z",
        " 2026-12-08T09:00:00Z",
        "2026-12-08T09:00:00Z ",
        "2026-12-08T09:00:00Z\n",
        "tomorrow",
        " ",
    ];
    let values: Vec<&str> = accepted.iter().chain(&refused).copied().collect();
    for (value, ok) in values.iter().zip(python_re_fullmatch(pattern, &values)) {
        assert_eq!(ok, accepted.contains(value), "{rel}: EndTime's pattern {pattern} on {value:?}");
    }
    let longest = accepted.iter().map(|v| v.len()).max().unwrap();
    assert_eq!(get(p, "MaxLength").and_then(as_int), Some(longest as i64), "{rel}: EndTime's MaxLength");

    // The instance: pay-as-you-go (ECS releases only those automatically,
    // ModifyInstanceAutoReleaseTime's ChargeTypeViolation), one of it.
    let (name, instance) = t.only(INSTANCE);
    let props = &instance["Properties"];
    assert_eq!(as_int(&props["MaxAmount"]), Some(1), "{rel}: {name} is a group of one instance");
    assert_eq!(props["InstanceChargeType"].as_str(), Some("PostPaid"), "{rel}: {name} is pay-as-you-go");
    assert!(
        t.resources_of("ALIYUN::ECS::Instance").is_empty(),
        "{rel}: an ALIYUN::ECS::Instance has no AutoReleaseTime"
    );

    // AutoReleaseTime: Fn::If [condition, a, b], evaluated for EndTime empty
    // and set: no property, then the parameter.
    let release = get(props, "AutoReleaseTime").unwrap_or_else(|| panic!("{rel}: {name} has no AutoReleaseTime"));
    let Some(("Fn::If", Yaml::Array(a))) = function(release) else {
        panic!("{rel}: {name}.AutoReleaseTime is not Fn::If [condition, value, value]: {release:?}")
    };
    assert_eq!(a.len(), 3, "{rel}: {name}.AutoReleaseTime's Fn::If");
    let condition_name = a[0].as_str().unwrap_or_else(|| panic!("{rel}: Fn::If names no condition"));
    let condition = t.condition(condition_name).unwrap_or_else(|| panic!("{rel}: no condition {condition_name}"));
    fn eval(node: &Yaml, end_time: &str, rel: &str) -> bool {
        let operand = |n: &Yaml| -> String {
            match as_ref(n) {
                Some("EndTime") => end_time.to_string(),
                Some(other) => panic!("{rel}: the end time's condition reads {other}"),
                None => n.as_str().map(str::to_string).unwrap_or_else(|| panic!("{rel}: operand {n:?}")),
            }
        };
        match function(node) {
            Some(("Fn::Equals", Yaml::Array(a))) if a.len() == 2 => operand(&a[0]) == operand(&a[1]),
            Some(("Fn::Not", Yaml::Array(a))) if a.len() == 1 => !eval(&a[0], end_time, rel),
            other => panic!("{rel}: the end time's condition is neither Fn::Equals nor Fn::Not: {other:?}"),
        }
    }
    for (end_time, want) in [("", "ALIYUN::NoValue"), ("2026-12-08T09:00:00Z", "EndTime")] {
        let chosen = if eval(condition, end_time, rel) { &a[1] } else { &a[2] };
        assert_eq!(as_ref(chosen), Some(want), "{rel}: {name}.AutoReleaseTime with EndTime {end_time:?}");
    }
    // Only the instance reads the end; no resource exists or not by it.
    for (resource, r) in t.section("Resources") {
        if let Some(c) = get(r, "Condition").and_then(Yaml::as_str) {
            assert_ne!(c, condition_name, "{rel}: {resource} exists or not by the end time");
        }
    }
}

/// The GPU option (docs/gpu.md#the-templates-gpu-option): `GpuDriver`
/// offers exactly none, image and auto-install, none by default, in a
/// parameter group; `GpuDriverVersions`' pattern takes three dotted
/// versions and nothing the user data's single quotes could not hold; both
/// reach the user data; and the wait condition's `Timeout` is `Fn::If` on
/// a condition that is `GpuDriver` = auto-install, whose longer branch
/// covers the bootstrap's own wait plus the install's documented 20 minutes
/// and its reboot.
pub fn assert_gpu_wiring(t: &Template, rel: &str) {
    let p = t.parameter("GpuDriver").unwrap_or_else(|| panic!("{rel}: no GpuDriver parameter"));
    let values: Vec<&str> = get(p, "AllowedValues")
        .and_then(Yaml::as_vec)
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    assert_eq!(values, ["none", "image", "auto-install"], "{rel}: GpuDriver's AllowedValues");
    assert_eq!(get(p, "Default").and_then(Yaml::as_str), Some("none"), "{rel}: GpuDriver's default");
    let v = t.parameter("GpuDriverVersions").unwrap_or_else(|| panic!("{rel}: no GpuDriverVersions parameter"));
    let pattern = get(v, "AllowedPattern").and_then(Yaml::as_str).expect("GpuDriverVersions' AllowedPattern");
    let default = get(v, "Default").and_then(Yaml::as_str).expect("GpuDriverVersions' Default");
    let cases = [
        default,
        "440.64.00 10.2.89 7.6.5",
        "550 12.4.1 9.2",
        "550.127.08 12.4.1",
        "550.127.08  12.4.1 9.2.0.82",
        "550';x 12.4 9.2",
        "",
        "a.b c.d e.f",
    ];
    assert_eq!(
        python_re_fullmatch(pattern, &cases),
        [true, true, false, false, false, false, false, false],
        "{rel}: GpuDriverVersions' pattern on {cases:?}"
    );
    let max = get(v, "MaxLength").and_then(as_int).expect("GpuDriverVersions' MaxLength");
    assert!(default.len() as i64 <= max, "{rel}: GpuDriverVersions' default is longer than its MaxLength");
    let groups = format!("{:?}", t.root["Metadata"]["ALIYUN::ROS::Interface"]["ParameterGroups"]);
    assert!(
        groups.contains("\"GpuDriver\"") && groups.contains("\"GpuDriverVersions\""),
        "{rel}: GPU parameters in a group"
    );

    let (_, vars) = t.user_data();
    for name in ["GpuDriver", "GpuDriverVersions"] {
        let value = vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(value.and_then(as_ref), Some(name), "{rel}: UserData's {name} is not Ref {name}");
    }

    let (wait_name, wait) = t.only("ALIYUN::ROS::WaitCondition");
    let Some(("Fn::If", Yaml::Array(a))) = function(&wait["Properties"]["Timeout"]) else {
        panic!("{rel}: {wait_name}.Timeout is not Fn::If [condition, auto-install's, the others']")
    };
    let condition = a[0].as_str().expect("Fn::If names a condition");
    let Some(("Fn::Equals", Yaml::Array(eq))) = t.condition(condition).and_then(function) else {
        panic!("{rel}: condition {condition} is not Fn::Equals")
    };
    assert_eq!(as_ref(&eq[0]), Some("GpuDriver"), "{rel}: {condition} compares GpuDriver");
    assert_eq!(eq[1].as_str(), Some("auto-install"), "{rel}: {condition} compares GpuDriver with auto-install");
    let (gpu, other) = (as_int(&a[1]).expect("a number"), as_int(&a[2]).expect("a number"));
    let bootstrap = duration_secs(&t.user_data_literal("WaitTimeout")).expect("WaitTimeout is a duration");
    assert!(other >= bootstrap + 600, "{rel}: {wait_name}.Timeout without the install ({other} s)");
    assert!(
        gpu >= bootstrap + 600 + 20 * 60 + 5 * 60 && gpu <= 43_200,
        "{rel}: {wait_name}.Timeout with the auto-install ({gpu} s) must also cover its 20 minutes and its reboot"
    );
}
