//! The remote cache against real storage: an S3 server (s3s-fs, started
//! here on 127.0.0.1; `scripts/test.sh` installs it) and a `file://`
//! directory, each through the same scenarios: two checkouts sharing one
//! remote, a corrupted remote object, an upload killed half-way, a
//! read-only machine, push/pull, and `gc --remote`.

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, Run};

/// Two nodes: `gen` makes a 12 MB file (a multipart upload), a small
/// file, an executable, a symlink and an empty directory; `use` reads it.
/// `gen`'s bytes are random, so only a fetch can give a second checkout
/// the same artifact.
const EXPERIMENT: &str = r##"
nodes:
  gen: {kind: command, cmd: 'echo gen >> runs.log && head -c 12000000 /dev/urandom > $OUT/big.bin && echo hi > $OUT/small.txt && mkdir $OUT/empty && ln -s small.txt $OUT/link && printf "#!/bin/sh\n" > $OUT/run.sh && chmod +x $OUT/run.sh'}
  use: {kind: command, input: gen, cmd: 'echo use >> runs.log && cat $IN/small.txt $IN/link > $OUT/x'}
"##;

const ACCESS_KEY: &str = "scalemake-test";
const SECRET_KEY: &str = "scalemake-secret";
const BUCKET: &str = "team";

/// The s3s-fs binary: `$SCALEMAKE_S3S_FS`, else where scripts/test.sh installs it.
fn s3s_fs() -> PathBuf {
    let path = std::env::var_os("SCALEMAKE_S3S_FS").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache/scalemake/tools/bin/s3s-fs")
    });
    assert!(
        path.is_file(),
        "the S3 test server is missing at {}: run scripts/test.sh (it runs `cargo install s3s-fs --version =0.14.1 --locked --features binary --root ~/.cache/scalemake/tools`) or set SCALEMAKE_S3S_FS",
        path.display()
    );
    path
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    File,
    S3,
}

/// One remote and the directory its objects lie in.
struct Remote {
    kind: Kind,
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

impl Remote {
    fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut remote = Remote { kind, dir, port, server: None };
        if let Kind::S3 = kind {
            std::fs::create_dir_all(remote.dir.path().join(BUCKET)).unwrap();
            remote.start();
        }
        remote
    }

    fn url(&self) -> String {
        match self.kind {
            Kind::File => format!("file://{}", self.dir.path().display()),
            Kind::S3 => format!("s3://{BUCKET}/study"),
        }
    }

    /// Where the objects lie on disk (the server's files for S3).
    fn storage(&self) -> PathBuf {
        match self.kind {
            Kind::File => self.dir.path().to_path_buf(),
            Kind::S3 => self.dir.path().join(BUCKET).join("study"),
        }
    }

