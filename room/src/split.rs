//! `split`: a room larger than one stack becomes several stacks of the room
//! template, and this prints one `aliyun ros CreateStack` command per stack.
//!
//! One stack of `userdata/room.yml` holds at most 30 participants (ROS
//! allows 200 resources per stack, and the room keeps a margin below it:
//! docs/room.md, "How large a room one stack holds"). The names are checked
//! as the template's Participants pattern checks them (a lowercase letter,
//! then up to 19 lowercase letters or digits; each once), split into groups as even as they can be (70 names:
//! 24, 23, 23), and each group gets a command with the same parameters, its
//! own `Participants` and its own stack name. Nothing is run and no cloud
//! account is needed: the organiser reviews the commands, then runs them.

/// The most participants one stack of the room template holds.
pub const MAX_PER_STACK: i64 = 30;

/// Why the input was refused: the message after `jupyter-room: `.
pub type Refusal = String;

/// What to split and how to name the stacks; the command line's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--participants`: comma-separated names.
    pub participants: Option<String>,
    /// `--participants-file`, as named and as read: names one per line or
    /// comma-separated, `#` starting a comment.
    pub participants_file: Option<(String, String)>,
    pub per_stack: i64,
    pub stack_name: String,
    pub region: String,
    /// The template's path, read by the shell that runs the commands.
    pub template: String,
    /// `--param KEY=VALUE`, the same for every stack, in the order given.
    pub params: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            participants: None,
            participants_file: None,
            per_stack: MAX_PER_STACK,
            stack_name: "handson-room".into(),
            region: "cn-hangzhou".into(),
            template: "userdata/room.yml".into(),
            params: Vec::new(),
        }
    }
}

/// The options checked, in the order the command line lists them; the
/// template parameters as `(key, value)`.
pub fn check_options(o: &Options) -> Result<Vec<(String, String)>, Refusal> {
    if !(1..=MAX_PER_STACK).contains(&o.per_stack) {
        return Err(format!("--per-stack {}: expected 1 to {MAX_PER_STACK} (the most one stack holds)", o.per_stack));
    }
    if !is_stack_name(&o.stack_name) {
        return Err(format!("--stack-name {}: a letter first, then letters, digits, - or _", repr(&o.stack_name)));
    }
    if o.template.is_empty() || !o.template.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c)) {
        return Err(format!(
            "--template {}: a path of letters, digits, ., _, / and - (it goes into the command as $(cat PATH))",
            repr(&o.template)
        ));
    }
    let mut params = Vec::new();
    for p in &o.params {
        match p.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                if key == "Participants" {
                    return Err("--param Participants: split sets it per stack; give --participants".into());
                }
                params.push((key.to_string(), value.to_string()));
            }
            _ => return Err(format!("--param {}: expected KEY=VALUE", repr(p))),
        }
    }
    Ok(params)
}

