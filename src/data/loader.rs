//! Reads token shards for training and evaluation.
//!
//! [`TokenStream`] memory-maps every shard of a split (validating each
//! header) and presents them as one sequence; windows may cross shard
//! boundaries. [`Batches`] cuts it into `(B, T+1)` windows — inputs are the
//! first `T` tokens of a row, targets the last `T` — at random positions from
//! a seeded ChaCha8 generator (reproducible across platforms and versions) for
//! training, or as epochs of a seeded shuffle of non-overlapping windows (no
//! token seen twice before the whole split has been), or sequentially for
//! evaluation, never past the end.
//! [`prefetch`] moves batch assembly to a background thread so the training
//! step never waits for it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use memmap2::Mmap;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::shard::{validate, ShardError, TokenWidth, HEADER_BYTES};

/// All shards of one split, as one token sequence.
pub struct TokenStream {
    maps: Vec<(Mmap, TokenWidth)>,
    /// `starts[i]` is the index of shard `i`'s first token; last entry = total.
    starts: Vec<usize>,
}

impl TokenStream {
    /// Maps `paths` in order, validating each.
    pub fn open(paths: &[PathBuf]) -> Result<Self, ShardError> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut starts = vec![0];
        for path in paths {
            let io = |source| ShardError::Io { path: path.clone(), source };
            let file = File::open(path).map_err(io)?;
            // SAFETY: shards live in the cache, which is never modified in place.
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            let (count, width) = validate(path, &map)?;
            starts.push(starts.last().expect("non-empty") + count);
            maps.push((map, width));
        }
        Ok(TokenStream { maps, starts })
    }

    /// Opens the shards `<split>_*.bin` of a shards artifact directory.
    pub fn open_split(dir: &Path, split: &str) -> Result<Self, ShardError> {
        let prefix = format!("{split}_");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| ShardError::Io { path: dir.to_path_buf(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "bin")
                    && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(ShardError::Invalid {
                path: dir.to_path_buf(),
                problem: format!("no `{split}_*.bin` shards here"),
            });
        }
        Self::open(&paths)
    }

    /// Number of tokens in all shards.
    pub fn len(&self) -> usize {
        *self.starts.last().expect("non-empty")
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies tokens `start .. start + out.len()` into `out`, crossing shards.
    /// Panics if the range runs past the end (callers check).
    fn copy_window(&self, start: usize, out: &mut [u32]) {
        assert!(start + out.len() <= self.len(), "window past the end of the stream");
        let mut pos = start;
        let mut filled = 0;
        while filled < out.len() {
            let shard = self.starts.partition_point(|&s| s <= pos) - 1;
            let local = pos - self.starts[shard];
            let available = self.starts[shard + 1] - pos;
            let n = available.min(out.len() - filled);
            let (map, width) = &self.maps[shard];
            let w = width.bytes();
            let bytes = &map[HEADER_BYTES + w * local..HEADER_BYTES + w * (local + n)];
            let dst = &mut out[filled..filled + n];
            match width {
                TokenWidth::U16 => {
                    for (d, src) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                        *d = u32::from(u16::from_le_bytes([src[0], src[1]]));
                    }
                }
                TokenWidth::U32 => {
                    for (d, src) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                        *d = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
                    }
                }
            }
            filled += n;
            pos += n;
        }
    }
}

/// How windows are chosen.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    /// Uniformly random start positions from a seeded generator (training).
    Random {
        /// Seed of the ChaCha8 generator.
        seed: u64,
    },
    /// Epochs over the split: the non-overlapping windows at positions
    /// k·T (each `T + 1` tokens: inputs and next-token targets) in an order
    /// shuffled afresh each epoch from the seed.
    Epochs {
        /// Seed of the ChaCha8 generator behind every epoch's shuffle.
        seed: u64,
    },
    /// Consecutive windows from the start, stride `T` (evaluation); ends when
    /// no full window remains.
    Sequential,
}

/// An iterator of `(B, T+1)` batches, row-major, `B * (T + 1)` tokens each.
pub struct Batches {
    stream: Arc<TokenStream>,
    batch: usize,
    context: usize,
    order: Order,
    rng: ChaCha8Rng,
    next: usize,
    /// [`Order::Epochs`]: this epoch's window order (indices of windows).
    shuffled: Vec<u32>,
}

