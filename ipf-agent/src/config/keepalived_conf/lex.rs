//! Lexing (keepalived's rules: comments, quotes, braces, continuations, `include` with globs) and
//! the tree of keyword lines and blocks the reader walks.

use std::path::{Path, PathBuf};

use super::ConfError;

/// Where a token comes from: an index into the reader's file names, and a 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) file: usize,
    pub(super) line: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) loc: Loc,
}

#[derive(Clone, Debug)]
pub(super) enum Tok {
    Word(Word),
    Open(Loc),
    Close(Loc),
    /// End of a line: a keyword's values never continue past it.
    Eol,
}

/// One line's tokens before they get a location.
pub(super) enum LineTok {
    /// `quoted`: written in double quotes, so never an `include` or a conditional.
    Word {
        text: String,
        quoted: bool,
    },
    Open,
    Close,
}

/// Deepest `include` chain followed (keepalived's own limit is of the same order); deeper is taken
/// for a loop.
pub(super) const MAX_INCLUDE_DEPTH: usize = 8;
/// Deepest `{` nesting accepted: keepalived's grammar needs three levels; this bounds the recursion.
pub(super) const MAX_NESTING: usize = 16;

pub(super) struct Reader {
    /// Names of the files read, as shown in messages; `Loc::file` indexes it.
    pub(super) files: Vec<String>,
    /// File system paths of the files read, for resolving their includes (`None`: text given to
    /// `parse`).
    pub(super) paths: Vec<Option<PathBuf>>,
    pub(super) tokens: Vec<Tok>,
    /// Messages with their place, sorted by it at the end (instances are completed after reading).
    pub(super) warnings: Vec<(Loc, String)>,
}

