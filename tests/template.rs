//! The ROS template organisers upload (`userdata/template.yml`), checked
//! without a cloud account, Docker or a network: it parses and is exactly
//! what `scripts/render-userdata` makes of `template.src.yml` and
//! `userdata.sh`; every `Ref`, `Fn::GetAtt` and `${...}` of `Fn::Sub`
//! resolves; every resource has the properties its ROS reference page marks
//! required; the instance's user data is the script, plain ASCII and within
//! ROS's 16 KB once substituted; and the stack is wired as the hands-on needs
//! it (ports 22 and 8888 open from the CIDR parameter, a public address, a
//! wait condition that outlasts the bootstrap and yields the Jupyter URL).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

/// ROS's limit on `ALIYUN::ECS::Instance` `UserData` (REFERENCE.md section 2;
/// the resource's reference page: "The user data can be up to 16 KB in size").
const USER_DATA_LIMIT: usize = 16 * 1024;

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
/// resource of a type missing here fails `resources_have_their_required_properties`:
/// read its page and add it.
const RESOURCE_TYPES: &[ResourceType] = &[
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

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn render_userdata() -> Command {
    Command::new(repo().join("scripts/render-userdata"))
}

// --- YAML access ---------------------------------------------------------------

/// `node[key]`, or None when absent (or when `node` is not a mapping).
fn get<'a>(node: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let value = &node[key];
    (!value.is_badvalue()).then_some(value)
}

/// The string-keyed entries of a mapping, in order.
fn entries(node: &Yaml) -> Vec<(&str, &Yaml)> {
    node.as_hash().map(|h| h.iter().filter_map(|(k, v)| Some((k.as_str()?, v))).collect()).unwrap_or_default()
}

/// A function call: a one-entry mapping whose key is `Ref` or `Fn::...`.
fn function(node: &Yaml) -> Option<(&str, &Yaml)> {
    let h = node.as_hash()?;
    if h.len() != 1 {
        return None;
    }
    let (k, v) = h.iter().next()?;
    let name = k.as_str()?;
    (name == "Ref" || name.starts_with("Fn::")).then_some((name, v))
}

/// `{Ref: X}` -> X.
fn as_ref(node: &Yaml) -> Option<&str> {
    match function(node)? {
        ("Ref", Yaml::String(name)) => Some(name),
        _ => None,
    }
}

/// `{Fn::GetAtt: [R, A]}` (or `R.A`) -> (R, A).
fn as_get_att(node: &Yaml) -> Option<(&str, &str)> {
    match function(node)? {
        ("Fn::GetAtt", Yaml::Array(a)) if a.len() == 2 => Some((a[0].as_str()?, a[1].as_str()?)),
        ("Fn::GetAtt", Yaml::String(s)) => s.split_once('.'),
        _ => None,
    }
}