impl Batches {
    /// Batches of `batch` rows of `context + 1` tokens. Fails if the stream
    /// is shorter than one row.
    pub fn new(stream: Arc<TokenStream>, batch: usize, context: usize, order: Order) -> Result<Self, String> {
        if stream.len() < context + 1 {
            return Err(format!("{} tokens cannot fill one window of {} tokens", stream.len(), context + 1));
        }
        let seed = match order {
            Order::Random { seed } | Order::Epochs { seed } => seed,
            Order::Sequential => 0,
        };
        if matches!(order, Order::Epochs { .. }) && (stream.len() - 1) / context > u32::MAX as usize {
            return Err(format!("{} tokens make more windows of {context} than an epoch can index", stream.len()));
        }
        Ok(Batches {
            stream,
            batch,
            context,
            order,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next: 0,
            shuffled: Vec::new(),
        })
    }

    /// The next window's start under [`Order::Epochs`], shuffling a new
    /// epoch (Fisher–Yates, from the one generator) when the last is used up.
    fn next_epoch_start(&mut self) -> usize {
        if self.next == self.shuffled.len() {
            let windows = (self.stream.len() - 1) / self.context;
            self.shuffled = (0..windows as u32).collect();
            for i in (1..windows).rev() {
                let j = self.below(i as u64 + 1) as usize;
                self.shuffled.swap(i, j);
            }
            self.next = 0;
        }
        self.next += 1;
        self.shuffled[self.next - 1] as usize * self.context
    }

    /// Advances past `n` batches without reading them: how a resumed run
    /// finds its place in the data (random order costs only the draws).
    pub fn skip_batches(&mut self, n: u64) {
        let row = self.context + 1;
        let last_start = (self.stream.len() - row) as u64;
        for _ in 0..n * self.batch as u64 {
            match self.order {
                Order::Random { .. } => {
                    self.below(last_start + 1);
                }
                Order::Epochs { .. } => {
                    self.next_epoch_start();
                }
                Order::Sequential => self.next += self.context,
            }
        }
    }

    /// A uniform integer in `0..n` (rejection sampling: no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.rng.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

impl Iterator for Batches {
    type Item = Vec<u32>;

