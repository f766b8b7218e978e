//! Failure injection for the commit path, so tests can show that a full disk
//! at the worst moment leaves no partial artifact.
//!
//! `SCALEMAKE_INJECT_FAULT=manifest` makes the manifest write stop half-way
//! with `ENOSPC` (what a full disk does); `=rename` fails the publishing
//! rename the same way. Unset (always, outside tests) it costs one
//! environment lookup per commit.

use std::io::{self, Write};

/// The environment variable that arms a fault.
const FAULT_ENV: &str = "SCALEMAKE_INJECT_FAULT";

/// Where a fault can be injected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Point {
    /// Writing `manifest.json` into the staging directory.
    Manifest,
    /// Renaming the staging directory into `objects/`.
    Rename,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Manifest => "manifest",
            Point::Rename => "rename",
        }
    }
}

fn armed(point: Point) -> bool {
    std::env::var(FAULT_ENV).is_ok_and(|v| v == point.name())
}

fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// Fails with `ENOSPC` if `point` is armed.
pub(super) fn inject(point: Point) -> io::Result<()> {
    if armed(point) {
        return Err(disk_full());
    }
    Ok(())
}

/// `write_all`, except that an armed `point` writes half and then fails as
/// a full disk would.
pub(super) fn write_all(file: &mut impl Write, bytes: &[u8], point: Point) -> io::Result<()> {
    if armed(point) {
        file.write_all(&bytes[..bytes.len() / 2])?;
        return Err(disk_full());
    }
    file.write_all(bytes)
}
