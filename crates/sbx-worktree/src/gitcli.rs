//! Running the `git` CLI for the few operations gix lacks. Every user-derived value is passed after `--` or as
//! the value of an `=`-joined option, and names are validated before they get here, so nothing can be read as an
//! option. Environment variables that would redirect git to another repository are removed.
//!
//! Every run also overrides, on the command line (which beats every config file), the settings through which a
//! repository's files could make git run a program: hooks, the fsmonitor daemon, `ext::` transports. Sandbox
//! worktrees and clones are writable by the agent, so nothing found in them may execute on the host.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::error::CommandError;

/// Variables that point git at another repository, index or worktree; a caller's environment must not leak them in.
const REPO_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
];

/// `-c` settings given to every git run: no hooks, no fsmonitor program, no `ext::` remote helpers.
pub(crate) const SAFE_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.ext.allow=never",
];

/// Run `git -C <dir> <args…>` and return its stdout.
pub(crate) fn run(dir: &Path, args: &[&OsStr]) -> Result<String, CommandError> {
    run_with(dir, &[], args)
}

/// Run git in the worktree `work_tree` of the repository `git_dir`, both given explicitly, so a `.git` file the
/// worktree may contain is never consulted.
pub(crate) fn run_in_worktree(
    git_dir: &Path,
    work_tree: &Path,
    args: &[&OsStr],
) -> Result<String, CommandError> {
    let mut git_dir_arg = std::ffi::OsString::from("--git-dir=");
    git_dir_arg.push(git_dir);
    let mut work_tree_arg = std::ffi::OsString::from("--work-tree=");
    work_tree_arg.push(work_tree);
    run_with(work_tree, &[&git_dir_arg, &work_tree_arg], args)
}

fn run_with(dir: &Path, global: &[&OsStr], args: &[&OsStr]) -> Result<String, CommandError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    for setting in SAFE_CONFIG {
        cmd.arg("-c").arg(setting);
    }
    cmd.args(global).args(args);
    for var in REPO_ENV {
        cmd.env_remove(var);
    }
    // Never wait for an editor or a credential prompt.
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true");
    let describe = || {
        let mut line = format!("git -C {}", dir.display());
        for arg in global.iter().chain(args) {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    };
    let output = cmd.output().map_err(|e| CommandError {
        command: describe(),
        status: format!("could not start git: {e}; is git installed and on PATH?"),
        stderr: String::new(),
    })?;
    if !output.status.success() {
        return Err(CommandError {
            command: describe(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