    /// Starts s3s-fs on its port and waits until it accepts connections.
    fn start(&mut self) {
        let child = Command::new(s3s_fs())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of the S3 server.
    fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            child.kill().expect("kill s3s-fs");
            child.wait().expect("reap s3s-fs");
        }
    }

    /// scalemake in `project` with this remote.
    fn command(&self, project: &Project, args: &[&str]) -> Command {
        let mut cmd = project.command(args);
        cmd.env("SCALEMAKE_REMOTE", self.url()).env_remove("SCALEMAKE_REMOTE_READ_ONLY");
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1");
        cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)).env("AWS_ALLOW_HTTP", "true");
        cmd
    }

    fn sm(&self, project: &Project, args: &[&str]) -> Run {
        Run::from(self.command(project, args).output().expect("run scalemake"))
    }

    /// Keys whose manifests are published.
    fn published(&self) -> BTreeSet<String> {
        let dir = self.storage().join("manifests");
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(String::from)).collect()
            })
            .unwrap_or_default()
    }

    /// Stored data files named `name` (any key), for corrupting or counting.
    fn data_files(&self, name: &str) -> Vec<PathBuf> {
        walk(&self.storage().join("data")).into_iter().filter(|p| p.file_name().is_some_and(|n| n == name)).collect()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.kill_server();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The artifact digest of each node with a cached object.
fn digests(project: &Project) -> Vec<(String, String)> {
    project
        .keys()
        .into_iter()
        .filter_map(|(node, key)| {
            let manifest: serde_json::Value =
                serde_json::from_str(&project.read(&format!("cache/objects/{}/manifest.json", key?))).ok()?;
            Some((node, manifest["artifact"].as_str().expect("an artifact digest").to_string()))
        })
        .collect()
}

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

fn second_checkout_builds_nothing_and_gets_identical_artifacts(kind: Kind) {
    let remote = Remote::new(kind);
    let a = Project::new(EXPERIMENT);
    let first = remote.sm(&a, &["run"]);
    assert_ok(&first);
    assert!(first.stderr.contains("2 built, 0 fetched, 0 fresh, 2 uploaded"), "{}", first.stderr);
    assert_eq!(remote.published().len(), 2);

    let b = Project::new(EXPERIMENT);
    let status = remote.sm(&b, &["status"]);
    assert!(status.stdout.contains("gen  never built; the remote has it"), "{}", status.stdout);
    let second = remote.sm(&b, &["run"]);
    assert_ok(&second);
    assert!(second.stderr.contains("0 built, 2 fetched, 0 fresh"), "{}", second.stderr);
    assert!(
        second.stderr.contains("fetched gen (11.4 MiB in") && second.stderr.contains("digests verified"),
        "{}",
        second.stderr
    );
    assert!(b.runs().is_empty(), "the second checkout ran {:?}", b.runs());
    assert_eq!(digests(&a), digests(&b));
    assert_ok(&remote.sm(&b, &["verify"]));
    let out = b.artifact("gen");
    assert_eq!(std::fs::read_link(out.join("link")).unwrap(), Path::new("small.txt"));
    assert!(out.join("empty").is_dir());
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(std::fs::metadata(out.join("run.sh")).unwrap().permissions().mode() & 0o111, 0);
    assert!(remote.sm(&b, &["run"]).stderr.contains("0 built, 0 fetched, 2 fresh"));
}

fn corrupt_remote_object_is_detected_and_rebuilt(kind: Kind) {
    let remote = Remote::new(kind);
    let a = Project::new(EXPERIMENT);
    assert_ok(&remote.sm(&a, &["run"]));
    let [big] = remote.data_files("big.bin").try_into().expect("one stored big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[1_000_000] ^= 1;
    std::fs::write(&big, bytes).unwrap();

    let b = Project::new(EXPERIMENT);
    let run = remote.sm(&b, &["run"]);
    assert_ok(&run);
    assert!(
        run.stderr.contains("gen: not fetched (remote copy of")
            && run.stderr.contains("is corrupt: content differs from manifest: big.bin"),
        "{}",
        run.stderr
    );
    // gen's rebuilt bytes differ, so `use` has a new key the remote lacks.
    assert!(run.stderr.contains("2 built, 0 fetched"), "{}", run.stderr);
    assert_eq!(b.runs(), ["gen", "use"]);
    assert_eq!(b.staging_dirs(), 0, "a rejected copy was left in staging");
    assert_ok(&remote.sm(&b, &["verify"]));
    // The rebuild replaced the damaged remote copy: a third checkout fetches it whole.
    let c = Project::new(EXPERIMENT);
    let third = remote.sm(&c, &["run", "gen"]);
    assert!(third.stderr.contains("0 built, 1 fetched"), "{}", third.stderr);
    assert_eq!(digests(&c)[0], digests(&b)[0]);
}

fn killed_upload_leaves_nothing_visible_and_the_next_run_completes(kind: Kind) {
    let mut remote = Remote::new(kind);
    let a = Project::new(EXPERIMENT);
    let faults = tempfile::tempdir().unwrap();
    let mut run = remote.command(&a, &["run", "gen"]);
    run.env("SCALEMAKE_INJECT_FAULT", "upload")
        .env("SCALEMAKE_FAULT_DIR", faults.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = run.spawn().expect("spawn scalemake");
    // The upload of big.bin has sent its first part and waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !faults.path().join("upload.reached").exists() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let gen_key = a.keys()[0].1.clone().expect("gen is built");
    let mut partial = Vec::new();
    match kind {
        // The server dies mid-upload; scalemake goes on and finds it gone.
        Kind::S3 => {
            remote.kill_server();
            std::fs::write(faults.path().join("upload.resume"), b"").unwrap();
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "a failed upload fails the run: {stderr}");
            assert!(stderr.contains("WARNING gen was not uploaded") && stderr.contains("1 not uploaded"), "{stderr}");
            remote.start();
        }
        // Writing to a shared directory, scalemake itself is what dies.
        Kind::File => {
            child.kill().unwrap();
            child.wait().unwrap();
            // What it was writing stays under a staging name no listing
            // shows; a day on, `gc --remote` takes it (made a day old here).
            partial = staging_files(&remote.storage());
            assert!(!partial.is_empty(), "no staging file: {:?}", walk(&remote.storage()));
            let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86400);
            for path in &partial {
                let file = std::fs::File::options().write(true).open(path).unwrap();
                file.set_modified(two_days_ago).unwrap();
            }
        }
    }
    assert!(!remote.published().contains(&gen_key), "a killed upload published its manifest");
    assert!(
        remote.data_files("big.bin").is_empty(),
        "a half-uploaded file is visible: {:?}",
        remote.data_files("big.bin")
    );

    // A second checkout finds nothing to fetch and builds; then the first pushes, and a third fetches it all.
    let b = Project::new(EXPERIMENT);
    let built = remote.sm(&b, &["run", "gen"]);
    assert!(built.stderr.contains("1 built, 0 fetched"), "{}", built.stderr);
    let pushed = remote.sm(&a, &["push", "gen"]);
    assert_ok(&pushed);
    let c = Project::new(EXPERIMENT);
    let fetched = remote.sm(&c, &["run", "gen"]);
    assert!(fetched.stderr.contains("0 built, 1 fetched"), "{}", fetched.stderr);
    assert_ok(&remote.sm(&c, &["verify"]));
    if matches!(kind, Kind::File) {
        let gc = remote.sm(&c, &["gc", "--remote", "--max-age", "3650d", "--delete"]);
        let removed = format!("removed: 0 object(s) and {} partial file(s)", partial.len());
        assert!(gc.stdout.contains(&removed), "{}", gc.stdout);
        assert!(staging_files(&remote.storage()).is_empty(), "{:?}", walk(&remote.storage()));
        assert_ok(&remote.sm(&Project::new(EXPERIMENT), &["run", "gen"]));
    }
}

/// object_store's staging files (`big.bin#3`) under `dir`.
fn staging_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains('#'))).collect()
}

