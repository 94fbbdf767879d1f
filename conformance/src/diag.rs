//! Diagnostics: a problem in a scenario file, located by file, line and column.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// One problem found in a scenario file (syntax, shape or meaning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file as it was named to the loader.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Turns byte offsets of one text into lines and columns.
#[derive(Debug, Clone)]
pub struct Locator<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.char_indices()
                .filter(|(_, c)| *c == '\n')
                .map(|(at, _)| at.saturating_add(1)),
        );
        Locator {
            file,
            text,
            line_starts,
        }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset.saturating_sub(start), |prefix| {
                prefix.chars().count()
            });
        (line.saturating_add(1), column.saturating_add(1))
    }

    /// The span of the first occurrence of `needle` (the file's start when absent): for
    /// values decoded without spans.
    pub fn find(&self, needle: &str) -> Range<usize> {
        match self.text.find(needle) {
            Some(at) => at..at.saturating_add(needle.len()),
            None => 0..0,
        }
    }

    /// A diagnostic at the start of `span`.
    pub fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let locator = Locator::new("f.toml", "ab\n中文x\n\nz");
        assert_eq!(locator.position(0), (1, 1));
        assert_eq!(locator.position(3), (2, 1));
        assert_eq!(locator.position(9), (2, 3));
        assert_eq!(locator.position(11), (3, 1));
        assert_eq!(locator.position(12), (4, 1));
        assert_eq!(locator.position(999), (4, 2));
    }
}
