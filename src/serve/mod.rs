//! `scalemake serve`: a live dashboard of a study on a local web page — the
//! DAG with each node's state, every run's loss curves as they land, the
//! current fits, a runs table and each node's log.
//!
//! Two layers: [`watch`] is the read-only model (what the cache and the
//! running nodes wrote, through the same code `status`, `fit` and the
//! train readers use), [`http`] serves it. The page (`assets/`) is plain
//! JavaScript and CSS embedded in the binary: no CDN, no build step, works
//! offline.
//!
//! Invariants: serve never writes to the cache (it opens it with
//! [`crate::cache::Cache::open_read_only`], surveys without saving the
//! stat cache, and detects a build by reading the kernel's lock table
//! rather than taking a lock); it has only GET routes and none runs or
//! changes anything; it binds 127.0.0.1 unless told otherwise.

pub mod http;
pub mod watch;

use std::net::SocketAddr;

/// Why `serve` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, or not this machine's).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    /// The server stopped with an error.
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}
