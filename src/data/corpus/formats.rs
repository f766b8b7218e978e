//! Documents out of files, as the field ships them: plain text (one document
//! per file), JSONL (one per line, in a string field) and Parquet (one per
//! row, one string column read row group by row group), each of the first two
//! optionally gzip- or zstd-compressed. Everything streams: a file is never
//! held in memory whole, except a plain-text file, which is one document.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::Array;
use flate2::read::MultiGzDecoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

/// How to read an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By extension: `.parquet` is Parquet, `.jsonl` (after `.gz`/`.zst`) is
    /// JSONL, anything else plain text.
    Auto,
    /// One document per file.
    Text,
    /// One JSON object per line; the document is its `text_field`.
    Jsonl,
    /// One document per row; the document is the string column `text_field`.
    Parquet,
}

impl Format {
    /// The format `Auto` means for `path`; other formats stay as they are.
    pub fn resolve(self, path: &Path) -> Format {
        if self != Format::Auto {
            return self;
        }
        let name = path.to_string_lossy();
        let stem = name.trim_end_matches(".gz").trim_end_matches(".zst");
        if stem.ends_with(".parquet") {
            Format::Parquet
        } else if stem.ends_with(".jsonl") {
            Format::Jsonl
        } else {
            Format::Text
        }
    }
}

/// A problem with one input file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FileProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (with a line or row number where there is one).
    pub problem: String,
}

/// Counts the bytes read from a file, for progress by bytes.
struct Counting<'a, R> {
    inner: R,
    read: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Calls `each` with every document of `path` in order (the raw text, not yet
/// normalised; a Parquet null is an empty document). `each` returns false to
/// stop early. Bytes of the file consumed so far are added to `read`.
pub fn read_documents(
    path: &Path,
    format: Format,
    text_field: &str,
    read: &AtomicU64,
    each: &mut dyn FnMut(String) -> bool,
) -> Result<(), FileProblem> {
    let problem = |problem: String| FileProblem { path: path.to_path_buf(), problem };
    let file = File::open(path).map_err(|e| problem(format!("cannot open: {e}")))?;
    let format = format.resolve(path);
    if format == Format::Parquet {
        return read_parquet(path, file, text_field, read, each);
    }
    let name = path.to_string_lossy();
    let counted = Counting { inner: file, read };
    let reader: Box<dyn Read + '_> = if name.ends_with(".gz") {
        Box::new(MultiGzDecoder::new(counted))
    } else if name.ends_with(".zst") {
        Box::new(zstd::Decoder::new(counted).map_err(|e| problem(format!("not zstd: {e}")))?)
    } else {
        Box::new(counted)
    };
    if format == Format::Text {
        let mut bytes = Vec::new();
        BufReader::new(reader).read_to_end(&mut bytes).map_err(|e| problem(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            problem(format!("invalid UTF-8 at byte {at}"))
        })?;
        each(text);
        return Ok(());
    }
    let mut lines = BufReader::with_capacity(1 << 20, reader);
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(problem(format!("line {number}: {e}"))),
        }
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| problem(format!("line {number}: invalid JSON: {e}")))?;
        let text = match value.get(text_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(problem(format!("line {number}: no string field `{text_field}`"))),
        };
        if !each(text) {
            break;
        }
    }
    Ok(())
}

/// Parquet: only the `text_field` column is decoded, a batch of rows at a
/// time; progress advances by the share of rows read.
fn read_parquet(
    path: &Path,
    file: File,
    text_field: &str,
    read: &AtomicU64,
    each: &mut dyn FnMut(String) -> bool,
) -> Result<(), FileProblem> {
    let problem = |problem: String| FileProblem { path: path.to_path_buf(), problem };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| problem(format!("not a Parquet file: {e}")))?;
    let fields = builder.schema().fields();
    let Some(column) = fields.iter().position(|f| f.name() == text_field) else {
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return Err(problem(format!("no column `{text_field}` (columns: {})", names.join(", "))));
    };
    let rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let batches = builder
        .with_projection(mask)
        .with_batch_size(1024)
        .build()
        .map_err(|e| problem(format!("cannot read: {e}")))?;
    let mut row = 0u64;
    let mut reported = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| problem(format!("after row {row}: {e}")))?;
        let array = batch.column(0);
        let texts: Vec<Option<&str>> = if let Some(a) = array.as_string_opt::<i32>() {
            a.iter().collect()
        } else if let Some(a) = array.as_string_opt::<i64>() {
            a.iter().collect()
        } else if let Some(a) = array.as_string_view_opt() {
            a.iter().collect()
        } else {
            return Err(problem(format!("column `{text_field}` holds {}, not strings", array.data_type())));
        };
        for text in texts {
            row += 1;
            if !each(text.unwrap_or_default().to_string()) {
                return Ok(());
            }
        }
        let done = size * row / rows;
        read.fetch_add(done - reported, Ordering::Relaxed);
        reported = done;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn docs(path: &Path, format: Format) -> Result<Vec<String>, FileProblem> {
        let mut out = Vec::new();
        read_documents(path, format, "text", &AtomicU64::new(0), &mut |d| {
            out.push(d);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::Auto.resolve(Path::new("a/b.jsonl.zst")), Format::Jsonl);
        assert_eq!(Format::Auto.resolve(Path::new("a/b.jsonl.gz")), Format::Jsonl);
        assert_eq!(Format::Auto.resolve(Path::new("train-0001.parquet")), Format::Parquet);
        assert_eq!(Format::Auto.resolve(Path::new("notes.txt.zst")), Format::Text);
        assert_eq!(Format::Jsonl.resolve(Path::new("notes.txt")), Format::Jsonl);
    }

    #[test]
    fn zstd_and_gzip_streams() {
        let dir = tempfile::tempdir().unwrap();
        let zst = dir.path().join("d.jsonl.zst");
        let mut enc = zstd::Encoder::new(File::create(&zst).unwrap(), 3).unwrap();
        enc.write_all(b"{\"text\": \"un\"}\n\n{\"text\": \"deux\"}\n").unwrap();
        enc.finish().unwrap();
        assert_eq!(docs(&zst, Format::Auto).unwrap(), ["un", "deux"]);
        // Two gzip members back to back (what `cat a.gz b.gz` makes) are one stream.
        let gz = dir.path().join("t.txt.gz");
        let mut bytes = Vec::new();
        for part in ["Bonjour ", "le monde"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(part.as_bytes()).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        std::fs::write(&gz, bytes).unwrap();
        assert_eq!(docs(&gz, Format::Auto).unwrap(), ["Bonjour le monde"]);
    }

    #[test]
    fn parquet_column_and_errors() {
        use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("un"), None, Some("trois")]));
        let id: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_from_iter([("id", id), ("text", text)]).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        assert_eq!(docs(&path, Format::Auto).unwrap(), ["un", "", "trois"]);
        let mut none = Vec::new();
        let err = read_documents(&path, Format::Auto, "body", &AtomicU64::new(0), &mut |d| {
            none.push(d);
            true
        })
        .unwrap_err();
        assert_eq!(err.problem, "no column `body` (columns: id, text)");
        let err = read_documents(&path, Format::Auto, "id", &AtomicU64::new(0), &mut |_| true).unwrap_err();
        assert_eq!(err.problem, "column `id` holds Int32, not strings");
        std::fs::write(&path, b"PAR1 nope").unwrap();
        assert!(docs(&path, Format::Auto).unwrap_err().problem.starts_with("not a Parquet file"));
    }
}