    fn next(&mut self) -> Option<Vec<u32>> {
        let row = self.context + 1;
        let last_start = self.stream.len() - row;
        let mut out = vec![0u32; self.batch * row];
        for r in 0..self.batch {
            let start = match self.order {
                Order::Random { .. } => self.below(last_start as u64 + 1) as usize,
                Order::Epochs { .. } => self.next_epoch_start(),
                Order::Sequential => {
                    if self.next > last_start {
                        if r == 0 {
                            return None;
                        }
                        out.truncate(r * row);
                        break;
                    }
                    let s = self.next;
                    self.next += self.context;
                    s
                }
            };
            self.stream.copy_window(start, &mut out[r * row..(r + 1) * row]);
        }
        Some(out)
    }
}

/// Runs `batches` on a background thread, keeping up to `depth` ready.
pub fn prefetch(batches: Batches, depth: usize) -> Receiver<Vec<u32>> {
    let (tx, rx) = mpsc::sync_channel(depth.max(1));
    std::thread::spawn(move || {
        for b in batches {
            if tx.send(b).is_err() {
                break; // the consumer hung up
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shard::write_shard;

    fn stream_of(shards: &[&[u16]]) -> (tempfile::TempDir, Arc<TokenStream>) {
        let dir = tempfile::tempdir().unwrap();
        for (i, s) in shards.iter().enumerate() {
            write_shard(&dir.path().join(format!("train_{i:06}.bin")), s).unwrap();
        }
        let stream = TokenStream::open_split(dir.path(), "train").unwrap();
        (dir, Arc::new(stream))
    }

    #[test]
    fn windows_cross_shard_boundaries() {
        let (_d, s) = stream_of(&[&[0, 1, 2], &[3], &[4, 5, 6, 7]]);
        assert_eq!(s.len(), 8);
        let mut out = [0u32; 6];
        s.copy_window(1, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn epochs_use_every_window_once_before_any_twice() {
        let data: Vec<u16> = (0..100).collect();
        let (_d, s) = stream_of(&[&data[..37], &data[37..]]);
        // 99 / 10 = 9 windows per epoch, starts 0, 10, …, 80; batches of 4 cross epochs.
        let starts = |seed| -> Vec<u32> {
            Batches::new(s.clone(), 4, 10, Order::Epochs { seed })
                .unwrap()
                .take(9)
                .flat_map(|b| b.chunks(11).map(|r| r[0]).collect::<Vec<_>>())
                .collect()
        };
        let a = starts(5);
        for epoch in a.chunks(9) {
            let mut sorted = epoch.to_vec();
            sorted.sort();
            assert_eq!(sorted, (0..9).map(|k| 10 * k).collect::<Vec<u32>>(), "one epoch: {epoch:?}");
        }
        assert_ne!(a[..9], a[9..18], "each epoch is shuffled afresh");
        assert_eq!(a, starts(5), "the seed fixes the order");
        assert_ne!(a, starts(6));
        // A resumed run skips to the same place.
        let mut resumed = Batches::new(s.clone(), 4, 10, Order::Epochs { seed: 5 }).unwrap();
        resumed.skip_batches(3);
        let next: Vec<u32> = resumed.next().unwrap().chunks(11).map(|r| r[0]).collect();
        assert_eq!(next, a[12..16]);
    }

    #[test]
    fn sequential_windows_cover_the_data_and_stop_before_the_end() {
        let data: Vec<u16> = (0..100).collect();
        let (_d, s) = stream_of(&[&data[..37], &data[37..]]);
        let rows: Vec<Vec<u32>> = Batches::new(s, 4, 10, Order::Sequential)
            .unwrap()
            .flat_map(|b| b.chunks(11).map(<[u32]>::to_vec).collect::<Vec<_>>())
            .collect();
        // Starts 0, 10, …, 80: every window complete, 89 = last start ≤ 100 - 11.
        assert_eq!(rows.len(), 9);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r[0] as usize, 10 * i);
            assert_eq!(r.len(), 11);
        }
        let covered: std::collections::BTreeSet<u32> = rows.iter().flatten().copied().collect();
        assert_eq!(covered.len(), 91);
    }

    #[test]
    fn random_windows_are_reproducible_and_in_range() {
        let data: Vec<u16> = (0..1000).collect();
        let (_d, s) = stream_of(&[&data]);
        let a: Vec<Vec<u32>> = Batches::new(s.clone(), 8, 16, Order::Random { seed: 7 }).unwrap().take(5).collect();
        let b: Vec<Vec<u32>> =
            prefetch(Batches::new(s.clone(), 8, 16, Order::Random { seed: 7 }).unwrap(), 2).iter().take(5).collect();
        let c: Vec<Vec<u32>> = Batches::new(s, 8, 16, Order::Random { seed: 8 }).unwrap().take(5).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        for row in a.iter().flat_map(|b| b.chunks(17)) {
            assert!(row.windows(2).all(|w| w[1] == w[0] + 1), "rows are contiguous");
            assert!(*row.last().unwrap() < 1000);
        }
    }

    #[test]
    fn skipping_lands_where_reading_would() {
        let data: Vec<u16> = (0..1000).collect();
        let (_d, s) = stream_of(&[&data]);
        for order in [Order::Random { seed: 3 }, Order::Sequential] {
            let read: Vec<Vec<u32>> = Batches::new(s.clone(), 4, 16, order).unwrap().skip(5).take(3).collect();
            let mut skipped = Batches::new(s.clone(), 4, 16, order).unwrap();
            skipped.skip_batches(5);
            assert_eq!(read, skipped.take(3).collect::<Vec<_>>(), "{order:?}");
        }
    }

    #[test]
    fn narrow_and_wide_shards_read_as_one_stream() {
        use crate::data::shard::{ShardFile, TokenWidth};
        let (dir, _) = stream_of(&[&[1, 2]]);
        let mut wide = ShardFile::create(&dir.path().join("train_000001.bin"), TokenWidth::U32).unwrap();
        wide.write(&[100_000, 100_001]).unwrap();
        wide.finish().unwrap();
        let s = TokenStream::open_split(dir.path(), "train").unwrap();
        let mut out = [0u32; 4];
        s.copy_window(0, &mut out);
        assert_eq!(out, [1, 2, 100_000, 100_001]);
    }

    #[test]
    fn too_short_streams_are_refused() {
        let (_d, s) = stream_of(&[&[1, 2, 3]]);
        assert!(Batches::new(s, 1, 3, Order::Sequential).is_err());
    }
}
