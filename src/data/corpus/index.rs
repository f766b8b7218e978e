//! The corpus artifact: an index of the input files, not a copy of their text.
//!
//! `index.json` lists the sources (path, format, blake3 digest, size, number
//! of documents read) and `documents.zst` holds one byte per document read,
//! source after source, saying where it goes: train, val, test, or dropped
//! (an exact duplicate of an earlier document, or empty after normalisation),
//! and in its top bit whether normalisation changed the text. Readers stream
//! the sources again, check each against its digest, take the documents of
//! the splits they want, and normalise only those it changes (most text is
//! already normal: that halves the cost of reading it again).
//!
//! De-duplication keeps a set of 128-bit digest prefixes of the documents
//! seen: 16 bytes a document (about 18–37 bytes with the hash table's slack,
//! so 18–37 GB per billion documents), whatever the documents' length. The
//! chance that two different documents share a prefix is below 10⁻²⁰ at a
//! billion documents.
//!
//! A source can be kept as a copy instead (`copy`): its kept documents,
//! normalised, go into the artifact as zstd-compressed JSONL, and the index
//! points there. The corpus node does this for files that come out of other
//! artifacts, and for every file when asked to.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use rayon::prelude::*;
use rustc_hash::FxHashSet;

use super::normalize::normalize;
use super::{split_of, stream, Batch, FileProblem, Format, Source, Split};

/// The index's file in a corpus artifact.
pub const INDEX_FILE: &str = "index.json";
/// One byte per document read: its [`Fate`].
const FATES_FILE: &str = "documents.zst";
/// Where copies of sources go inside the artifact.
const COPY_DIR: &str = "copies";
/// `format` of [`CorpusIndex`].
const INDEX_FORMAT: &str = "scalemake corpus index 1";

/// What became of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Fate {
    Train = 0,
    Val = 1,
    Test = 2,
    Duplicate = 3,
    Empty = 4,
}

/// The bit of a fate byte set when normalisation changed the document.
const CHANGED: u8 = 0x80;

impl Fate {
    fn of(split: Split) -> Fate {
        match split {
            Split::Train => Fate::Train,
            Split::Val => Fate::Val,
            Split::Test => Fate::Test,
        }
    }

    fn split(code: u8) -> Option<Split> {
        match code & !CHANGED {
            0 => Some(Split::Train),
            1 => Some(Split::Val),
            2 => Some(Split::Test),
            _ => None,
        }
    }
}

/// Where a source's path is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    /// The project root (or absolute).
    Project,
    /// The corpus artifact itself (a copy).
    Artifact,
}

/// The file a copy was made from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Its path when the corpus was built.
    pub path: String,
    /// Its blake3 digest then.
    pub digest: String,
}

/// One input file of the index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceEntry {
    /// The file, relative to `location` (or absolute).
    pub path: String,
    /// What `path` is relative to.
    pub location: Location,
    /// How it is read (never `auto`).
    pub format: Format,
    /// The JSONL field or Parquet column of the text.
    pub text_field: String,
    /// Its blake3 digest (hex).
    pub digest: String,
    /// Its size.
    pub bytes: u64,
    /// Documents read from it (kept or not): its share of `documents.zst`.
    pub documents: u64,
    /// Why it was skipped (`on_error: skip`); then it has no documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// For a copy: the file it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<Origin>,
}

