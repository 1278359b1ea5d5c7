//! Reading the operator's TOML files (mappings, configuration) with errors that say
//! `file:line:column: reason`, so that a bad file stops start-up pointing at the fault.

use std::path::Path;

/// A file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {reason}")]
pub struct FileError {
    /// The file, as named to the loader.
    pub file: String,
    /// 1-based line of the offending value (1 when the fault is the whole file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub reason: String,
}

/// A file's name (for errors) and its text.
pub type Source<'a> = (&'a str, &'a str);

/// Read a whole file as UTF-8, the error naming it.
pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        reason: format!("cannot read: {e}"),
    })
}

/// An error at byte `offset` of `src`.
pub fn error_at(src: Source<'_>, offset: usize, reason: impl Into<String>) -> FileError {
    let (line, column) = crate::wire::text::line_col(src.1.as_bytes(), offset);
    FileError {
        file: src.0.to_string(),
        line,
        column,
        reason: reason.into(),
    }
}

/// Deserialize `src`; a syntax or schema fault becomes a [`FileError`] at its position.
pub fn parse_toml<T: serde::de::DeserializeOwned>(src: Source<'_>) -> Result<T, FileError> {
    toml::from_str(src.1).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        // The toml error's own text repeats the source excerpt over several lines: keep its
        // first line, the reason.
        let reason = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        error_at(src, offset, reason)
    })
}
