//! Registry mirrors in `/etc/docker/daemon.json` (Docker's daemon
//! configuration file): merged in, every other key kept; a file that is not
//! valid JSON is never overwritten.

use serde_json::{Map, Value};

/// What merging came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// The file must be (re)written with this content.
    Changed(String),
    /// Every mirror is already there.
    Unchanged,
    /// The existing file cannot be read as a JSON object; it is left as it is.
    Invalid(String),
}

/// Merges `mirrors` into the existing file content (`None`: no file yet).
/// Existing mirrors stay first, in their order; new ones follow.
pub fn merge(existing: Option<&str>, mirrors: &[String]) -> Merge {
    let mut root: Map<String, Value> = match existing.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Merge::Invalid(format!("expected a JSON object, found {}", kind(&other))),
            Err(e) => return Merge::Invalid(e.to_string()),
        },
    };
    let mut list: Vec<Value> = match root.get("registry-mirrors") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => return Merge::Invalid(format!("\"registry-mirrors\" is {}, expected an array", kind(other))),
    };
    let before = list.len();
    for m in mirrors {
        if !list.iter().any(|v| v.as_str() == Some(m.as_str())) {
            list.push(Value::String(m.clone()));
        }
    }
    if list.len() == before && existing.is_some() {
        return Merge::Unchanged;
    }
    root.insert("registry-mirrors".into(), Value::Array(list));
    let mut text = serde_json::to_string_pretty(&Value::Object(root)).expect("a JSON value serializes");
    text.push('\n');
    Merge::Changed(text)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_file_holds_the_mirrors() {
        let Merge::Changed(text) = merge(None, &m(&["https://a.example"])) else { panic!() };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({"registry-mirrors": ["https://a.example"]})
        );
    }

    #[test]
    fn merging_keeps_every_other_key_and_existing_mirrors() {
        let existing = r#"{"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "registry-mirrors": ["https://old.example"]}"#;
        let Merge::Changed(text) = merge(Some(existing), &m(&["https://old.example", "https://new.example"])) else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({
                "log-driver": "json-file",
                "log-opts": {"max-size": "10m"},
                "registry-mirrors": ["https://old.example", "https://new.example"]
            })
        );
        assert_eq!(merge(Some(&text), &m(&["https://new.example"])), Merge::Unchanged);
    }

    #[test]
    fn invalid_files_are_refused() {
        assert!(matches!(merge(Some("{not json"), &m(&["https://a.example"])), Merge::Invalid(_)));
        assert_eq!(
            merge(Some("[1, 2]"), &m(&["https://a.example"])),
            Merge::Invalid("expected a JSON object, found an array".into())
        );
        assert_eq!(
            merge(Some(r#"{"registry-mirrors": "https://x"}"#), &m(&["https://a.example"])),
            Merge::Invalid("\"registry-mirrors\" is a string, expected an array".into())
        );
    }
}
