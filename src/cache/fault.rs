//! Failure injection for the commit path, so tests can show that a full disk
//! at the worst moment leaves no partial artifact.
//!
//! `SCALEMAKE_INJECT_FAULT=manifest` makes the manifest write stop half-way
//! with `ENOSPC` (what a full disk does); `=rename` fails the publishing
//! rename the same way; `=upload` pauses an upload to the remote after its
//! first part (see [`pause`]), so a test can kill the server mid-upload.
//! Unset (always, outside tests) it costs one environment lookup per commit.

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
    /// A multipart upload to the remote, after its first part.
    Upload,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Manifest => "manifest",
            Point::Rename => "rename",
            Point::Upload => "upload",
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

/// If `point` is armed: creates `<point>.reached` in `$SCALEMAKE_FAULT_DIR`
/// and waits until the test creates `<point>.resume` there. A handshake
/// rather than a sleep, so the test acts at exactly this moment.
pub(super) fn pause(point: Point) {
    let Some(dir) = std::env::var_os("SCALEMAKE_FAULT_DIR").filter(|_| armed(point)) else { return };
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::write(dir.join(format!("{}.reached", point.name())), b"");
    while !dir.join(format!("{}.resume", point.name())).exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
