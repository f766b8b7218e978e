//! Documents from files: reading, normalisation, de-duplication, splitting.
//!
//! A corpus is never held in memory or copied: [`index::build`] streams the
//! input files once, and records for each document where it goes (train, val,
//! test, or dropped as a duplicate or empty) in an index; readers stream the
//! original files again through that index ([`index::CorpusIndex::documents`]).
//! The split is a pure function of the normalised text (its blake3 digest
//! mapped to [0, 1)), so adding or removing other documents never moves a
//! document between train, val and test.

pub mod formats;
pub mod index;
pub mod normalize;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;

pub use formats::{FileProblem, Format};

/// The three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training data.
    Train,
    /// Held-out validation data.
    Val,
    /// Held-out test data.
    Test,
}

impl Split {
    /// All splits, in file-name order of the artifact.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val`, `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// A point in [0, 1) from eight bytes of a digest.
fn unit(bytes: &[u8]) -> f64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as f64 / 2f64.powi(64)
}

/// Where a document goes, from the digest of its normalised text (bytes 0..8).
pub fn split_of(digest: &blake3::Hash, val: f64, test: f64) -> Split {
    let x = unit(&digest.as_bytes()[..8]);
    if x < val {
        Split::Val
    } else if x < val + test {
        Split::Test
    } else {
        Split::Train
    }
}

/// Whether a document is in a deterministic sample of `fraction` of the
/// documents, from digest bytes 8..16: independent of its split.
pub fn in_sample(digest: &blake3::Hash, fraction: f64) -> bool {
    unit(&digest.as_bytes()[8..16]) < fraction
}

/// One input file of a corpus.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// How to read it.
    pub format: Format,
    /// The JSONL field or Parquet column holding the text.
    pub text_field: String,
    /// The blake3 digest it must have (a reader of an index checks that the
    /// file is the one the index was built from).
    pub expect: Option<blake3::Hash>,
}

/// What the background reader hands on, in file order.
pub enum Batch {
    /// Raw documents, each with the index of its source.
    Documents(Vec<(usize, String)>),
    /// Source `i` could not be read to its end (its documents before the
    /// problem came in earlier batches).
    Failed(usize, FileProblem),
}

/// Raw text per batch: big enough to keep every core busy, small enough
/// that memory stays flat (two batches wait in the channel).
const BATCH_BYTES: usize = 4 << 20;

/// Reads `sources` in order on a background thread while `consume` works on
/// the batches before (normalising and encoding them on all cores). File
/// bytes consumed are added to `bytes_read`. An error from `consume` stops
/// the reader and is returned.
pub fn stream<E>(
    sources: &[Source],
    bytes_read: &AtomicU64,
    mut consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<(), E> {
    let (tx, rx) = mpsc::sync_channel::<Batch>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for (i, source) in sources.iter().enumerate() {
                if let Some(expected) = source.expect {
                    match crate::hash::digest_file(&source.path) {
                        Ok(d) if &d.0 == expected.as_bytes() => {}
                        Ok(_) => {
                            let problem = FileProblem {
                                path: source.path.clone(),
                                problem: "changed since the corpus was indexed: rebuild the corpus (its key hashes \
                                          this file, so `scalemake run` rebuilds it)"
                                    .into(),
                            };
                            let _ = tx.send(Batch::Failed(i, problem));
                            return;
                        }
                        Err(e) => {
                            let problem =
                                FileProblem { path: source.path.clone(), problem: format!("cannot read: {e}") };
                            let _ = tx.send(Batch::Failed(i, problem));
                            return;
                        }
                    }
                }
                let mut open = true;
                let read =
                    formats::read_documents(&source.path, source.format, &source.text_field, bytes_read, &mut |text| {
                        bytes += text.len();
                        batch.push((i, text));
                        if bytes >= BATCH_BYTES {
                            bytes = 0;
                            open = tx.send(Batch::Documents(std::mem::take(&mut batch))).is_ok();
                        }
                        open
                    });
                if !open {
                    return;
                }
                if let Err(problem) = read {
                    if tx.send(Batch::Documents(std::mem::take(&mut batch))).is_err()
                        || tx.send(Batch::Failed(i, problem)).is_err()
                    {
                        return;
                    }
                    bytes = 0;
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Batch::Documents(batch));
            }
        });
        for batch in rx {
            consume(batch)?;
        }
        Ok(())
    })
}
