//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml throws positions away once a document is deserialised, but every
//! error scalemake reports about an experiment file must name file, line and
//! column. So the file is read with yaml-rust2's event parser into [`Node`]s
//! that carry a [`Span`]. Scalars are typed with the YAML 1.2 core schema
//! (`true`, `~`, `1e-3`, `0x10`, `1_000` …); quoted scalars are always strings.
//! Duplicate mapping keys are an error here (YAML says they are, most loaders
//! silently keep the last one).

use std::cell::Cell;
use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts in its file: 1-based line and column, and byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// Byte offset of the first character.
    pub offset: usize,
    /// Length in bytes of the node's first token (the whole scalar, or 1).
    pub len: usize,
}

/// A parsed YAML value with its position.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value.
    pub value: Yaml,
    /// Where it starts.
    pub span: Span,
}

/// YAML values after core-schema typing.
#[derive(Clone, Debug)]
pub enum Yaml {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A float (may be NaN or infinite: validation rejects those where needed).
    Float(f64),
    /// Any other scalar, and every quoted one.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in file order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and its position.
#[derive(Clone, Debug)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where the key starts.
    pub span: Span,
}

impl Node {
    /// The node at a dotted path of mapping keys and list indices
    /// (`optim.lr`, `group_by.1`).
    pub fn get_path(&self, path: &str) -> Option<&Node> {
        path.split('.').try_fold(self, |node, part| match &node.value {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k.name == part).map(|(_, v)| v),
            Yaml::Seq(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

impl Yaml {
    /// A short name of the value's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Yaml::Null => "null",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) => "an integer",
            Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }
}

/// Why a document could not be read as a YAML tree.
#[derive(Debug, Clone)]
pub struct YamlError {
    /// What went wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// Maximum nesting depth: deeper documents are rejected instead of risking
/// the stack in later recursive passes.
const MAX_DEPTH: usize = 64;

/// Maximum number of nodes that aliases may copy in one document: each
/// `*alias` copies its anchor's whole tree, so ten levels of ten aliases
/// would otherwise build 10¹⁰ nodes.
const MAX_ALIASED: usize = 100_000;

/// Parses one YAML document (an empty file is `Null`).
pub fn parse(source: &str) -> Result<Node, YamlError> {
    // A UTF-8 byte-order mark (Windows editors write one) is not content;
    // offsets stay offsets into `source`.
    let bom = if source.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let (source, index) = (&source[bom..], LineIndex::new(&source[bom..], bom));
    let mut builder = Builder {
        index: &index,
        stack: Vec::new(),
        anchors: HashMap::new(),
        aliased: 0,
        root: None,
        error: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Err(YamlError { message: e.info().to_string(), span: index.span(m.line(), m.col(), 1) });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node { value: Yaml::Null, span: index.span(1, 0, 0) }))
}

/// Maps (line, column) from the scanner to byte offsets.
struct LineIndex<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
    /// Bytes before `source` in the file (a byte-order mark).
    base: usize,
    /// All ASCII: a column is a byte count.
    ascii: bool,
    /// The last position found, `(line, col0, offset)`: the scanner reports
    /// positions in increasing order, so walking on from there keeps a long
    /// line (a 10 MB flow sequence) linear rather than quadratic.
    last: Cell<(usize, usize, usize)>,
}

impl<'a> LineIndex<'a> {
    fn new(source: &'a str, base: usize) -> Self {
        let line_starts = line_starts(source);
        LineIndex { source, line_starts, base, ascii: source.is_ascii(), last: Cell::new((1, 0, 0)) }
    }

    /// `col0` is the scanner's 0-based character column.
    fn span(&self, line: usize, col0: usize, len: usize) -> Span {
        let line = line.clamp(1, self.line_starts.len());
        let start = self.line_starts[line - 1];
        let bytes = self.source.as_bytes();
        let end = self.line_starts.get(line).map_or(bytes.len(), |&next| {
            if bytes[next - 1] == b'\n' && next >= 2 && bytes[next - 2] == b'\r' {
                next - 2
            } else {
                next - 1
            }
        });
        let offset = if self.ascii {
            (start + col0).min(end)
        } else {
            let (last_line, last_col, last_offset) = self.last.get();
            let (from_col, from) =
                if last_line == line && last_col <= col0 { (last_col, last_offset) } else { (0, start) };
            from + self.source[from..end].char_indices().nth(col0 - from_col).map_or(end - from, |(i, _)| i)
        };
        self.last.set((line, col0, offset));
        let len = len.min(self.source.len() - offset);
        Span { line, col: col0 + 1, offset: self.base + offset, len }
    }
}

/// Byte offsets at which lines start. Line breaks are `\n`, `\r\n` and a
/// lone `\r`, as for the YAML scanner (and miette), so that line numbers agree.
pub fn line_starts(source: &str) -> Vec<usize> {
    let bytes = source.as_bytes();
    let mut starts = vec![0];
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            starts.push(i + 1);
        }
    }
    starts
}

enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    /// `seen` maps each key to its line, for duplicate detection in O(1).
    Map {
        start: Span,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
        seen: HashMap<String, usize>,
    },
}

struct Builder<'a> {
    index: &'a LineIndex<'a>,
    stack: Vec<Frame>,
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far (bounded: see [`MAX_ALIASED`]).
    aliased: usize,
    root: Option<Node>,
    error: Option<YamlError>,
    documents: usize,
}

