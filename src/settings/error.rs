//! Errors about an experiment file: always with file, line, column, the
//! offending key and, where one exists, a did-you-mean hint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use super::yaml::Span;

/// The text of an experiment file, shared by every error that points into it.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as the user gave it.
    pub path: PathBuf,
    /// Full text.
    pub text: String,
}

/// Longest snippet shown as it is; longer ones (a 10 MB line) are cut to
/// [`CLIP`] bytes either side of the span, on its line only: miette lays out
/// every character of a snippet, which takes seconds for megabytes.
const MAX_SNIPPET: usize = 16 * 1024;
const CLIP: usize = 60;

/// Lets miette show snippets of the file, headed by its path, without copying its text.
impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let name = self.path.display().to_string();
        let inner = self.text.read_span(span, before, after)?;
        if inner.data().len() <= MAX_SNIPPET {
            return Ok(Box::new(MietteSpanContents::new_named(
                name,
                inner.data(),
                *inner.span(),
                inner.line(),
                inner.column(),
                inner.line_count(),
            )));
        }
        let text = &self.text;
        let at = span.offset().min(text.len());
        let line_start = text[..floor_boundary(text, at)].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[floor_boundary(text, at)..].find('\n').map_or(text.len(), |i| at + i);
        let start = floor_boundary(text, at.saturating_sub(CLIP).max(line_start));
        let end = floor_boundary(text, (at + span.len().min(CLIP) + CLIP).min(line_end)).max(start);
        let line = text.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count();
        let column = text[line_start..start].chars().count();
        Ok(Box::new(MietteSpanContents::new_named(
            name,
            &text.as_bytes()[start..end],
            (start, end - start).into(),
            line,
            column,
            0,
        )))
    }
}

/// The largest char boundary of `text` at or before `i`.
fn floor_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem in an experiment file.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    /// The file and its text.
    pub file: Arc<SourceFile>,
    /// Where the problem is.
    pub span: Span,
    /// Dotted path of the offending key (`nodes.train.optim.lr`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl SpecError {
    /// An error at `span` in `source`.
    pub fn new(source: &Arc<SourceFile>, span: Span, message: impl Into<String>) -> Self {
        SpecError { file: source.clone(), span, key: None, message: message.into(), hint: None }
    }

    /// Names the offending key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a did-you-mean hint when one of `candidates` is close to `wrong`.
    pub fn did_you_mean<'a>(self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match closest(wrong, candidates) {
            Some(best) => self.hint(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// `path:line:col`.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file.path.display(), self.span.line, self.span.col)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location())?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl Diagnostic for SpecError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("scalemake::spec"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.file.as_ref())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = self.key.clone().map(|k| format!("`{k}`")).unwrap_or_else(|| "here".into());
        // A span as long as a 10 MB scalar is underlined for its first characters only.
        let text = &self.file.text;
        let offset = floor_boundary(text, self.span.offset);
        let len = floor_boundary(text, offset + self.span.len.min(CLIP)) - offset;
        Some(Box::new(std::iter::once(LabeledSpan::new(Some(label), offset, len))))
    }
}

/// Everything wrong with one load of an experiment file (at least one error).
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Why an experiment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read experiment file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read and has problems.
    #[error("{0}")]
    Spec(SpecErrors),
}

impl LoadError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LoadError::Io { path: path.to_path_buf(), source }
    }
}

impl From<SpecError> for LoadError {
    fn from(e: SpecError) -> Self {
        LoadError::Spec(SpecErrors(vec![e]))
    }
}

/// The candidate nearest to `wrong`, if it is plausibly a typo of it.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("lrr", ["lr", "seed", "optim"]), Some("lr"));
        assert_eq!(closest("tokenizr", ["corpus", "tokenizer"]), Some("tokenizer"));
        assert_eq!(closest("zzz", ["lr", "seed"]), None);
    }
}
