//! Values for each key of the configuration: right, almost right and wrong.

use super::*;

/// A TOML string literal.
pub(super) fn toml_string(s: impl Into<String>) -> String {
    toml::Value::String(s.into()).to_string()
}

pub(super) fn strings(items: &'static [&'static str]) -> BoxedStrategy<String> {
    lit(items).prop_map(toml_string).boxed()
}

/// A key as a person might misspell it, or quote something odd as one.
pub(super) fn key_name() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec!["name", "port", "token", "env", "build", "image", "colour", "prot", "state_dir"])
            .prop_map(str::to_string),
        "[A-Za-z_][A-Za-z0-9_-]{0,8}",
        odd_text().prop_map(toml_string),
    ]
    .boxed()
}

/// A TOML value of any type, nested up to three levels.
pub(super) fn any_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        odd_text().prop_map(toml_string),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| toml::Value::Float(f).to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        lit(&[
            "1979-05-27",
            "1979-05-27T07:32:00Z",
            "1979-05-27T00:32:00.999999-07:00",
            "1979-05-27 07:32:00",
            "07:32:00",
            "nan",
            "-inf",
            "0x1f",
            "0o17",
            "0b101",
            "1_000",
            "1e400",
            "'literal \\ string'",
            "'''multi\nline'''",
            "\"\"\"multi\nbasic\"\"\"",
            "[]",
            "{}",
        ]),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            vec((key_name(), inner), 0..4).prop_map(|kv| {
                let kv: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
    .boxed()
}

pub(super) fn array(item: BoxedStrategy<String>, len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    vec(item, len).prop_map(|v| format!("[{}]", v.join(", "))).boxed()
}

/// A table of variables (`env`, `args`) as `NAME = value` lines: names good
/// and bad, values that are secrets (marked with [`SECRET`]), some with a
/// newline or a NUL.
pub(super) fn variables() -> BoxedStrategy<Vec<String>> {
    let name = prop_oneof![
        20 => "[A-Z_][A-Z0-9_]{0,8}",
        1 => lit(&["JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "PATH"]),
        1 => "[0-9][A-Z]{0,3}",
        1 => odd_text().prop_map(toml_string),
    ];
    let value = prop_oneof![
        20 => "[a-z0-9 ]{0,8}".prop_map(|s| toml_string(format!("{SECRET}{s}"))),
        1 => lit(&["\n", "\r", "\0"]).prop_map(|odd| toml_string(format!("{SECRET}{odd}"))),
        1 => any_value(),
    ];
    // Names are unique: a repeated key is a TOML error, tried elsewhere.
    vec((name, value), 0..4)
        .prop_map(|kv| {
            let mut seen = std::collections::BTreeSet::new();
            kv.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, v)| format!("{k} = {v}")).collect()
        })
        .boxed()
}

/// Absolute paths; `bad` adds relative ones, `..`, `/` itself, odd
/// characters and long paths (past the socket's 107 bytes).
pub(super) fn path_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&[
            "/var/lib/jupyter-agent",
            "/srv/state",
            "/run/jupyter-agent.sock",
            "/root/imagesearchhandson",
            "/root/userdata-result.txt",
            "/var/log/jupyter-agent",
        ]),
        "/[a-z]{1,8}(/[a-z.]{1,8}){0,2}",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        4 => lit(&["/", "//", "/tmp", "/var/lib", "/a/../b", "/a/..", "relative/dir", "", "workspace", " /a"]),
        2 => odd_text().prop_map(|s| format!("/{s}")),
        1 => (1usize..5_000).prop_map(|n| format!("/{}", "x".repeat(n))),
    ]
    .boxed()
}

pub(super) fn url_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&[
            "https://mirrors.aliyun.com/docker-ce",
            "https://mirrors.aliyun.com/docker-ce/",
            "http://100.100.100.200",
            "http://127.0.0.1:8080/",
            "https://registry.example",
        ]),
        "https?://[a-z0-9.]{1,12}(:[0-9]{1,5})?(/[a-z]{1,6})?",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        lit(&["http://", "https://", "http:///x", "https://a b", "ftp://x", "http://u:pw@h/r.tgz?x=1#f", "mirror"]),
        "(https?|tcp|unix|ftp)://[a-z0-9.:/@ -]{0,16}",
    ]
    .boxed()
}

pub(super) fn image_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&[
            "notebook",
            "notebook:latest",
            "jupyter/base-notebook:2024-01-01",
            "registry.example:5000/team/notebook:1.0",
            "localhost/nb:V1",
            "nb@sha256:abc",
        ]),
        "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[A-Za-z0-9._-]{1,8})?",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        lit(&["Registry.Example:5000/Team/nb:V1", "localhost/Upper:1", "UPPER", "-x", ":tag", "a:", "a/", "a@", ""]),
        "[A-Za-z0-9._/:@-]{0,20}",
        (1usize..300).prop_map(|n| format!("{}:1", "n".repeat(n))),
    ]
    .boxed()
}