fn read_only_uploads_nothing(kind: Kind) {
    let remote = Remote::new(kind);
    let laptop = Project::new(EXPERIMENT);
    let run = remote.sm(&laptop, &["run", "--remote-read-only"]);
    assert_ok(&run);
    assert!(run.stderr.contains("2 built, 0 fetched, 0 fresh in"), "{}", run.stderr);
    assert!(
        remote.published().is_empty() && walk(&remote.storage()).is_empty(),
        "a read-only run wrote {:?}",
        walk(&remote.storage())
    );
    let push = remote.sm(&laptop, &["push", "--remote-read-only"]);
    assert_eq!(push.code, 2, "{}", push.stderr);
    // What CI uploads, the laptop reads.
    let ci = Project::new(EXPERIMENT);
    assert_ok(&remote.sm(&ci, &["run"]));
    let reader = Project::new(EXPERIMENT);
    let fetched = remote.sm(&reader, &["run", "--remote-read-only"]);
    assert!(fetched.stderr.contains("0 built, 2 fetched"), "{}", fetched.stderr);
    assert!(walk(&remote.storage().join("used")).is_empty(), "a read-only fetch recorded its use");
}

fn push_pull_and_gc(kind: Kind) {
    let remote = Remote::new(kind);
    let a = Project::new(EXPERIMENT);
    let local = a.sm(&["run"]);
    assert_ok(&local);
    let pushed = remote.sm(&a, &["push"]);
    assert!(pushed.stdout.contains("2 pushed, 0 already on"), "{}", pushed.stdout);
    assert!(remote.sm(&a, &["push"]).stdout.contains("0 pushed, 2 already on"));
    let b = Project::new(EXPERIMENT);
    let pulled = remote.sm(&b, &["pull"]);
    assert_ok(&pulled);
    assert!(pulled.stdout.contains("2 pulled, 0 already here, 0 not on"), "{}", pulled.stdout);
    assert!(remote.sm(&b, &["status"]).stdout.contains("all 2 node(s) fresh"));
    assert_eq!(digests(&a), digests(&b));

    // The experiment references both keys: a zero budget removes nothing.
    let kept = remote.sm(&b, &["gc", "--remote", "--max-size", "0", "--delete"]);
    assert!(kept.stdout.contains("removed: 0 object(s)"), "{}", kept.stdout);
    // Another experiment references neither: both go, the manifests first.
    b.write("other.yaml", "nodes:\n  x: {kind: command, cmd: 'true'}\n");
    let gone = remote.sm(&b, &["gc", "--remote", "--max-size", "0", "--delete", "other.yaml"]);
    assert!(gone.stdout.contains("removed: 2 object(s)"), "{}", gone.stdout);
    assert!(remote.published().is_empty() && remote.data_files("big.bin").is_empty());
}

macro_rules! both {
    ($($name:ident),*) => {
        mod s3 {
            $(#[test] fn $name() { super::$name(super::Kind::S3) })*
        }
        mod file {
            $(#[test] fn $name() { super::$name(super::Kind::File) })*
        }
    };
}

both!(
    second_checkout_builds_nothing_and_gets_identical_artifacts,
    corrupt_remote_object_is_detected_and_rebuilt,
    killed_upload_leaves_nothing_visible_and_the_next_run_completes,
    read_only_uploads_nothing,
    push_pull_and_gc
);