/// Documents and UTF-8 bytes (after normalisation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Count {
    /// Documents.
    pub documents: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `index.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorpusIndex {
    /// [`INDEX_FORMAT`].
    pub format: String,
    /// The held-out fractions the split used.
    pub val: f64,
    /// See `val`.
    pub test: f64,
    /// The input files, in reading order.
    pub sources: Vec<SourceEntry>,
    /// Kept documents per split.
    pub splits: BTreeMap<String, Count>,
    /// Exact duplicates dropped.
    pub duplicates: u64,
    /// Documents empty after normalisation, dropped.
    pub empty: u64,
}

/// An input file to index.
#[derive(Clone, Debug)]
pub struct Input {
    /// Where it is.
    pub path: PathBuf,
    /// Its path as the index records it (project-relative where it can be).
    pub recorded: String,
    /// Keep a copy of its kept documents in the artifact.
    pub copy: bool,
}

/// How to index.
#[derive(Clone, Debug)]
pub struct Options {
    /// How to read the files.
    pub format: Format,
    /// JSONL field or Parquet column.
    pub text_field: String,
    /// Held-out fractions.
    pub val: f64,
    /// See `val`.
    pub test: f64,
    /// Count unreadable files instead of failing.
    pub skip_bad: bool,
}

/// Why indexing failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file of the corpus is bad.
    #[error("{0}")]
    File(#[from] FileProblem),
    /// Writing the artifact failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The artifact is not an index this version reads.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The observer asked to stop.
    #[error("cancelled")]
    Cancelled,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io { path: path.to_path_buf(), source }
}

/// The state of the source being indexed.
struct Current {
    index: usize,
    fates: Vec<u8>,
    /// Digests this source added to the seen set (taken back if it fails).
    added: Vec<u128>,
    copy: Option<(PathBuf, zstd::Encoder<'static, BufWriter<File>>)>,
    splits: [Count; 3],
    duplicates: u64,
    empty: u64,
}

/// Builds the index of `inputs` into `out_dir`. `observe(documents)` is
/// called after every batch; it returns false to cancel. File bytes read so
/// far are added to `bytes_read` (progress).
pub fn build(
    inputs: &[Input],
    options: &Options,
    out_dir: &Path,
    bytes_read: &AtomicU64,
    observe: &mut dyn FnMut(u64) -> bool,
) -> Result<CorpusIndex, IndexError> {
    let sources: Vec<Source> = inputs
        .iter()
        .map(|i| Source {
            path: i.path.clone(),
            format: options.format.resolve(&i.path),
            text_field: options.text_field.clone(),
            expect: None,
        })
        .collect();
    let fates_path = out_dir.join(FATES_FILE);
    let mut fates = zstd::Encoder::new(BufWriter::new(File::create(&fates_path).map_err(io(&fates_path))?), 3)
        .map_err(io(&fates_path))?;
    let mut index = CorpusIndex {
        format: INDEX_FORMAT.into(),
        val: options.val,
        test: options.test,
        sources: Vec::with_capacity(inputs.len()),
        splits: BTreeMap::new(),
        duplicates: 0,
        empty: 0,
    };
    let mut totals = [Count::default(); 3];
    let mut seen: FxHashSet<u128> = FxHashSet::default();
    let mut current: Option<Current> = None;
    let mut documents = 0u64;
    let open = |i: usize| -> Result<Current, IndexError> {
        let copy = if inputs[i].copy {
            let dir = out_dir.join(COPY_DIR);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let path = dir.join(format!("{i:06}.jsonl.zst"));
            let file = BufWriter::new(File::create(&path).map_err(io(&path))?);
            Some((path.clone(), zstd::Encoder::new(file, 3).map_err(io(&path))?))
        } else {
            None
        };
        Ok(Current {
            index: i,
            fates: Vec::new(),
            added: Vec::new(),
            copy,
            splits: Default::default(),
            duplicates: 0,
            empty: 0,
        })
    };
    // Finishes the current source: its entry, its fates, the totals.
    let close = |c: Current,
                 failure: Option<FileProblem>,
                 seen: &mut FxHashSet<u128>,
                 index: &mut CorpusIndex,
                 fates: &mut zstd::Encoder<'static, BufWriter<File>>,
                 totals: &mut [Count; 3]|
     -> Result<(), IndexError> {
        let input = &inputs[c.index];
        let source = &sources[c.index];
        let size = std::fs::metadata(&input.path).map(|m| m.len()).unwrap_or(0);
        if let Some(problem) = failure {
            if !options.skip_bad {
                return Err(problem.into());
            }
            for d in &c.added {
                seen.remove(d);
            }
            if let Some((path, _)) = c.copy {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            index.sources.push(SourceEntry {
                path: input.recorded.clone(),
                location: Location::Project,
                format: source.format,
                text_field: source.text_field.clone(),
                digest: String::new(),
                bytes: size,
                documents: 0,
                skipped: Some(problem.problem),
                copied_from: None,
            });
            return Ok(());
        }
        let digest = crate::hash::digest_file(&input.path).map_err(io(&input.path))?.hex();
        for (total, split) in totals.iter_mut().zip(c.splits) {
            total.documents += split.documents;
            total.bytes += split.bytes;
        }
        index.duplicates += c.duplicates;
        index.empty += c.empty;
        let entry = match c.copy {
            None => {
                fates.write_all(&c.fates).map_err(io(&fates_path))?;
                SourceEntry {
                    path: input.recorded.clone(),
                    location: Location::Project,
                    format: source.format,
                    text_field: source.text_field.clone(),
                    digest,
                    bytes: size,
                    documents: c.fates.len() as u64,
                    skipped: None,
                    copied_from: None,
                }
            }
            Some((path, encoder)) => {
                encoder.finish().and_then(|mut w| w.flush()).map_err(io(&path))?;
                // The copy holds normalised text: nothing in it changes.
                let kept: Vec<u8> =
                    c.fates.into_iter().filter(|&f| Fate::split(f).is_some()).map(|f| f & !CHANGED).collect();
                fates.write_all(&kept).map_err(io(&fates_path))?;
                let rel = path.strip_prefix(out_dir).unwrap_or(&path).to_string_lossy().into_owned();
                SourceEntry {
                    path: rel,
                    location: Location::Artifact,
                    format: Format::Jsonl,
                    text_field: "text".into(),
                    digest: crate::hash::digest_file(&path).map_err(io(&path))?.hex(),
                    bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    documents: kept.len() as u64,
                    skipped: None,
                    copied_from: Some(Origin { path: input.recorded.clone(), digest }),
                }
            }
        };
        index.sources.push(entry);
        Ok(())
    };
    let mut next_source = 0usize;
    stream(&sources, bytes_read, |batch| -> Result<(), IndexError> {
        match batch {
            Batch::Documents(docs) => {
                let normalised: Vec<(usize, String, blake3::Hash, bool)> = docs
                    .into_par_iter()
                    .map(|(i, raw)| {
                        let text = normalize(&raw);
                        let digest = blake3::hash(text.as_bytes());
                        let changed = text != raw;
                        (i, text, digest, changed)
                    })
                    .collect();
                for (i, text, digest, changed) in normalised {
                    // Sources without documents (or skipped ones) in between get entries too.
                    while current.as_ref().is_none_or(|c| c.index != i) {
                        if let Some(c) = current.take() {
                            close(c, None, &mut seen, &mut index, &mut fates, &mut totals)?;
                        }
                        if next_source <= i {
                            current = Some(open(next_source)?);
                            next_source += 1;
                        }
                    }
                    let c = current.as_mut().expect("opened above");
                    let fate = if text.is_empty() {
                        c.empty += 1;
                        Fate::Empty
                    } else {
                        let key = u128::from_le_bytes(digest.as_bytes()[16..].try_into().expect("16 bytes"));
                        if seen.insert(key) {
                            c.added.push(key);
                            let split = split_of(&digest, options.val, options.test);
                            let count = &mut c.splits[split as usize];
                            count.documents += 1;
                            count.bytes += text.len() as u64;
                            if let Some((path, encoder)) = &mut c.copy {
                                serde_json::to_writer(&mut *encoder, &serde_json::json!({ "text": text }))
                                    .map_err(|e| IndexError::Io { path: path.clone(), source: e.into() })?;
                                encoder.write_all(b"\n").map_err(io(path))?;
                            }
                            Fate::of(split)
                        } else {
                            c.duplicates += 1;
                            Fate::Duplicate
                        }
                    };
                    c.fates.push(fate as u8 | if changed { CHANGED } else { 0 });
                    documents += 1;
                }
                if observe(documents) {
                    Ok(())
                } else {
                    Err(IndexError::Cancelled)
                }
            }
            Batch::Failed(i, problem) => {
                while next_source <= i {
                    if let Some(c) = current.take() {
                        close(c, None, &mut seen, &mut index, &mut fates, &mut totals)?;
                    }
                    current = Some(open(next_source)?);
                    next_source += 1;
                }
                let c = current.take().expect("opened above");
                close(c, Some(problem), &mut seen, &mut index, &mut fates, &mut totals)
            }
        }
    })?;
    if let Some(c) = current.take() {
        close(c, None, &mut seen, &mut index, &mut fates, &mut totals)?;
    }
    while next_source < inputs.len() {
        let c = open(next_source)?;
        next_source += 1;
        close(c, None, &mut seen, &mut index, &mut fates, &mut totals)?;
    }
    fates.finish().and_then(|mut w| w.flush()).map_err(io(&fates_path))?;
    for split in Split::ALL {
        index.splits.insert(split.name().into(), totals[split as usize]);
    }
    let path = out_dir.join(INDEX_FILE);
    let text =
        serde_json::to_vec_pretty(&index).map_err(|e| IndexError::Io { path: path.clone(), source: e.into() })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(index)
}

impl CorpusIndex {
    /// Reads the index of the corpus artifact in `dir`.
    pub fn load(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let index: CorpusIndex = serde_json::from_slice(&bytes)
            .map_err(|e| IndexError::Invalid { path: path.clone(), problem: format!("not a corpus index: {e}") })?;
        if index.format != INDEX_FORMAT {
            return Err(IndexError::Invalid {
                path,
                problem: format!("index format `{}`, this build reads `{INDEX_FORMAT}`", index.format),
            });
        }
        Ok(index)
    }

    /// Kept documents of `split`.
    pub fn count(&self, split: Split) -> Count {
        self.splits.get(split.name()).copied().unwrap_or_default()
    }

    /// Bytes of the files the readers stream (for progress).
    pub fn source_bytes(&self) -> u64 {
        self.sources.iter().filter(|s| s.skipped.is_none()).map(|s| s.bytes).sum()
    }

    /// Streams the documents of the `wanted` splits, normalised, in corpus
    /// order, batch by batch. `dir` is the artifact, `root` the project
    /// (what project paths are relative to). A source that is missing or
    /// no longer has its digest fails the read.
    pub fn documents<E: From<IndexError>>(
        &self,
        dir: &Path,
        root: &Path,
        wanted: &[Split],
        bytes_read: &AtomicU64,
        mut consume: impl FnMut(Vec<(Split, String)>) -> Result<(), E>,
    ) -> Result<(), E> {
        let entries: Vec<&SourceEntry> = self.sources.iter().filter(|s| s.skipped.is_none()).collect();
        let mut sources = Vec::with_capacity(entries.len());
        for entry in &entries {
            let path = match entry.location {
                Location::Project => root.join(&entry.path),
                Location::Artifact => dir.join(&entry.path),
            };
            let expect = blake3::Hash::from_hex(&entry.digest).map_err(|e| IndexError::Invalid {
                path: dir.join(INDEX_FILE),
                problem: format!("bad digest for {}: {e}", entry.path),
            })?;
            sources.push(Source {
                path,
                format: entry.format,
                text_field: entry.text_field.clone(),
                expect: Some(expect),
            });
        }
        let fates_path = dir.join(FATES_FILE);
        let mut fates =
            zstd::Decoder::new(File::open(&fates_path).map_err(io(&fates_path))?).map_err(io(&fates_path))?;
        let mut read = vec![0u64; sources.len()];
        let mut buffer = Vec::new();
        stream(&sources, bytes_read, |batch| -> Result<(), E> {
            match batch {
                Batch::Documents(docs) => {
                    buffer.resize(docs.len(), 0);
                    fates.read_exact(&mut buffer).map_err(|_| IndexError::Invalid {
                        path: sources[docs[0].0].path.clone(),
                        problem: "has more documents than when the corpus was indexed".into(),
                    })?;
                    for (i, _) in &docs {
                        read[*i] += 1;
                    }
                    let kept: Vec<(Split, String)> = docs
                        .into_par_iter()
                        .zip(buffer.par_iter())
                        .filter_map(|((_, raw), &fate)| {
                            let split = Fate::split(fate).filter(|s| wanted.contains(s))?;
                            Some((split, if fate & CHANGED != 0 { normalize(&raw) } else { raw }))
                        })
                        .collect();
                    consume(kept)
                }
                Batch::Failed(_, problem) => Err(IndexError::File(problem).into()),
            }
        })?;
        for ((entry, source), n) in entries.iter().zip(&sources).zip(read) {
            if n != entry.documents {
                return Err(IndexError::Invalid {
                    path: source.path.clone(),
                    problem: format!("{n} documents read, {} when the corpus was indexed", entry.documents),
                }
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(skip_bad: bool) -> Options {
        Options { format: Format::Auto, text_field: "text".into(), val: 0.0, test: 0.0, skip_bad }
    }

    fn inputs(dir: &Path, names: &[&str], copy: bool) -> Vec<Input> {
        names.iter().map(|n| Input { path: dir.join(n), recorded: n.to_string(), copy }).collect()
    }

    fn read(index: &CorpusIndex, out: &Path, root: &Path) -> Vec<String> {
        let mut docs = Vec::new();
        index
            .documents::<IndexError>(out, root, &Split::ALL, &AtomicU64::new(0), |batch| {
                docs.extend(batch.into_iter().map(|(_, t)| t));
                Ok(())
            })
            .unwrap();
        docs
    }

    fn write_files(dir: &Path) {
        std::fs::write(dir.join("a.txt"), "Bonjour « monde » l’été\n").unwrap();
        std::fs::write(dir.join("b.txt"), "Bonjour « monde » l’été").unwrap();
        std::fs::write(dir.join("c.jsonl"), "{\"text\": \"un\"}\n\n{\"text\": \"  \"}\n{\"text\": \"deux\"}\n")
            .unwrap();
    }

    #[test]
    fn indexes_without_copying_and_reads_back() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        write_files(root.path());
        let inputs = inputs(root.path(), &["a.txt", "b.txt", "c.jsonl"], false);
        let index = build(&inputs, &options(false), out.path(), &AtomicU64::new(0), &mut |_| true).unwrap();
        assert_eq!((index.duplicates, index.empty), (1, 1));
        assert_eq!(
            index.count(Split::Train),
            Count { documents: 3, bytes: "Bonjour « monde » l’été".len() as u64 + 6 }
        );
        assert_eq!(index.sources.iter().map(|s| s.documents).collect::<Vec<_>>(), [1, 1, 3]);
        let loaded = CorpusIndex::load(out.path()).unwrap();
        assert_eq!(loaded, index);
        assert_eq!(read(&loaded, out.path(), root.path()), ["Bonjour « monde » l’été", "un", "deux"]);
        // No text in the artifact: only the index and the fates.
        let names: Vec<String> =
            std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A changed source is refused.
        std::fs::write(root.path().join("c.jsonl"), "{\"text\": \"autre\"}\n").unwrap();
        let err = loaded
            .documents::<IndexError>(out.path(), root.path(), &Split::ALL, &AtomicU64::new(0), |_| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("c.jsonl: changed since the corpus was indexed"), "{err}");
    }

    #[test]
    fn copies_are_read_in_place_of_their_sources() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        write_files(root.path());
        let inputs = inputs(root.path(), &["a.txt", "b.txt", "c.jsonl"], true);
        let index = build(&inputs, &options(false), out.path(), &AtomicU64::new(0), &mut |_| true).unwrap();
        for name in ["a.txt", "b.txt", "c.jsonl"] {
            std::fs::remove_file(root.path().join(name)).unwrap();
        }
        assert_eq!(read(&index, out.path(), root.path()), ["Bonjour « monde » l’été", "un", "deux"]);
        assert_eq!(index.sources[2].copied_from.as_ref().unwrap().path, "c.jsonl");
    }

    #[test]
    fn a_bad_file_fails_or_is_skipped_without_its_documents() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        // The bad file's first document also opens the good file: skipping
        // the bad one must not drop it from the good one as a duplicate.
        std::fs::write(root.path().join("bad.jsonl"), "{\"text\": \"un\"}\n{oops\n").unwrap();
        std::fs::write(root.path().join("good.jsonl"), "{\"text\": \"un\"}\n{\"text\": \"deux\"}\n").unwrap();
        let inputs = inputs(root.path(), &["bad.jsonl", "good.jsonl"], false);
        let err = build(&inputs, &options(false), out.path(), &AtomicU64::new(0), &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("bad.jsonl: line 2: invalid JSON"), "{err}");
        let index = build(&inputs, &options(true), out.path(), &AtomicU64::new(0), &mut |_| true).unwrap();
        assert!(index.sources[0].skipped.as_ref().unwrap().starts_with("line 2: invalid JSON"));
        assert_eq!(index.duplicates, 0);
        assert_eq!(read(&index, out.path(), root.path()), ["un", "deux"]);
    }
}
