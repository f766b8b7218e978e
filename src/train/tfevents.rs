//! TensorBoard event files (`events.out.tfevents.*`) of a run's scalars, so
//! that `tensorboard --logdir cache/` shows every run where researchers
//! already look.
//!
//! The format is TFRecord framing around `tensorflow.Event` protobufs: per
//! record, the length (u64 LE), its masked CRC-32C, the bytes, their masked
//! CRC-32C. The first event carries `file_version: "brain.Event:2"`; each
//! scalar is an event with `step`, `wall_time` and one `Summary.Value`
//! (`tag`, `simple_value`). Those few fields are encoded here by hand: a
//! protobuf dependency (and its code generator) for three messages would
//! weigh more than the encoding, and TensorBoard's own reader checks it in
//! `tests/train.rs`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes one event file.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `events.out.tfevents.<wall_time>.scalemake` in `dir` (made if
    /// missing), starting with the file-version event.
    pub fn create(dir: &Path, wall_time: f64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("events.out.tfevents.{}.scalemake", wall_time as u64));
        let mut writer = EventWriter { file: BufWriter::new(File::create(&path)?), path };
        let mut event = Vec::new();
        field_double(&mut event, 1, wall_time);
        field_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends scalar `tag` = `value` at `step`.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64, wall_time: f64) -> io::Result<()> {
        let mut summary_value = Vec::new();
        field_bytes(&mut summary_value, 1, tag.as_bytes());
        // simple_value: field 2, fixed32 (a float).
        key(&mut summary_value, 2, 5);
        summary_value.extend_from_slice(&(value as f32).to_le_bytes());
        let mut summary = Vec::new();
        field_bytes(&mut summary, 1, &summary_value);
        let mut event = Vec::new();
        field_double(&mut event, 1, wall_time);
        key(&mut event, 2, 0);
        varint(&mut event, step);
        field_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// Pushes what is buffered to the file (for readers of a live run).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.file.write_all(&len)?;
        self.file.write_all(&masked_crc(&len).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc(data).to_le_bytes())
    }
}

fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, field << 3 | wire_type);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_double(out: &mut Vec<u8>, field: u64, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// TFRecord's masked CRC-32C (Castagnoli).
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C, bitwise: event files are small (a few KB per run).
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn varints_and_records_are_framed() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), 1.0).unwrap();
        w.scalar("train/loss", 3, 2.5, 2.0).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let first = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), masked_crc(&bytes[..8]));
        let second_at = 12 + first + 4;
        assert!(bytes.len() > second_at + 12, "two records");
    }
}
