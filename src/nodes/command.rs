//! `command`: run a shell command with declared inputs and outputs.
//!
//! The command runs with `sh -c` in the project root. It sees:
//! - `$OUT`: the (empty) directory that becomes the artifact; declared
//!   `outputs` must exist there when it exits 0;
//! - `$IN`: the artifact directory of its single input (when there is one);
//! - `$IN_<NAME>`: the directories of input reference `<NAME>` (upper-cased,
//!   non-alphanumerics as `_`), space separated for a family;
//! - `$WORK`: a directory that survives a crash of the same key;
//! - `$CUDA_VISIBLE_DEVICES`: the GPUs reserved by `resources: {gpu: N}`;
//! - the `env:` mapping.
//!
//! Files the command reads from the project go in `deps:` (paths or globs):
//! they are hashed by content, so editing one reruns the node. The command
//! runs in its own process group and dies with scalemake (SIGKILL included).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::{NodeCtx, NodeError, NodeKind, Progress};
use crate::process::spawn_group;
use crate::settings::{settings, FieldType, Schema, Settings, Value};

/// Runs the user's command as a background job of a guard shell that leads
/// its own process group. The guard gets SIGTERM when scalemake dies
/// (PDEATHSIG, even on SIGKILL) or cancels, and then kills the whole group:
/// PDEATHSIG alone would reach only the direct child, not what it started.
const GUARD: &str = r#"trap 'kill -KILL 0' TERM; eval "$SCALEMAKE_CMD" & wait $!"#;

settings! {
    /// The settings of a `command` node.
    pub struct CommandParams {
        /// shell command (sh -c), run in the project root
        cmd: String = [FieldType::Str] required,
        /// project files it reads (paths or globs), hashed by content
        deps: Vec<String> = [FieldType::List(Box::new(FieldType::Str))] default(Vec::<String>::new()),
        /// files it must create under $OUT
        outputs: Vec<String> = [FieldType::List(Box::new(FieldType::RelPath))] default(Vec::<String>::new()),
        /// extra environment variables
        env: BTreeMap<String, String> = [FieldType::Dict(Box::new(FieldType::Str))] default(BTreeMap::<String, String>::new()),
    }
}

/// The `command` node kind.
pub struct Command {
    schema: Schema,
}

impl Command {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Command { schema: CommandParams::schema() }
    }
}

impl Default for Command {
    fn default() -> Self {
        Self::new()
    }
}

/// Environment variable name for an input reference: `train[model=a]` → `IN_TRAIN_MODEL_A_`.
fn input_var(reference: &str) -> String {
    let name: String =
        reference.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("IN_{name}")
}

impl NodeKind for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn file_inputs(&self, params: &Value) -> Vec<String> {
        CommandParams::read(params).map(|p| p.deps).unwrap_or_default()
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let CommandParams { cmd: cmd_text, outputs, env, .. } = ctx.settings()?;
        // `outputs` are relative and without `..`: the schema's `RelPath` checked that at load.
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(GUARD).env("SCALEMAKE_CMD", &cmd_text).current_dir(ctx.root()).stdin(Stdio::null());
        cmd.env("OUT", ctx.out_dir()).env("WORK", ctx.work_dir());
        let all: Vec<&Path> = ctx.inputs().iter().flat_map(|i| i.artifacts.iter().map(|a| a.dir.as_path())).collect();
        if let [only] = all.as_slice() {
            cmd.env("IN", only);
        }
        for input in ctx.inputs() {
            let dirs: Vec<String> = input.artifacts.iter().map(|a| a.dir.display().to_string()).collect();
            cmd.env(input_var(&input.reference), dirs.join(" "));
        }
        cmd.envs(&env);
        let log = ctx
            .log()
            .try_clone()
            .map_err(|e| NodeError::Failed(format!("cannot share the log with the command: {e}")))?;
        let log_err =
            log.try_clone().map_err(|e| NodeError::Failed(format!("cannot share the log with the command: {e}")))?;
        cmd.stdout(log).stderr(log_err);
        ctx.log_line(&format!("$ {cmd_text}"));
        ctx.progress(Progress::Message(truncate(&cmd_text, 60)));
        // SIGTERM, not SIGKILL: the guard must live to kill the group. Only
        // the GPUs the executor reserved for this node are visible.
        let mut child = spawn_group(&mut cmd, libc::SIGTERM, ctx.gpus())
            .map_err(|e| NodeError::Failed(format!("cannot start sh: {e}")))?;
        let pgid = child.id() as i32;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if ctx.is_cancelled() => {
                    // SAFETY: signalling the child's own process group.
                    unsafe { libc::kill(-pgid, libc::SIGTERM) };
                    std::thread::sleep(Duration::from_millis(200));
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    let _ = child.wait();
                    return Err(NodeError::Cancelled);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(NodeError::Failed(format!("waiting for the command: {e}"))),
            }
        };
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            };
            return Err(NodeError::Failed(format!("command {how}: {}", truncate(&cmd_text, 120))));
        }
        let missing: Vec<&String> = outputs.iter().filter(|o| !ctx.out_dir().join(o).exists()).collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(NodeError::Failed(format!(
                "command succeeded but did not create declared output(s) in $OUT: {}",
                list.join(", ")
            )));
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= max && !s.contains('\n') {
        return line.to_string();
    }
    let cut: String = line.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_vars_are_shell_names() {
        assert_eq!(input_var("train[model=a]"), "IN_TRAIN_MODEL_A_");
        assert_eq!(input_var("corpus"), "IN_CORPUS");
    }
}