/// Splits one logical line into words and braces, dropping its comment.
pub(super) fn tokenize_line(line: &str) -> Result<Vec<LineTok>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<LineTok>| {
        if !word.is_empty() {
            out.push(LineTok::Word {
                text: std::mem::take(word),
                quoted: false,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '!' | '#' => break,
            '{' => {
                flush(&mut word, &mut out);
                out.push(LineTok::Open);
            }
            '}' => {
                flush(&mut word, &mut out);
                out.push(LineTok::Close);
            }
            '"' => {
                // keepalived ends a word at a quote and takes the quoted text as the next word.
                flush(&mut word, &mut out);
                let mut text = String::new();
                let mut closed = false;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        // `\"` and `\\` stand for themselves; other escapes are left to the script's
                        // shell, as written.
                        '\\' if matches!(chars.peek(), Some('"' | '\\')) => {
                            if let Some(escaped) = chars.next() {
                                text.push(escaped);
                            }
                        }
                        other => text.push(other),
                    }
                }
                if !closed {
                    return Err(format!("unterminated quote in {:?}", line.trim()));
                }
                out.push(LineTok::Word { text, quoted: true });
            }
            // `\#` and `\!` are the characters themselves, not a comment (keepalived's escape).
            '\\' if matches!(chars.peek(), Some('#' | '!')) => {
                if let Some(escaped) = chars.next() {
                    word.push(escaped);
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

/// Whether `line` ends with an unescaped `\`: it continues on the next line.
pub(super) fn continues(line: &str) -> bool {
    line.trim_end().chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Matches a file name against a glob of `*` and `?`.
pub(super) fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

pub(super) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Reader {
    pub(super) fn new() -> Self {
        Reader {
            files: Vec::new(),
            paths: Vec::new(),
            tokens: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn error(&self, loc: Loc, message: impl Into<String>) -> ConfError {
        ConfError::At {
            path: self.files.get(loc.file).cloned().unwrap_or_default(),
            line: loc.line,
            message: message.into(),
        }
    }

    /// Where an earlier occurrence is, seen from `here`: `line N`, or `FILE:N` in another file.
    pub(super) fn first_at(&self, first: Loc, here: Loc) -> String {
        if first.file == here.file {
            format!("line {}", first.line)
        } else {
            format!(
                "{}:{}",
                self.files.get(first.file).map_or("", String::as_str),
                first.line
            )
        }
    }

    pub(super) fn warn(&mut self, loc: Loc, message: impl std::fmt::Display) {
        let path = self.files.get(loc.file).cloned().unwrap_or_default();
        self.warnings.push((loc, format!("{path}:{}: {message}", loc.line)));
    }

    /// Appends the tokens of one file; `chain` holds the canonical paths of the including files, to
    /// catch a file including itself.
    pub(super) fn lex_file(
        &mut self,
        shown: String,
        path: Option<PathBuf>,
        text: &str,
        chain: &[PathBuf],
    ) -> Result<(), ConfError> {
        let file = self.files.len();
        self.files.push(shown);
        self.paths.push(path);
        let mut physical = text.lines().enumerate();
        while let Some((index, first)) = physical.next() {
            let loc = Loc { file, line: index + 1 };
            let mut logical = first.to_owned();
            while continues(&logical) {
                let trimmed = logical.trim_end().len();
                logical.truncate(trimmed - 1);
                match physical.next() {
                    Some((_, next)) => {
                        logical.push(' ');
                        logical.push_str(next);
                    }
                    None => break,
                }
            }
            let tokens = tokenize_line(&logical).map_err(|m| self.error(loc, m))?;
            if let Some(LineTok::Word { text, quoted: false }) = tokens.first() {
                if text == "include" {
                    self.include(loc, &tokens[1..], chain)?;
                    continue;
                }
                if text.starts_with('@') {
                    return Err(self.error(
                        loc,
                        format!("conditional line {text:?}: keepalived's @name configuration ids are not supported"),
                    ));
                }
                if text.starts_with('$') && text.contains('=') {
                    return Err(self.error(
                        loc,
                        format!("definition {text:?}: keepalived's $NAME=value definitions are not supported"),
                    ));
                }
            }
            for t in tokens {
                self.tokens.push(match t {
                    LineTok::Word { text, .. } => Tok::Word(Word { text, loc }),
                    LineTok::Open => Tok::Open(loc),
                    LineTok::Close => Tok::Close(loc),
                });
            }
            self.tokens.push(Tok::Eol);
        }
        Ok(())
    }

    pub(super) fn include(&mut self, loc: Loc, args: &[LineTok], chain: &[PathBuf]) -> Result<(), ConfError> {
        let pattern = match args {
            [LineTok::Word { text, .. }] => text.clone(),
            [] => return Err(self.error(loc, "include: missing file name")),
            _ => return Err(self.error(loc, "include: takes one file name (a glob for several files)")),
        };
        let Some(including) = self.paths.get(loc.file).cloned().flatten() else {
            return Err(self.error(
                loc,
                format!("include {pattern:?}: includes are only followed when the configuration is read from a file"),
            ));
        };
        if chain.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.error(
                loc,
                format!("include {pattern:?}: more than {MAX_INCLUDE_DEPTH} nested includes (a loop?)"),
            ));
        }
        let base = including.parent().map(Path::to_path_buf).unwrap_or_default();
        let target = base.join(&pattern);
        let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
        if has_glob(&dir.to_string_lossy()) {
            return Err(self.error(
                loc,
                format!("include {pattern:?}: globs are supported in the file name only, not in directories"),
            ));
        }
        let files = match target.file_name().map(|n| n.to_string_lossy().into_owned()) {
            Some(name) if has_glob(&name) => {
                if name.contains('[') {
                    return Err(self.error(
                        loc,
                        format!("include {pattern:?}: only the glob characters * and ? are supported"),
                    ));
                }
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| self.error(loc, format!("include {pattern:?}: cannot list {}: {e}", dir.display())))?;
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| glob_match(&name, n))
                    .collect();
                names.sort();
                if names.is_empty() {
                    return Err(self.error(loc, format!("include {pattern:?}: no file matches")));
                }
                names.into_iter().map(|n| dir.join(n)).collect()
            }
            _ => vec![target],
        };
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.error(loc, format!("include {pattern:?}: cannot read {}: {e}", path.display())))?;
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if chain.contains(&canonical) {
                return Err(self.error(loc, format!("include {pattern:?}: {} includes itself", path.display())));
            }
            let mut nested = chain.to_vec();
            nested.push(canonical);
            // The included file's own includes resolve against its directory.
            self.lex_file(path.display().to_string(), Some(path.clone()), &text, &nested)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// Blocks

/// A keyword line with its values and, if a `{` follows, its block.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) words: Vec<Word>,
    pub(super) block: Option<Vec<Node>>,
}

impl Node {
    pub(super) fn keyword(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    pub(super) fn loc(&self) -> Loc {
        self.words.first().map_or(Loc { file: 0, line: 0 }, |w| w.loc)
    }

    pub(super) fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The values joined as written, for messages.
    pub(super) fn value_text(&self) -> String {
        self.args()
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value line (`192.0.2.1/24 dev eth0`) as written, for messages and `parse_vip`.
pub(super) fn line_text(node: &Node) -> String {
    node.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ")
}

/// `keyword "values"` for messages, or just the keyword when it has none.
pub(super) fn shown(node: &Node) -> String {
    let value = node.value_text();
    if value.is_empty() {
        node.keyword().to_owned()
    } else {
        format!("{} {value:?}", node.keyword())
    }
}

impl Reader {
    pub(super) fn build_tree(&self) -> Result<Vec<Node>, ConfError> {
        let mut pos = 0;
        self.nodes_until_close(&mut pos, None, 0)
    }

    pub(super) fn nodes_until_close(
        &self,
        pos: &mut usize,
        open: Option<Loc>,
        depth: usize,
    ) -> Result<Vec<Node>, ConfError> {
        let mut nodes = Vec::new();
        loop {
            match self.tokens.get(*pos) {
                None => {
                    return match open {
                        Some(loc) => Err(self.error(loc, "\"{\" is never closed (a \"}\" is missing)")),
                        None => Ok(nodes),
                    };
                }
                Some(Tok::Eol) => *pos += 1,
                Some(Tok::Close(loc)) => {
                    *pos += 1;
                    return match open {
                        Some(_) => Ok(nodes),
                        None => Err(self.error(*loc, "unexpected \"}\": no block is open")),
                    };
                }
                Some(Tok::Open(loc)) => {
                    return Err(self.error(*loc, "unexpected \"{\": a block must follow a keyword"));
                }
                Some(Tok::Word(_)) => {
                    let mut words = Vec::new();
                    while let Some(Tok::Word(w)) = self.tokens.get(*pos) {
                        words.push(w.clone());
                        *pos += 1;
                    }
                    // keepalived accepts the `{` on the line after the keyword.
                    let mut ahead = *pos;
                    while matches!(self.tokens.get(ahead), Some(Tok::Eol)) {
                        ahead += 1;
                    }
                    let block = match self.tokens.get(ahead) {
                        Some(Tok::Open(loc)) => {
                            if depth + 1 > MAX_NESTING {
                                return Err(self.error(*loc, "blocks nested too deeply"));
                            }
                            *pos = ahead + 1;
                            Some(self.nodes_until_close(pos, Some(*loc), depth + 1)?)
                        }
                        _ => None,
                    };
                    nodes.push(Node { words, block });
                }
            }
        }
    }
}
