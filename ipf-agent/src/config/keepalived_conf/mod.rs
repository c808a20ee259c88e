//! keepalived.conf front end: reads the subset of keepalived's configuration language that the
//! ipfailover and arcts/keepalived images generate and that their users commonly hand-write
//! (compat-contract.md, "keepalived.conf subset") into the typed [`Config`], and writes a [`Config`]
//! back as keepalived.conf laid out like the ipfailover image's generated file, so users can diff the
//! old image's file against ipf's.
//!
//! Lexing follows keepalived: `!` and `#` start a comment anywhere outside double quotes, `{` and `}`
//! are tokens wherever they stand, a double-quoted string is one word, a line ending in `\` continues
//! on the next one, and a block's `{` may be on the line after its keyword. Every error names the file,
//! the line, the keyword and the offending value. Keywords outside the supported set are errors, except
//! those known to be harmless (mail, SNMP, process tuning...), which are accepted with a warning in
//! [`Config::warnings`].
//!
//! Where keepalived silently adjusts a combination (priority 255 without `state`, `nopreempt` with
//! `state MASTER`, authentication in VRRPv3...), the model gets what keepalived would run and a warning
//! says so.

mod instance;
mod keywords;
mod lex;
mod read;
mod render;

use std::path::Path;

use lex::Reader;
pub use read::KUBE_APISERVER_SCRIPT;
pub use render::{RENDER_DEFAULT_NODE, render};

use crate::config::Config;

/// A keepalived.conf that cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// A problem at a line of the file (or of a file it includes).
    #[error("{path}:{line}: {message}")]
    At { path: String, line: usize, message: String },
    /// The file given to [`parse_file`] cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a keepalived.conf given as text; `path` is only used in messages. `include` needs the file
/// system: use [`parse_file`].
pub fn parse(text: &str, path: &str) -> Result<Config, ConfError> {
    let mut reader = Reader::new();
    reader.lex_file(path.to_owned(), None, text, &[])?;
    reader.finish()
}

/// Reads a keepalived.conf from `path`, following `include` lines: a relative path is taken from the
/// including file's directory, and the last component may be a glob (`*`, `?`); the matches are read
/// in name order and a pattern matching nothing is an error.
pub fn parse_file(path: &Path) -> Result<Config, ConfError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut reader = Reader::new();
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    reader.lex_file(shown, Some(path.to_path_buf()), &text, &[canonical])?;
    reader.finish()
}

#[cfg(test)]
mod tests;