pub(super) fn volume_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&["workspace:/home/jupyter/w:ro", "workspace:/w", "/data:/data", "/srv:/srv:ro", "/a:/b:rw"]),
        "/(data|opt|mnt)/[a-z]{1,5}:/[a-z]{1,6}(:ro|:rw)?",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        lit(&[
            "/a:/b:zz",
            "/:/host",
            "/var/lib:/x",
            "/var/lib/jupyter-agent:/s",
            "/var:/v",
            "data:/data",
            "/a:b",
            "/a",
            "",
            "/a:/b:ro:x",
        ]),
        "(/|workspace)[a-z/]{0,6}:/[a-z/]{0,6}(:ro|:rw|:zz)?",
        (path_text(true), path_text(false)).prop_map(|(h, c)| format!("{h}:{c}")),
    ]
    .boxed()
}

/// The value of `key` in `table` as TOML text: mostly one the key takes
/// (`good`), now and then one close to it that it refuses (`bad`), or any
/// TOML value.
pub(super) fn value_for(table: &str, key: &str) -> BoxedStrategy<String> {
    let (good, bad): (BoxedStrategy<String>, BoxedStrategy<String>) = match (table, key) {
        (_, "state_dir" | "log_dir" | "socket" | "result_file" | "archive" | "path") => {
            (path_text(false).prop_map(toml_string).boxed(), path_text(true).prop_map(toml_string).boxed())
        }
        ("container", "env_file") => (
            path_text(false).prop_map(toml_string).boxed(),
            prop_oneof![strings(&["env", "../env"]), path_text(true).prop_map(toml_string)].boxed(),
        ),
        (_, "env_file") => (
            prop_oneof![strings(&["env", "sub/env", ".env"]), path_text(false).prop_map(toml_string)].boxed(),
            prop_oneof![strings(&["", "../env", "a/../b"]), path_text(true).prop_map(toml_string)].boxed(),
        ),
        (_, "ping_timeout" | "ready_timeout") => (
            prop_oneof![
                strings(&["90s", "10m", "1h", "1h 30m", "1h30m", "600", "1s", "1500ms", "30d"]),
                "[1-9][0-9]{0,3}(s|m|h)".prop_map(toml_string)
            ]
            .boxed(),
            prop_oneof![
                strings(&[
                    "0",
                    "0s",
                    "500ms",
                    "999ms",
                    "31d",
                    "2592001",
                    "18446744073709551615",
                    "18446744073709551615s"
                ]),
                strings(&["300000000000y", "-5", "soon", "", " 2s ", "5 parsecs"]),
                "[0-9]{1,25}(ns|us|ms|s|m|h|d|w|y)?".prop_map(toml_string),
                any::<i64>().prop_map(|i| i.to_string()),
            ]
            .boxed(),
        ),
        (_, "install" | "metadata_access" | "remove_conflicts") => {
            (any::<bool>().prop_map(|b| b.to_string()).boxed(), strings(&["true", "yes", "1"]))
        }
        ("docker", "source") => (strings(&["auto", "distro", "docker-ce"]), strings(&["apt", "Auto", ""])),
        ("docker", "host") => (
            strings(&["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "http://127.0.0.1:2375"]),
            prop_oneof![
                strings(&["unix://", "tcp://", "/var/run/docker.sock", ""]),
                url_text(true).prop_map(toml_string)
            ]
            .boxed(),
        ),
        (_, "mirror") => (url_text(false).prop_map(toml_string).boxed(), url_text(true).prop_map(toml_string).boxed()),
        (_, "nvidia_toolkit_repository") => (
            prop_oneof![url_text(false), lit(&["file:///srv/mirror/libnvidia-container"])]
                .prop_map(toml_string)
                .boxed(),
            prop_oneof![url_text(true), lit(&["file://", "file:///", "file://host/x", "/srv/mirror"])]
                .prop_map(toml_string)
                .boxed(),
        ),
        (_, "metadata_endpoint") => (
            prop_oneof![
                strings(&["http://100.100.100.200", "http://100.100.100.200/", "http://127.0.0.1:8080"]),
                "http://[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?(/[a-z]{1,6})?"
                    .prop_map(toml_string),
            ]
            .boxed(),
            prop_oneof![
                strings(&["http://metadata.example", "https://100.100.100.200", "http://[::1]:80"]),
                url_text(true).prop_map(toml_string)
            ]
            .boxed(),
        ),
        (_, "registry_mirrors") => (
            array(url_text(false).prop_map(toml_string).boxed(), 1..3),
            prop_oneof![Just("[]".to_string()), array(url_text(true).prop_map(toml_string).boxed(), 1..3)].boxed(),
        ),
        ("workspace", "source") => (
            strings(&[
                "https://example.com/w.tar.gz",
                "https://github.com/o/r.git",
                "/srv/repo",
                "file:///srv/repo",
                "ssh://git@h/r",
                "git://h/r",
            ]),
            strings(&["https://u:pw@example.com/w.tgz?sig=1", "ftp://h/r", "relative", "https://h/a b", ""]),
        ),
        (_, "sha256") => {
            ("[0-9a-fA-F]{64}".prop_map(toml_string).boxed(), "[0-9a-fg]{0,70}".prop_map(toml_string).boxed())
        }
        (_, "ref") => (strings(&["main", "v1.0", "0123abc"]), strings(&["", "-x", "--upload-pack=x", "a b"])),
        (_, "max_size") => (
            prop_oneof![
                strings(&["500MB", "2GiB", "1 KiB", "1B"]),
                "[1-9][0-9]{0,3}(B|kB|KB|MB|GB|KiB|MiB|GiB)".prop_map(toml_string)
            ]
            .boxed(),
            prop_oneof![
                strings(&["500", "0MB", "1TB", "2048GiB", "99999999999999999999GB", "-1MB", "1.5GB", "MB", ""]),
                "[0-9]{0,25} ?[A-Za-z]{0,4}".prop_map(toml_string),
            ]
            .boxed(),
        ),
        ("image", "name" | "tag") => {
            (image_text(false).prop_map(toml_string).boxed(), image_text(true).prop_map(toml_string).boxed())
        }
        (_, "pull") => (strings(&["always", "if-not-present", "never"]), strings(&["sometimes", "Always", ""])),
        (_, "context") => (
            strings(&["/ctx", "/srv/build", "/root/imagesearchhandson", "workspace"]),
            prop_oneof![strings(&["rel", ""]), path_text(true).prop_map(toml_string)].boxed(),
        ),
        (_, "dockerfile") => (
            strings(&["Dockerfile", "sub/Dockerfile", "docker/Dockerfile.gpu"]),
            strings(&["/abs/Dockerfile", "../Dockerfile", "a/../../b", ""]),
        ),
        (_, "env" | "args") => {
            (variables().prop_map(|kv| format!("{{ {} }}", kv.join(", "))).boxed(), strings(&["A=1"]))
        }
        ("container", "name") => (
            prop_oneof![strings(&["jupyter", "nb_1.x"]), "[a-z0-9][a-z0-9_.-]{0,10}".prop_map(toml_string)].boxed(),
            strings(&["-x", "a b", "", "_x", "é"]),
        ),
        (_, "command") => (
            array(
                prop_oneof![strings(&["jupyter", "lab", "--ip=0.0.0.0"]), odd_text().prop_map(toml_string)].boxed(),
                1..4,
            ),
            prop_oneof![Just("[]".to_string()), strings(&["jupyter lab"]), lit(&["[\"jupyter\", 1]", "[[\"a\"]]"])]
                .boxed(),
        ),
        (_, "user") => (strings(&["root", "1000:1000", "jovyan"]), strings(&[""])),
        (_, "volumes") => (
            array(volume_text(false).prop_map(toml_string).boxed(), 1..3),
            array(volume_text(true).prop_map(toml_string).boxed(), 1..3),
        ),
        (_, "port") => (
            prop_oneof![lit(&["1", "8888", "65535"]), (1u16..=65535).prop_map(|p| p.to_string())].boxed(),
            prop_oneof![lit(&["0", "65536", "-1", "\"8888\"", "8888.0"]), any::<i64>().prop_map(|i| i.to_string())]
                .boxed(),
        ),
        (_, "publish") => (
            strings(&["0.0.0.0:8888", "127.0.0.1:0", "[::1]:8888", "[::]:1", "9999", "10.0.0.1:80"]),
            strings(&["::1:80", "1.2.3.4:99999", "x:1", ":80", "", "localhost:8888"]),
        ),
        (_, "restart") => (strings(&["no", "always", "unless-stopped", "on-failure"]), strings(&["sometimes", ""])),
        (_, "url_host") => (
            strings(&["auto", "example.com", "1.2.3.4", "[::1]", "::1", "ecs-1.cn-hangzhou"]),
            strings(&["a:1", "", "ex ample", "a_b", "http://h"]),
        ),
        ("jupyter", "token") => (
            strings(&["generate", "image", "none", "/etc/jupyter-agent/token"]),
            strings(&["relative/token", "/a/../token", "", "Generate", "s3cret"]),
        ),
        // A key this file has no values for: a string, a flag or a number.
        _ => (
            prop_oneof![
                odd_text().prop_map(toml_string),
                any::<bool>().prop_map(|b| b.to_string()),
                (0u16..9999).prop_map(|i| i.to_string())
            ]
            .boxed(),
            any_value(),
        ),
    };
    prop_oneof![30 => good, 2 => bad, 1 => any_value()].boxed()
}

/// `key = value` for `key` of `table`, present with probability `p`.
pub(super) fn entry(p: f64, table: &str, key: &str) -> BoxedStrategy<Option<String>> {
    let key = key.to_string();
    let line = value_for(table, &key).prop_map(move |v| format!("{key} = {v}"));
    if p >= 1.0 {
        line.prop_map(Some).boxed()
    } else {
        weighted(p, line).boxed()
    }
}