/// A letter, then up to 200 letters, digits, `-` or `_`.
fn is_stack_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 201
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A participant's name, as the room template's Participants pattern takes
/// it: it goes into resource and bucket names, and is the signal's id, which
/// ROS would take for an integer id were it all digits.
fn is_name(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The names from `--participants` then the file, blanks dropped, checked:
/// the pattern (the first five offenders named), then each once.
pub fn names(o: &Options) -> Result<Vec<String>, Refusal> {
    let mut names: Vec<String> = Vec::new();
    if let Some(list) = &o.participants {
        names.extend(list.split(',').map(|n| n.trim().to_string()));
    }
    if let Some((_, text)) = &o.participants_file {
        for line in text.split(is_line_break) {
            let line = line.split('#').next().unwrap_or_default();
            names.extend(line.split(',').map(|n| n.trim().to_string()));
        }
    }
    names.retain(|n| !n.is_empty());
    if names.is_empty() {
        return Err("no participants: give --participants a,b,c or --participants-file FILE".into());
    }
    let bad: Vec<String> = names.iter().filter(|n| !is_name(n)).take(5).map(|n| repr(n)).collect();
    if !bad.is_empty() {
        return Err(format!(
            "participant names must be a lowercase letter then up to 19 lowercase letters or digits (they go into resource and \
             bucket names): {}",
            bad.join(", ")
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut dupes: Vec<&str> = names.iter().filter(|n| !seen.insert(n.as_str())).map(String::as_str).collect();
    if !dupes.is_empty() {
        dupes.sort_unstable();
        dupes.dedup();
        return Err(format!(
            "each participant once (the name is their key in the room's output): {} more than once",
            dupes.join(", ")
        ));
    }
    Ok(names)
}

/// The line breaks a text file may hold (Python's `str.splitlines`, which
/// the earlier script used): `\r\n` leaves an empty line, which is dropped.
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// As few groups as `per_stack` allows, their sizes differing by at most
/// one, the larger first; every name once, in order.
pub fn groups(names: &[String], per_stack: usize) -> Vec<&[String]> {
    if names.is_empty() {
        return Vec::new();
    }
    let count = names.len().div_ceil(per_stack);
    let (size, extra) = (names.len() / count, names.len() % count);
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for i in 0..count {
        let end = start + size + usize::from(i < extra);
        out.push(&names[start..end]);
        start = end;
    }
    out
}

/// Everything `split` prints: per stack, a comment line and the command.
pub fn plan(o: &Options) -> Result<String, Refusal> {
    let params = check_options(o)?;
    let names = names(o)?;
    let per_stack = usize::try_from(o.per_stack).expect("checked: 1 to 30");
    let mut out = String::new();
    for (i, group) in groups(&names, per_stack).into_iter().enumerate() {
        let i = i + 1;
        let mut words: Vec<String> = [
            "aliyun",
            "ros",
            "CreateStack",
            "--RegionId",
            &o.region,
            "--StackName",
            &format!("{}-{i}", o.stack_name),
            "--TimeoutInMinutes",
            "90",
            "--TemplateBody",
        ]
        .iter()
        .map(|w| shell_quote(w))
        .collect();
        // The template body is read by the shell that runs the command; the
        // path was checked to hold no character the shell would act on.
        words.push(format!("\"$(cat {})\"", o.template));
        let participants = ("Participants".to_string(), group.join(","));
        for (n, (key, value)) in std::iter::once(&participants).chain(&params).enumerate() {
            let n = n + 1;
            words.push(format!("--Parameters.{n}.ParameterKey"));
            words.push(shell_quote(key));
            words.push(format!("--Parameters.{n}.ParameterValue"));
            words.push(shell_quote(value));
        }
        out.push_str(&format!(
            "# stack {i}: {} participants ({} .. {})\n",
            group.len(),
            group[0],
            group[group.len() - 1]
        ));
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    Ok(out)
}

/// A word as a POSIX shell reads it back unchanged, as Python's
/// `shlex.quote` writes it: as it is when it holds only letters, digits and
/// `_@%+=:,./-`, else in single quotes (a `'` inside becomes `'"'"'`).
pub fn shell_quote(word: &str) -> String {
    if word.is_empty() {
        return "''".into();
    }
    if word.chars().all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)) {
        return word.into();
    }
    format!("'{}'", word.replace('\'', r#"'"'"'"#))
}

/// A refused value as the message shows it: quoted, its control characters
/// escaped, as Python's `repr` writes a string (the earlier script's
/// messages did).
fn repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || ('\x7f'..='\u{a0}').contains(&c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(participants: &str) -> Options {
        Options { participants: Some(participants.into()), ..Options::default() }
    }

    fn numbered(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    #[test]
    fn groups_are_as_even_as_they_can_be() {
        for (names, per_stack, sizes) in [
            (1, 30, &[1][..]),
            (30, 30, &[30]),
            (31, 30, &[16, 15]),
            (60, 30, &[30, 30]),
            (61, 30, &[21, 20, 20]),
            (70, 30, &[24, 23, 23]),
            (200, 30, &[29, 29, 29, 29, 28, 28, 28]),
            (5, 2, &[2, 2, 1]),
            (3, 1, &[1, 1, 1]),
        ] {
            let all = numbered(names);
            let got = groups(&all, per_stack);
            let got_sizes: Vec<usize> = got.iter().map(|g| g.len()).collect();
            assert_eq!(got_sizes, sizes, "{names} names, {per_stack} per stack");
            assert_eq!(got.concat(), all, "every name once, in order");
        }
        assert!(groups(&[], 30).is_empty());
    }

    #[test]
    fn the_commands_for_a_room_of_three_with_two_per_stack() {
        let o = Options { per_stack: 2, params: vec!["ZoneId=cn-hangzhou-h".into()], ..with("alice, bob,carol") };
        assert_eq!(
            plan(&o).unwrap(),
            "\
# stack 1: 2 participants (alice .. bob)
aliyun ros CreateStack --RegionId cn-hangzhou --StackName handson-room-1 --TimeoutInMinutes 90 \
--TemplateBody \"$(cat userdata/room.yml)\" \
--Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue alice,bob \
--Parameters.2.ParameterKey ZoneId --Parameters.2.ParameterValue cn-hangzhou-h
# stack 2: 1 participants (carol .. carol)
aliyun ros CreateStack --RegionId cn-hangzhou --StackName handson-room-2 --TimeoutInMinutes 90 \
--TemplateBody \"$(cat userdata/room.yml)\" \
--Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue carol \
--Parameters.2.ParameterKey ZoneId --Parameters.2.ParameterValue cn-hangzhou-h
"
        );
    }

    #[test]
    fn seventy_names_make_three_stacks_of_24_23_23() {
        let all = numbered(70);
        let printed = plan(&with(&all.join(","))).unwrap();
        let comments: Vec<&str> = printed.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            comments,
            [
                "# stack 1: 24 participants (p0 .. p23)",
                "# stack 2: 23 participants (p24 .. p46)",
                "# stack 3: 23 participants (p47 .. p69)",
            ]
        );
    }

    #[test]
    fn parameter_values_are_shell_quoted_and_nothing_else_runs() {
        let o = Options {
            stack_name: "room_B".into(),
            region: "cn-shanghai".into(),
            template: "../room.yml".into(),
            params: vec!["RootPassword=it's $(secret)".into(), "Empty=".into(), "Cmd=$(cat /etc/passwd)".into()],
            ..with("a")
        };
        let printed = plan(&o).unwrap();
        let command = printed.lines().nth(1).unwrap();
        assert_eq!(
            command,
            "aliyun ros CreateStack --RegionId cn-shanghai --StackName room_B-1 --TimeoutInMinutes 90 \
             --TemplateBody \"$(cat ../room.yml)\" \
             --Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue a \
             --Parameters.2.ParameterKey RootPassword --Parameters.2.ParameterValue 'it'\"'\"'s $(secret)' \
             --Parameters.3.ParameterKey Empty --Parameters.3.ParameterValue '' \
             --Parameters.4.ParameterKey Cmd --Parameters.4.ParameterValue '$(cat /etc/passwd)'"
        );
    }

    #[test]
    fn shell_quote_writes_what_pythons_shlex_quote_writes() {
        for (word, quoted) in [
            ("", "''"),
            ("alice,bob", "alice,bob"),
            ("a_b@c%d+e=f:g,h.i/j-k", "a_b@c%d+e=f:g,h.i/j-k"),
            ("two words", "'two words'"),
            ("it's", r#"'it'"'"'s'"#),
            ("$HOME", "'$HOME'"),
            ("张伟", "'张伟'"),
        ] {
            assert_eq!(shell_quote(word), quoted, "{word:?}");
        }
    }

    #[test]
    fn names_come_from_the_list_and_the_file_comments_and_blanks_dropped() {
        let o = Options {
            participants: Some(" alice ,,bob".into()),
            participants_file: Some((
                "room.txt".into(),
                "# the morning group\ncarol, dave # late\r\n\n  erin\x0cfrank\n".into(),
            )),
            ..Options::default()
        };
        assert_eq!(names(&o).unwrap(), ["alice", "bob", "carol", "dave", "erin", "frank"]);
    }

    #[test]
    fn refusals_name_the_option_or_the_names() {
        let names_rule =
            "participant names must be a lowercase letter then up to 19 lowercase letters or digits (they \
                          go into resource and bucket names)";
        for (o, message) in [
            (with(""), "no participants: give --participants a,b,c or --participants-file FILE".to_string()),
            (with(" , ,"), "no participants: give --participants a,b,c or --participants-file FILE".into()),
            (with("alice,Bob"), format!("{names_rule}: 'Bob'")),
            (with("alice,1bob,42"), format!("{names_rule}: '1bob', '42'")),
            (with("a-b,c d,x\ny,it's,abcdefghijklmnopqrstu,e,f"), format!(
                "{names_rule}: 'a-b', 'c d', 'x\\ny', \"it's\", 'abcdefghijklmnopqrstu'"
            )),
            (with("alice,bob,alice,carol,bob,alice"), "each participant once (the name is their key in the room's output): alice, bob more than once".into()),
            (Options { per_stack: 0, ..with("a") }, "--per-stack 0: expected 1 to 30 (the most one stack holds)".into()),
            (Options { per_stack: 31, ..with("a") }, "--per-stack 31: expected 1 to 30 (the most one stack holds)".into()),
            (Options { stack_name: "1room".into(), ..with("a") }, "--stack-name '1room': a letter first, then letters, digits, - or _".into()),
            (Options { stack_name: "room 1".into(), ..with("a") }, "--stack-name 'room 1': a letter first, then letters, digits, - or _".into()),
            (Options { stack_name: format!("r{}", "x".repeat(201)), ..with("a") }, format!("--stack-name 'r{}': a letter first, then letters, digits, - or _", "x".repeat(201))),
            (Options { template: "room.yml; rm -rf ~".into(), ..with("a") }, "--template 'room.yml; rm -rf ~': a path of letters, digits, ., _, / and - (it goes into the command as $(cat PATH))".into()),
            (Options { template: "".into(), ..with("a") }, "--template '': a path of letters, digits, ., _, / and - (it goes into the command as $(cat PATH))".into()),
            (Options { params: vec!["ZoneId".into()], ..with("a") }, "--param 'ZoneId': expected KEY=VALUE".into()),
            (Options { params: vec!["=x".into()], ..with("a") }, "--param '=x': expected KEY=VALUE".into()),
            (Options { params: vec!["Participants=a,b".into()], ..with("a") }, "--param Participants: split sets it per stack; give --participants".into()),
            // The options are checked before the names.
            (Options { per_stack: 0, ..with("Bad") }, "--per-stack 0: expected 1 to 30 (the most one stack holds)".into()),
        ] {
            assert_eq!(plan(&o), Err(message), "{o:?}");
        }
        let longest = "r".repeat(201);
        assert!(plan(&Options { stack_name: longest, ..with("a") }).is_ok(), "201 characters is the most");
    }

    #[test]
    fn repr_quotes_as_python_does() {
        for (s, shown) in [
            ("Bob", "'Bob'"),
            ("it's", "\"it's\""),
            ("both ' and \"", "'both \\' and \"'"),
            ("tab\tbell\x07del\x7f", "'tab\\tbell\\x07del\\x7f'"),
            ("back\\slash", "'back\\\\slash'"),
            ("张伟", "'张伟'"),
        ] {
            assert_eq!(repr(s), shown, "{s:?}");
        }
    }
}