impl Builder<'_> {
    fn fail(&mut self, message: String, span: Span) {
        if self.error.is_none() {
            self.error = Some(YamlError { message, span });
        }
    }

    /// Hands a finished node to its parent (or makes it the root).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let mut duplicate = None;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { start, entries, pending_key, seen, .. }) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    // A block mapping's start mark is its first `:`; its first key starts it.
                    if entries.is_empty() && node.span.offset < start.offset {
                        *start = node.span;
                    }
                    let name = match &node.value {
                        Yaml::Str(s) => s.clone(),
                        Yaml::Int(i) => i.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        Yaml::Float(f) => f.to_string(),
                        Yaml::Null => "null".to_string(),
                        Yaml::Seq(_) | Yaml::Map(_) => {
                            duplicate = Some(("mapping keys must be plain scalars".to_string(), node.span));
                            String::new()
                        }
                    };
                    if let Some(first_line) = seen.insert(name.clone(), node.span.line) {
                        duplicate =
                            Some((format!("duplicate key `{name}` (first defined at line {first_line})"), node.span));
                    }
                    *pending_key = Some(Key { name, span: node.span });
                }
            },
        }
        if let Some((message, span)) = duplicate {
            self.fail(message, span);
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let span = self.index.span(mark.line(), mark.col(), 1);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail("an experiment file holds one YAML document; found a second `---`".into(), span);
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let len = text.len().max(1);
                let value = if style == TScalarStyle::Plain { type_plain_scalar(text) } else { Yaml::Str(text) };
                let span = Span { len, ..span };
                self.push(Node { value, span }, anchor);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor) {
                Some((_, size)) if self.aliased + size > MAX_ALIASED => {
                    self.fail(format!("aliases expand to more than {MAX_ALIASED} nodes (nested aliases multiply: a \"billion laughs\" document)"), span)
                }
                Some((node, size)) => {
                    self.aliased += size;
                    let node = Node { span, ..node.clone() };
                    self.push(node, 0);
                }
                None => self.fail("alias to an unknown anchor".into(), span),
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(format!("nesting deeper than {MAX_DEPTH} levels"), span);
                    return;
                }
                self.stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { start: span, anchor, items: Vec::new() }
                } else {
                    Frame::Map { start: span, anchor, entries: Vec::new(), pending_key: None, seen: HashMap::new() }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { start, anchor, items }) => (Node { value: Yaml::Seq(items), span: start }, anchor),
                    Some(Frame::Map { start, anchor, entries, .. }) => (Node { value: Yaml::Map(entries), span: start }, anchor),
                    None => return,
                };
                self.push(node, anchor);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

/// The number of nodes in a tree (depth is bounded by [`MAX_DEPTH`]).
fn node_count(node: &Node) -> usize {
    1 + match &node.value {
        Yaml::Seq(items) => items.iter().map(node_count).sum(),
        Yaml::Map(entries) => entries.iter().map(|(_, v)| 1 + node_count(v)).sum(),
        _ => 0,
    }
}

/// Types a plain scalar with the YAML 1.2 core schema (plus `_` digit
/// separators, which researchers write for token counts: `32_000_000_000`).
fn type_plain_scalar(text: String) -> Yaml {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Yaml::Null,
        "true" | "True" | "TRUE" => return Yaml::Bool(true),
        "false" | "False" | "FALSE" => return Yaml::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Yaml::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Yaml::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Yaml::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Yaml::Str(text);
    }
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(hex) = digits.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Yaml::Int(i);
        }
    }
    if let Some(oct) = digits.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Yaml::Int(i);
        }
    }
    if digits.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+') {
        if let Ok(i) = digits.parse::<i64>() {
            return Yaml::Int(i);
        }
    }
    let looks_numeric = digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    match digits.parse::<f64>() {
        Ok(f) if looks_numeric => Yaml::Float(f),
        _ => Yaml::Str(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[(Key, Node)] {
        match &node.value {
            Yaml::Map(m) => m,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn spans_are_one_based_and_point_at_values() {
        let src = "a: 1\nbb:\n  c: [x, 'y']\n";
        let root = parse(src).unwrap();
        let m = map(&root);
        assert_eq!((m[0].0.span.line, m[0].0.span.col), (1, 1));
        assert_eq!((m[0].1.span.line, m[0].1.span.col), (1, 4));
        let inner = map(&m[1].1);
        assert_eq!((inner[0].0.span.line, inner[0].0.span.col), (3, 3));
        assert_eq!(&src[inner[0].0.span.offset..inner[0].0.span.offset + 1], "c");
    }

    #[test]
    fn core_schema_typing() {
        let root = parse("a: 5e-4\nb: 32_000\nc: '12'\nd: yes\ne: ~\nf: 409.6e6\ng: -3").unwrap();
        let v: Vec<_> = map(&root).iter().map(|(_, n)| format!("{:?}", n.value)).collect();
        assert_eq!(
            v,
            ["Float(0.0005)", "Int(32000)", "Str(\"12\")", "Str(\"yes\")", "Null", "Float(409600000.0)", "Int(-3)"]
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
        assert_eq!((err.span.line, err.span.col), (3, 1));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.line >= 1);
    }

    #[test]
    fn anchors_and_aliases_resolve() {
        let root = parse("base: &b {lr: 1}\nother: *b\n").unwrap();
        assert!(matches!(&map(&root)[1].1.value, Yaml::Map(m) if m[0].0.name == "lr"));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let src = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&src).unwrap_err().message.contains("nesting"));
    }
}
