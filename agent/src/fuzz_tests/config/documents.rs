//! Whole TOML documents from the real tables and keys, styled and damaged.

use super::*;

/// How a table is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Style {
    /// `[docker]` and its keys below.
    Header,
    /// `docker = { ... }` at the top.
    Inline,
    /// `docker.key = ...` at the top.
    Dotted,
    /// `[[docker]]`: an array of tables.
    Array,
}

pub(super) fn style() -> BoxedStrategy<Style> {
    prop_oneof![
        40 => Just(Style::Header),
        2 => Just(Style::Inline),
        2 => Just(Style::Dotted),
        1 => Just(Style::Array),
    ]
    .boxed()
}

/// A table present in the document: its name, how it is written, its
/// lines, and its sub-tables (`[container.env]`, `[image.build]`).
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) name: String,
    pub(super) style: Style,
    pub(super) lines: Vec<String>,
    pub(super) subs: Vec<Table>,
}

impl Table {
    /// Renders the table: headers and what follows them go `below`; an
    /// inline or dotted table goes where its parent's keys are (`here`).
    pub(super) fn render(&self, prefix: &str, here: &mut Vec<String>, below: &mut Vec<String>) {
        let name = format!("{prefix}{}", self.name);
        match self.style {
            Style::Header | Style::Array => {
                let header = if self.style == Style::Array { format!("[[{name}]]") } else { format!("[{name}]") };
                let mut own = self.lines.clone();
                let mut after = Vec::new();
                for sub in &self.subs {
                    sub.render(&format!("{name}."), &mut own, &mut after);
                }
                below.push(header);
                below.extend(own);
                below.extend(after);
            }
            Style::Inline | Style::Dotted => here.extend(self.key_lines()),
        }
    }

    /// The table as keys of its parent: `name = { ... }` or `name.key = ...`.
    pub(super) fn key_lines(&self) -> Vec<String> {
        let mut items = self.lines.clone();
        items.extend(self.subs.iter().flat_map(Table::key_lines));
        if self.style == Style::Dotted {
            items.iter().map(|l| format!("{}.{l}", self.name)).collect()
        } else {
            vec![format!("{} = {{ {} }}", self.name, items.join(", "))]
        }
    }
}

/// How a rendered document is then damaged, if at all.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    Insert { at: usize, text: &'static str },
    Delete { at: usize, len: usize },
    DuplicateLine { at: usize },
    Truncate { at: usize },
}

#[derive(Debug, Clone)]
pub(super) struct Document {
    pub(super) root: Vec<String>,
    pub(super) tables: Vec<Table>,
    pub(super) damage: Option<Damage>,
}