/// An integer, written as one or as a string of digits.
fn as_int(node: &Yaml) -> Option<i64> {
    match node {
        Yaml::Integer(i) => Some(*i),
        Yaml::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A DependsOn value: one name or a list of names.
fn depends_on(resource: &Yaml) -> Vec<&str> {
    match get(resource, "DependsOn") {
        Some(Yaml::String(s)) => vec![s.as_str()],
        Some(Yaml::Array(a)) => a.iter().filter_map(Yaml::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Walks an `Fn::Sub` string: `${!X}` becomes the literal `${X}`; for each
/// `${Name}` the closure gives the text that replaces it. Err on a `${`
/// without its `}`.
fn sub_render(s: &str, mut var: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
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
fn sub_names(s: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    sub_render(s, |name| {
        names.push(name.to_string());
        Ok(String::new())
    })?;
    Ok(names)
}

/// A duration as jupyter-bootstrap's --timeout takes it: seconds, or a
/// number with s, m or h.
fn duration_secs(s: &str) -> Option<i64> {
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

struct Template {
    root: Yaml,
}

impl Template {
    fn load() -> Self {
        let text = read("userdata/template.yml");
        let mut docs =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("userdata/template.yml does not parse: {e}"));
        assert_eq!(docs.len(), 1, "userdata/template.yml holds {} YAML documents, expected 1", docs.len());
        Template { root: docs.remove(0) }
    }

    fn section(&self, name: &str) -> Vec<(&str, &Yaml)> {
        entries(&self.root[name])
    }

    fn parameter(&self, name: &str) -> Option<&Yaml> {
        get(&self.root["Parameters"], name)
    }

    fn resource(&self, name: &str) -> Option<&Yaml> {
        get(&self.root["Resources"], name)
    }

    fn type_of(&self, resource: &str) -> Option<&str> {
        self.resource(resource)?["Type"].as_str()
    }

    fn resources_of(&self, ty: &str) -> Vec<(&str, &Yaml)> {
        self.section("Resources").into_iter().filter(|(_, r)| r["Type"].as_str() == Some(ty)).collect()
    }

    /// The one resource of a type; panics when there are none or several.
    fn only(&self, ty: &str) -> (&str, &Yaml) {
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
    fn user_data(&self) -> (&str, Vec<(&str, &Yaml)>) {
        let (name, instance) = self.only("ALIYUN::ECS::Instance");
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
    fn user_data_literal(&self, var: &str) -> String {
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

// --- Tests -----------------------------------------------------------------------

#[test]
fn template_parses_and_is_what_the_renderer_makes() {
    let t = Template::load();
    assert_eq!(t.root["ROSTemplateFormatVersion"].as_str(), Some("2015-09-01"));
    for section in ["Parameters", "Resources", "Outputs"] {
        assert!(!t.section(section).is_empty(), "the template has no {section}");
    }
    assert!(
        read("userdata/template.yml").starts_with("# GENERATED by scripts/render-userdata"),
        "userdata/template.yml lacks the renderer's GENERATED header"
    );

    let out = render_userdata().args(["template", "--check"]).output().expect("run scripts/render-userdata");
    assert!(
        out.status.success(),
        "scripts/render-userdata template --check failed ({}): the committed template and userdata.sh or \
         template.src.yml have drifted apart; run scripts/render-userdata template\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_reference_resolves_and_every_parameter_is_used() {
    let t = Template::load();
    let mut refs = References { t: &t, errors: Vec::new(), used: BTreeSet::new() };

    for (name, resource) in t.section("Resources") {
        if let Some(properties) = get(resource, "Properties") {
            refs.walk(properties, &format!("Resources.{name}.Properties"));
        }
        for dep in depends_on(resource) {
            if dep == name || t.resource(dep).is_none() {
                refs.errors.push(format!("Resources.{name}.DependsOn: `{dep}` is not another resource"));
            }
        }
    }
    for section in ["Outputs", "Conditions"] {
        for (name, node) in t.section(section) {
            refs.walk(node, &format!("{section}.{name}"));
        }
    }

    // The console's metadata: groups list defined parameters, each parameter
    // once; AssociationPropertyMetadata's ${X} name parameters.
    let parameters: Vec<&str> = t.section("Parameters").into_iter().map(|(n, _)| n).collect();
    let mut grouped: BTreeMap<&str, usize> = BTreeMap::new();
    let groups = &t.root["Metadata"]["ALIYUN::ROS::Interface"]["ParameterGroups"];
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
        for (key, value) in entries(&t.root["Parameters"][*p]["AssociationPropertyMetadata"]) {
            for name in value.as_str().map(sub_names).and_then(Result::ok).unwrap_or_default() {
                if !parameters.contains(&name.as_str()) {
                    refs.errors
                        .push(format!("Parameters.{p}.AssociationPropertyMetadata.{key}: `{name}` is not a parameter"));
                }
            }
        }
    }

    for p in &parameters {
        if !refs.used.contains(*p) {
            refs.errors.push(format!("parameter `{p}` is never used"));
        }
    }
    assert!(refs.errors.is_empty(), "broken references in userdata/template.yml:\n{}", refs.errors.join("\n"));
}

#[test]
fn resources_have_their_required_properties() {
    let t = Template::load();
    let mut errors = Vec::new();
    for (name, resource) in t.section("Resources") {
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
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn user_data_is_the_script_in_ascii() {
    let t = Template::load();
    let (text, vars) = t.user_data();
    assert!(text.is_ascii(), "the UserData Fn::Sub string holds non-ASCII characters");
    assert!(text.starts_with("#!/bin/sh\n"), "the user data does not start with #!/bin/sh");
    assert!(
        text.len() <= USER_DATA_LIMIT,
        "the UserData Fn::Sub string is {} bytes; ROS allows {USER_DATA_LIMIT}",
        text.len()
    );

    // Back to the script: ${!...} to ${...}, each variable back to its marker.
    let keys: BTreeSet<&str> = vars.iter().map(|(k, _)| *k).collect();
    let script = sub_render(text, |name| {
        if keys.contains(name) {
            Ok(format!("@@{name}@@"))
        } else {
            Err(format!("${{{name}}} is not a UserData variable"))
        }
    })
    .unwrap_or_else(|e| panic!("the UserData string: {e}"));
    let source = read("userdata/userdata.sh");
    if script != source {
        let line = script.lines().zip(source.lines()).position(|(a, b)| a != b).map_or(0, |i| i + 1);
        panic!(
            "the template's user data is not userdata/userdata.sh (first difference at line {line}; template {} bytes, \
             script {} bytes); run scripts/render-userdata template",
            script.len(),
            source.len()
        );
    }
}

/// Markers (`@@Name@@`) of userdata.sh, as render-userdata finds them.
fn markers(script: &str) -> BTreeSet<String> {
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

#[test]
fn every_marker_is_mapped_and_every_variable_used() {
    let t = Template::load();
    let (text, vars) = t.user_data();
    let script_markers = markers(&read("userdata/userdata.sh"));
    assert!(!script_markers.is_empty(), "userdata.sh has no @@Name@@ markers");
    let mapped: BTreeSet<String> = vars.iter().map(|(k, _)| k.to_string()).collect();
    let named: BTreeSet<String> = sub_names(text).unwrap().into_iter().collect();

    let unmapped: Vec<_> = script_markers.difference(&mapped).collect();
    assert!(unmapped.is_empty(), "markers of userdata.sh the UserData's variable map lacks: {unmapped:?}");
    let extra: Vec<_> = mapped.difference(&script_markers).collect();
    assert!(extra.is_empty(), "UserData variables userdata.sh has no marker for: {extra:?}");
    assert_eq!(named, mapped, "the ${{...}} the UserData string names are not exactly its variables");
}

/// A CurlCli as ROS hands it out (REFERENCE.md section 2), at its realistic length.
fn realistic_curl_cli() -> String {
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
fn longest_value(t: &Template, var: &str, value: &Yaml) -> Result<usize, String> {
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
    match as_get_att(value).map(|(r, a)| (t.type_of(r).unwrap_or_default(), a)) {
        // A signed URL plus three headers: about 350 bytes in practice.
        Some(("ALIYUN::ROS::WaitConditionHandle", "CurlCli")) => Ok(1024),
        Some(("ALIYUN::RAM::AccessKey", "AccessKeyId" | "AccessKeySecret")) => Ok(64),
        // OSS bucket names are at most 63 characters.
        Some(("ALIYUN::OSS::Bucket", "Name")) => Ok(63),
        _ => Err(format!("{var}: no length bound known for {value:?}; add one to longest_value")),
    }
}

#[test]
fn user_data_fits_in_16_kb_once_substituted() {
    let t = Template::load();
    let (text, vars) = t.user_data();

    // Realistic values, as a stack would substitute them.
    let realistic: BTreeMap<&str, String> = [
        ("AccessKeyId", "LTAI5tQZ8xYv3mN2kP7rWd4E".to_string()),
        ("AccessKeySecret", "Xq2Lm9Rt4Vb7Nc1Kd8Fg3Hj6Sw0Ay5".to_string()),
        ("BucketName", "imagesearchhandson-taro-4a6c9851".to_string()),
        (
            "BundleUrl",
            "https://jupyter-agent-releases.oss-ap-northeast-1.aliyuncs.com/v0.1.0/\
             jupyter-agent-0.1.0-x86_64-linux.tar.gz"
                .to_string(),
        ),
        ("BundleSha256", "0123456789abcdef".repeat(4)),
        ("ImageSearchInstanceName", "imagesearchhandson".to_string()),
        ("JupyterImage", "notebook:latest".to_string()),
        ("MaterialsRef", "master".to_string()),
        ("MaterialsSource", "https://github.com/kanzai935/imagesearchhandson.git".to_string()),
        ("Region", "ap-northeast-1".to_string()),
        ("WaitConditionCurlCli", realistic_curl_cli()),
        ("WaitTimeout", t.user_data_literal("WaitTimeout")),
    ]
    .into_iter()
    .collect();
    assert!(realistic["WaitConditionCurlCli"].len() >= 300);
    let substitute = |values: &BTreeMap<&str, String>| {
        sub_render(text, |name| values.get(name).cloned().ok_or_else(|| format!("no value for ${{{name}}}")))
            .unwrap_or_else(|e| panic!("substituting the UserData: {e}"))
    };
    let script = substitute(&realistic);
    assert!(script.is_ascii());
    assert!(
        script.len() <= USER_DATA_LIMIT,
        "with realistic values the user data is {} bytes; ROS allows {USER_DATA_LIMIT}",
        script.len()
    );
    assert!(!script.contains("${!"), "a Fn::Sub literal survived the substitution");

    // Fn::Sub on the template gives what `render-userdata values` (which the
    // boot tests run) gives for the same values.
    let out = render_userdata()
        .arg("values")
        .args(realistic.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("run scripts/render-userdata values");
    assert!(out.status.success(), "render-userdata values: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout) == script,
        "Fn::Sub of the template and render-userdata values disagree"
    );

    // The longest values the parameters and attributes allow.
    let mut longest = BTreeMap::new();
    let mut errors = Vec::new();
    for (var, value) in &vars {
        match longest_value(&t, var, value) {
            Ok(n) => {
                longest.insert(*var, "x".repeat(n));
            }
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let worst = substitute(&longest);
    assert!(
        worst.len() <= USER_DATA_LIMIT,
        "with the longest values the parameters allow the user data is {} bytes; ROS allows {USER_DATA_LIMIT}",
        worst.len()
    );
}

#[test]
fn outputs_give_the_jupyter_url_address_bucket_and_instance() {
    let t = Template::load();
    let (wait, _) = t.only("ALIYUN::ROS::WaitCondition");
    let (instance, _) = t.only("ALIYUN::ECS::Instance");
    let (bucket, _) = t.only("ALIYUN::OSS::Bucket");
    let values: Vec<(&str, &Yaml)> = t.section("Outputs").into_iter().map(|(n, o)| (n, &o["Value"])).collect();

    // Fn::Jq [First, .jupyter, {Fn::GetAtt: [<wait condition>, Data]}]
    let jupyter_url = values.iter().find(|(_, v)| match function(v) {
        Some(("Fn::Jq", Yaml::Array(a))) if a.len() == 3 => {
            a[0].as_str() == Some("First")
                && a[1].as_str() == Some(".jupyter")
                && as_get_att(&a[2]) == Some((wait, "Data"))
        }
        _ => false,
    });
    assert!(jupyter_url.is_some(), "no output is Fn::Jq [First, .jupyter, Fn::GetAtt [{wait}, Data]]");

    // The signal's id is "jupyter": jupyter-bootstrap's default, and the
    // script's own FAILURE signal.
    let script = read("userdata/userdata.sh");
    assert!(!script.contains("--ros-id") || script.contains("--ros-id jupyter"), "userdata.sh signals another id");
    assert!(script.contains(r#""id":"jupyter""#), "userdata.sh's own signal does not use the id jupyter");

    for (resource, attribute) in [(instance, "PublicIp"), (instance, "InstanceId"), (bucket, "Name")] {
        assert!(
            values.iter().any(|(_, v)| as_get_att(v) == Some((resource, attribute))),
            "no output gives Fn::GetAtt [{resource}, {attribute}]"
        );
    }
}

/// Whether a PortRange ("22/22", "1/65535", "-1/-1") includes a port.
fn covers(range: &str, port: i64) -> bool {
    match range.split_once('/').map(|(a, b)| (a.parse::<i64>(), b.parse::<i64>())) {
        Some((Ok(-1), Ok(-1))) => true,
        Some((Ok(from), Ok(to))) => from <= port && port <= to,
        _ => false,
    }
}

#[test]
fn ssh_and_jupyter_are_open_from_the_cidr_parameter_on_a_public_address() {
    let t = Template::load();
    let (instance_name, instance) = t.only("ALIYUN::ECS::Instance");
    let props = &instance["Properties"];
    let group = as_ref(&props["SecurityGroupId"])
        .unwrap_or_else(|| panic!("{instance_name}.SecurityGroupId is not a Ref to the template's security group"));
    assert_eq!(t.type_of(group), Some("ALIYUN::ECS::SecurityGroup"), "{instance_name}.SecurityGroupId");

    // The instance, its VSwitch and its security group share one VPC.
    let vswitch = as_ref(&props["VSwitchId"]).unwrap_or_else(|| panic!("{instance_name}.VSwitchId is not a Ref"));
    assert_eq!(t.type_of(vswitch), Some("ALIYUN::ECS::VSwitch"));
    let vpc = as_ref(&props["VpcId"]).unwrap_or_else(|| panic!("{instance_name}.VpcId is not a Ref"));
    for owner in [vswitch, group] {
        assert_eq!(as_ref(&t.resource(owner).unwrap()["Properties"]["VpcId"]), Some(vpc), "{owner}.VpcId");
    }

    // Ingress rules of that group: separate resources and inline ones.
    let mut rules: Vec<&Yaml> = t
        .resources_of("ALIYUN::ECS::SecurityGroupIngress")
        .into_iter()
        .map(|(_, r)| &r["Properties"])
        .filter(|p| as_ref(&p["SecurityGroupId"]) == Some(group))
        .collect();
    rules.extend(t.resource(group).unwrap()["Properties"]["SecurityGroupIngress"].as_vec().into_iter().flatten());
    let mut cidr_parameters = BTreeSet::new();
    for port in [22, 8888] {
        let rule = rules.iter().find(|r| {
            matches!(r["IpProtocol"].as_str(), Some("tcp" | "all"))
                && r["PortRange"].as_str().is_some_and(|range| covers(range, port))
                && r["Policy"].as_str().unwrap_or("accept") == "accept"
        });
        let rule = rule.unwrap_or_else(|| panic!("no ingress rule of {group} opens tcp {port}"));
        let cidr = as_ref(&rule["SourceCidrIp"])
            .filter(|p| t.parameter(p).is_some())
            .unwrap_or_else(|| panic!("the rule for port {port} does not take SourceCidrIp from a parameter"));
        cidr_parameters.insert(cidr);
    }
    assert_eq!(cidr_parameters.len(), 1, "ports 22 and 8888 take their source from different parameters");
    let cidr = cidr_parameters.first().unwrap();
    assert_eq!(
        t.parameter(cidr).unwrap()["Default"].as_str(),
        Some("0.0.0.0/0"),
        "the hands-on needs {cidr} to default to 0.0.0.0/0 (participants' browsers and Cloud Shell)"
    );

    // A public address: outbound bandwidth above 0, AllocatePublicIP not false.
    let bandwidth = &props["InternetMaxBandwidthOut"];
    let positive = match as_ref(bandwidth) {
        Some(p) => t.parameter(p).and_then(|p| get(p, "MinValue")).and_then(as_int).is_some_and(|min| min > 0),
        None => as_int(bandwidth).is_some_and(|n| n > 0),
    };
    assert!(
        positive,
        "{instance_name}.InternetMaxBandwidthOut must be above 0 for a public address, got {bandwidth:?}"
    );
    assert_ne!(props["AllocatePublicIP"].as_bool(), Some(false), "{instance_name}.AllocatePublicIP is false");
}

#[test]
fn the_wait_condition_outlasts_the_bootstrap() {
    let t = Template::load();
    let (wait_name, wait) = t.only("ALIYUN::ROS::WaitCondition");
    let (instance_name, _) = t.only("ALIYUN::ECS::Instance");
    let props = &wait["Properties"];

    assert_eq!(as_int(&props["Count"]), Some(1), "{wait_name}.Count: the bootstrap sends one signal");
    let handle = as_ref(&props["Handle"]).unwrap_or_else(|| panic!("{wait_name}.Handle is not a Ref"));
    assert_eq!(t.type_of(handle), Some("ALIYUN::ROS::WaitConditionHandle"), "{wait_name}.Handle");

    // The user data signals this handle.
    let (_, vars) = t.user_data();
    let curl_cli = vars.iter().find(|(k, _)| *k == "WaitConditionCurlCli").map(|(_, v)| *v);
    assert_eq!(
        curl_cli.and_then(as_get_att),
        Some((handle, "CurlCli")),
        "UserData's WaitConditionCurlCli is not Fn::GetAtt [{handle}, CurlCli]"
    );

    // Counted from the instance's creation, and longer than the bootstrap's
    // own timeout by its signal's retry budget (5 minutes) plus the boot and
    // the bundle download: a stuck bootstrap then reports its FAILURE itself.
    assert!(depends_on(wait).contains(&instance_name), "{wait_name} should DependsOn {instance_name}");
    let timeout = as_int(&props["Timeout"]).unwrap_or_else(|| panic!("{wait_name}.Timeout is not a number"));
    assert!((1..=43_200).contains(&timeout), "{wait_name}.Timeout {timeout} is outside ROS's 1..=43200 seconds");
    let wait_timeout = t.user_data_literal("WaitTimeout");
    let bootstrap =
        duration_secs(&wait_timeout).unwrap_or_else(|| panic!("WaitTimeout {wait_timeout:?} is not a duration"));
    assert!(
        timeout >= bootstrap + 600,
        "{wait_name}.Timeout ({timeout} s) must exceed the bootstrap's WaitTimeout ({wait_timeout}) by at least 10 minutes"
    );
}

#[test]
fn helpers_read_fn_sub_as_ros_does() {
    assert_eq!(sub_names("a ${X} ${!Y} ${R.Attr} ${ALIYUN::Region}").unwrap(), ["X", "R.Attr", "ALIYUN::Region"]);
    assert_eq!(sub_render("${!HOME}/${Name}", |n| Ok(n.to_lowercase())).unwrap(), "${HOME}/name");
    assert!(sub_names("echo ${oops").is_err());
    assert_eq!(
        markers("a @@One@@ b @@Two2@@ @@ x@@ @@3x@@ @@@Three@@"),
        ["One", "Three", "Two2"].map(String::from).into_iter().collect()
    );
    assert_eq!(
        [duration_secs("45m"), duration_secs("600"), duration_secs("1h"), duration_secs("5d")],
        [Some(2700), Some(600), Some(3600), None]
    );
    assert!(covers("22/22", 22) && covers("1/65535", 8888) && covers("-1/-1", 8888) && !covers("22/22", 8888));
}
