//! The build context sent to the engine: the context directory packed as a
//! tar, without what its `.dockerignore` excludes and without the files the
//! agent names (the env files: access keys must not reach a layer). The
//! `.dockerignore` rules are Docker's own (docs/build-context.md).

use std::fs::File;
use std::io::Seek;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use regex_lite::Regex;

/// One `.dockerignore` line.
#[derive(Debug)]
struct Pattern {
    regex: Regex,
    /// A `!` line: re-includes what earlier lines excluded.
    exception: bool,
}

/// The rules of a `.dockerignore` file: a path is excluded when the last
/// line that matches it, or one of its parent directories, is not a `!` line.
#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Reads `.dockerignore` text; an error names the line.
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let regex = Regex::new(&to_regex(&cleaned))
                .map_err(|e| format!("line {}: {pattern:?} is not a valid pattern: {e}", i + 1))?;
            patterns.push(Pattern { regex, exception });
        }
        Ok(Ignore { patterns })
    }

    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel` (a path relative to the context, `/`-separated) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if p.exception != excluded {
                // Only a line that would change the answer matters.
                continue;
            }
            if matches_or_parent(&p.regex, rel) {
                excluded = !p.exception;
            }
        }
        excluded
    }
}

/// Whether `rel` or one of its parent directories matches.
fn matches_or_parent(regex: &Regex, rel: &str) -> bool {
    if regex.is_match(rel) {
        return true;
    }
    rel.match_indices('/').any(|(i, _)| regex.is_match(&rel[..i]))
}

/// A pattern as Go's `filepath.Clean` leaves it, without a leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Docker's pattern syntax (Go's `filepath.Match`, plus `**` for any number
/// of directories) as an anchored regular expression.
fn to_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/`: zero or more directories.
                    out.push_str("(.*/)?");
                    i += 1;
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                // A character class, `^` or `!` negating; copied up to `]`.
                let mut j = i + 1;
                let mut class = String::from("[");
                if matches!(chars.get(j), Some('^') | Some('!')) {
                    class.push('^');
                    j += 1;
                }
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' if j + 1 < chars.len() => {
                            class.push('\\');
                            class.push(chars[j + 1]);
                            j += 1;
                        }
                        '[' => class.push_str("\\["),
                        ch => class.push(ch),
                    }
                    j += 1;
                }
                if closed {
                    out.push_str(&class);
                    out.push(']');
                    i = j;
                } else {
                    out.push_str("\\[");
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex_lite::escape(&chars[i].to_string()));
            }
            c => out.push_str(&regex_lite::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    out
}

/// What went into a packed context.
#[derive(Debug, Default, PartialEq)]
pub struct Packed {
    pub files: usize,
    /// Paths left out by `.dockerignore`.
    pub ignored: usize,
    /// Paths left out because the agent names them (env files).
    pub withheld: Vec<String>,
}

/// Packs `context` into a temporary tar file: every entry except what its
/// `.dockerignore` excludes (the Dockerfile is always sent, as Docker
/// sends it) and except `withhold` (absolute paths).
pub fn pack(context: &Path, dockerfile: &str, withhold: &[PathBuf]) -> Result<(File, Packed)> {
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => {
            Ignore::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", context.join(".dockerignore").display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", context.join(".dockerignore").display())),
    };
    let withheld: Vec<String> = withhold
        .iter()
        .filter_map(|p| p.strip_prefix(context).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let dockerfile = clean(dockerfile);
    let mut file = tempfile::tempfile().context("creating a temporary file for the build context")?;
    let mut packed = Packed::default();
    {
        let mut builder = tar::Builder::new(&mut file);
        builder.follow_symlinks(false);
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let full = if dir.is_empty() { context.to_path_buf() } else { context.join(&dir) };
            let mut entries: Vec<_> = std::fs::read_dir(&full)
                .with_context(|| format!("reading {}", full.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading {}", full.display()))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
                let path = entry.path();
                if withheld.contains(&rel) {
                    packed.withheld.push(rel);
                    continue;
                }
                let is_dir = entry.file_type()?.is_dir();
                if rel != dockerfile && ignore.excluded(&rel) {
                    packed.ignored += 1;
                    // An excluded directory may still hold a `!` exception.
                    if is_dir && ignore.has_exceptions() {
                        stack.push(rel);
                    }
                    continue;
                }
                if is_dir {
                    builder.append_dir(&rel, &path).with_context(|| format!("packing {}", path.display()))?;
                    stack.push(rel);
                } else {
                    builder
                        .append_path_with_name(&path, &rel)
                        .with_context(|| format!("packing {}", path.display()))?;
                    packed.files += 1;
                }
            }
        }
        builder.finish()?;
    }
    if packed.files == 0 {
        bail!("the build context {} is empty after .dockerignore", context.display());
    }
    file.rewind()?;
    Ok((file, packed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn patterns_follow_dockers_rules() {
        let i = ignore("# comment\n\n*.md\n!README.md\ntemp?\n/secret\n**/*.pyc\ndata/**\n!data/keep/**\n");
        assert!(i.excluded("notes.md"));
        assert!(!i.excluded("README.md"));
        assert!(!i.excluded("docs/notes.md"), "* does not cross directories");
        assert!(i.excluded("temp1") && !i.excluded("temp12"));
        assert!(i.excluded("secret") && i.excluded("secret/key"), "a directory excludes what it holds");
        assert!(i.excluded("a.pyc") && i.excluded("x/y/z.pyc"));
        assert!(i.excluded("data/big.csv"));
        assert!(!i.excluded("data/keep/small.csv"));
        assert!(!i.excluded("Dockerfile"));
    }

    #[test]
    fn classes_escapes_and_cleaning() {
        let i = ignore("f[0-9].txt\nb[!a]r\nweird\\*name\n./x/../y\n");
        assert!(i.excluded("f1.txt") && !i.excluded("fa.txt"));
        assert!(i.excluded("bor") && !i.excluded("bar"));
        assert!(i.excluded("weird*name") && !i.excluded("weirdXname"));
        assert!(i.excluded("y") && !i.excluded("x"));
        // A regex character in a pattern is literal.
        let i = ignore("a.b\n(c)\n");
        assert!(i.excluded("a.b") && !i.excluded("axb") && i.excluded("(c)"));
    }

    #[test]
    fn a_context_is_packed_without_ignored_and_withheld_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM x\n").unwrap();
        std::fs::write(root.join(".dockerignore"), "private\n!private/keep.txt\nDockerfile\n").unwrap();
        std::fs::create_dir_all(root.join("private")).unwrap();
        std::fs::write(root.join("private/key.txt"), "k").unwrap();
        std::fs::write(root.join("private/keep.txt"), "kept").unwrap();
        std::fs::write(root.join("env"), "SECRET=x").unwrap();
        std::fs::write(root.join("app.py"), "print()").unwrap();
        let (file, packed) = pack(root, "Dockerfile", &[root.join("env"), PathBuf::from("/elsewhere/env")]).unwrap();
        assert_eq!(packed.withheld, ["env"]);
        let mut names: Vec<String> = tar::Archive::new(file)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "app.py", "private/keep.txt"]);
    }
}