impl Document {
    pub(super) fn text(&self) -> String {
        let (mut top, mut below) = (self.root.clone(), Vec::new());
        for t in &self.tables {
            t.render("", &mut top, &mut below);
        }
        top.extend(below);
        let mut text = top.join("\n");
        text.push('\n');
        let at_char =
            |at: usize| text.char_indices().map(|(i, _)| i).nth(at % text.chars().count().max(1)).unwrap_or(0);
        match &self.damage {
            None => {}
            Some(Damage::Insert { at, text: s }) => {
                let i = at_char(*at);
                text.insert_str(i, s);
            }
            Some(Damage::Delete { at, len }) => {
                let i = at_char(*at);
                let end = text[i..].char_indices().nth(*len).map_or(text.len(), |(j, _)| i + j);
                text.replace_range(i..end, "");
            }
            Some(Damage::DuplicateLine { at }) => {
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[at % lines.len()].to_string();
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            Some(Damage::Truncate { at }) => {
                let i = at_char(*at);
                text.truncate(i);
            }
        }
        text
    }
}

/// Lines of `table`: each key in `keys` present with its probability, the
/// rest of its keys now and then, and rarely an unknown one.
pub(super) fn lines(table: &'static str, keys: &[(&str, f64)]) -> BoxedStrategy<Vec<String>> {
    // A key given 0 is left to the caller.
    let mut entries: Vec<BoxedStrategy<Option<String>>> =
        keys.iter().filter(|(_, p)| *p > 0.0).map(|(k, p)| entry(*p, table, k)).collect();
    for k in table_keys(table) {
        if !keys.iter().any(|(known, _)| *known == k) && !matches!(k.as_str(), "env" | "args" | "build") {
            entries.push(entry(0.3, table, &k));
        }
    }
    entries.push(weighted(0.02, (key_name(), any_value()).prop_map(|(k, v)| format!("{k} = {v}"))).boxed());
    entries.prop_map(|lines| lines.into_iter().flatten().collect()).boxed()
}

/// A variables sub-table (`env`, `args`), present with probability `p`.
pub(super) fn variables_table(p: f64, name: &'static str) -> BoxedStrategy<Option<Table>> {
    weighted(
        p,
        (style(), variables()).prop_map(move |(style, lines)| Table { name: name.into(), style, lines, subs: vec![] }),
    )
    .boxed()
}

pub(super) fn table(
    name: &'static str,
    lines: BoxedStrategy<Vec<String>>,
    subs: Vec<BoxedStrategy<Option<Table>>>,
) -> BoxedStrategy<Table> {
    (style(), lines, subs)
        .prop_map(move |(style, lines, subs)| Table {
            name: name.into(),
            style,
            lines,
            subs: subs.into_iter().flatten().collect(),
        })
        .boxed()
}

/// `[workspace]`: a tarball (source, sha256, maybe max_size) or a git
/// repository (source, ref), a path, maybe env_file and `[workspace.env]`;
/// now and then a key missing or one too many.
pub(super) fn workspace_table() -> BoxedStrategy<Table> {
    let tarball = lines(
        "workspace",
        &[
            ("source", 0.0),
            ("env", 0.0),
            ("sha256", 0.97),
            ("path", 0.97),
            ("env_file", 0.6),
            ("max_size", 0.3),
            ("ref", 0.02),
        ],
    );
    let git = lines(
        "workspace",
        &[
            ("source", 0.0),
            ("env", 0.0),
            ("ref", 0.97),
            ("path", 0.97),
            ("env_file", 0.6),
            ("max_size", 0.02),
            ("sha256", 0.02),
        ],
    );
    let tarball_source = prop_oneof![
        20 => strings(&["https://example.com/w.tar.gz", "http://10.0.0.1/w.tgz?x=1", "https://u:pw@example.com/w.zip"]),
        1 => value_for("workspace", "source"),
    ];
    let git_source = prop_oneof![
        20 => strings(&["https://github.com/o/r.git", "/srv/repo", "file:///srv/repo", "ssh://git@h/r", "git://h/r"]),
        1 => value_for("workspace", "source"),
    ];
    let with_source = |lines: BoxedStrategy<Vec<String>>, source: BoxedStrategy<String>| {
        (lines, weighted(0.97, source)).prop_map(|(mut lines, source)| {
            lines.extend(source.map(|s| format!("source = {s}")));
            lines
        })
    };
    let lines = prop_oneof![with_source(tarball, tarball_source.boxed()), with_source(git, git_source.boxed())];
    table("workspace", lines.boxed(), vec![variables_table(0.3, "env")])
}

/// `[image]`: exactly one of name (with pull), archive or build (with
/// tag), now and then none, two, or tag and pull where they do not go.
pub(super) fn image_table() -> BoxedStrategy<Table> {
    let build = table(
        "build",
        lines("image.build", &[("context", 0.97), ("dockerfile", 0.4)]),
        vec![variables_table(0.2, "args")],
    );
    let shapes = prop_oneof![
        10 => lines("image", &[("name", 1.0), ("pull", 0.4), ("tag", 0.02), ("archive", 0.02)]).prop_map(|l| (l, None)),
        5 => lines("image", &[("archive", 1.0), ("tag", 0.97), ("pull", 0.02), ("name", 0.02)]).prop_map(|l| (l, None)),
        5 => (lines("image", &[("tag", 0.97), ("pull", 0.02), ("name", 0.02), ("archive", 0.02)]), build)
            .prop_map(|(l, b)| (l, Some(b))),
        1 => lines("image", &[("name", 0.0), ("archive", 0.0), ("tag", 0.1), ("pull", 0.1)]).prop_map(|l| (l, None)),
    ];
    (style(), shapes)
        .prop_map(|(style, (lines, build))| Table {
            name: "image".into(),
            style,
            lines,
            subs: build.into_iter().collect(),
        })
        .boxed()
}

pub(super) fn document() -> BoxedStrategy<Document> {
    let root = lines("", &[("state_dir", 0.3), ("log_dir", 0.3), ("socket", 0.3), ("result_file", 0.3)]);
    let plain = |name: &'static str, p: f64, subs: Vec<BoxedStrategy<Option<Table>>>| {
        weighted(p, table(name, lines(name, &[]), subs)).boxed()
    };
    let tables: Vec<BoxedStrategy<Option<Table>>> = vec![
        plain("docker", 0.5, vec![]),
        weighted(0.4, workspace_table()).boxed(),
        weighted(0.97, image_table()).boxed(),
        plain("container", 0.5, vec![variables_table(0.2, "env")]),
        plain("jupyter", 0.5, vec![]),
        // Unknown tables.
        weighted(
            0.01,
            table(
                "extra",
                vec((key_name(), any_value()).prop_map(|(k, v)| format!("{k} = {v}")), 0..2).boxed(),
                vec![],
            ),
        )
        .boxed(),
    ];
    let damage = prop_oneof![
        (any::<usize>(), select(ODD)).prop_map(|(at, text)| Damage::Insert { at, text }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Damage::Delete { at, len }),
        any::<usize>().prop_map(|at| Damage::DuplicateLine { at }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
    ];
    (root, tables, weighted(0.05, damage))
        .prop_map(|(root, tables, damage)| Document { root, tables: tables.into_iter().flatten().collect(), damage })
        .boxed()
}
