//! `sbx diff` and `sbx merge`: review and take back what a branch- or clone-mode sandbox did (sbx-worktree).

use std::io::Write;

use anyhow::{Context, Result, bail};
use sbx_worktree::{Host, MergeOutcome};
use serde_json::json;

use crate::cli::exit;
use crate::gitmode::GitSandbox;
use crate::home::Home;
use crate::output;
use crate::sandboxes::SandboxDir;

/// The sandbox's git side, or an error saying why there is nothing to review.
fn git_of(home: &Home, name: &str) -> Result<(GitSandbox, Host)> {
    let record = SandboxDir::new(home, name)?.load()?;
    let Some(git) = record.git else {
        bail!(
            "sandbox {name} shares its workspace directly, so its changes are already in place; `--branch auto` or \
             `--clone` at creation (`sbx create --branch auto ...`) gives a branch to review and merge"
        );
    };
    let host = Host::open(&git.repo).with_context(|| {
        format!(
            "cannot open the repository {} of sandbox {name}",
            git.repo.display()
        )
    })?;
    Ok((git, host))
}

/// `sbx diff NAME [--stat] [--json]`.
pub(crate) fn diff(home: &Home, name: &str, stat: bool, json: bool) -> Result<i32> {
    let (git, host) = git_of(home, name)?;
    let diff = host
        .diff(name)
        .with_context(|| format!("cannot diff sandbox {name} (branch {})", git.branch))?;
    let mut out = std::io::stdout().lock();
    if json {
        let value = json!({
            "sandbox": name,
            "branch": git.branch,
            "summary": diff.summary,
            "patch": if stat { None } else { Some(&diff.patch) },
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(0);
    }
    if stat {
        write!(out, "{}", diff.summary)?;
    } else if output::stdout_colours() {
        write!(out, "{}", colour_patch(&diff.patch))?;
    } else {
        write!(out, "{}", diff.patch)?;
    }
    Ok(0)
}

/// Colours a unified diff the way `git diff` does: headers bold, hunks cyan, additions green, removals red.
fn colour_patch(patch: &str) -> String {
    let mut out = String::with_capacity(patch.len() + patch.len() / 8);
    for line in patch.split_inclusive('\n') {
        let colour =
            if line.starts_with("+++") || line.starts_with("---") || line.starts_with("diff ") {
                "\x1b[1m"
            } else if line.starts_with("@@") {
                "\x1b[36m"
            } else if line.starts_with('+') {
                "\x1b[32m"
            } else if line.starts_with('-') {
                "\x1b[31m"
            } else {
                ""
            };
        if colour.is_empty() {
            out.push_str(line);
        } else {
            let (text, newline) = match line.strip_suffix('\n') {
                Some(t) => (t, "\n"),
                None => (line, ""),
            };
            out.push_str(&format!("{colour}{text}\x1b[0m{newline}"));
        }
    }
    out
}

/// `sbx merge NAME [--json]`.
pub(crate) fn merge(home: &Home, name: &str, json: bool) -> Result<i32> {
    let (git, host) = git_of(home, name)?;
    let outcome = match host.merge(name) {
        Ok(o) => o,
        Err(sbx_worktree::error::MergeError::Conflicts {
            branch,
            target,
            files,
        }) => {
            if json {
                let value = json!({"sandbox": name, "outcome": "conflict", "branch": branch,
                    "target": target, "files": files});
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            output::error(&format!(
                "merging {branch} into {} would conflict in: {}; nothing was changed. Resolve it in the sandbox \
                 (`sbx exec {name} git merge {}`), then `sbx merge {name}` again",
                short(&target),
                files.join(", "),
                short(&target),
            ));
            return Ok(exit::CONFLICT);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("cannot merge sandbox {name} (branch {})", git.branch));
        }
    };
    let (kind, target, commit, text) = match &outcome {
        MergeOutcome::UpToDate { target } => (
            "up-to-date",
            target.clone(),
            None,
            format!(
                "{} already contains every commit of {}",
                short(target),
                git.branch
            ),
        ),
        MergeOutcome::FastForward { target, from, to } => (
            "fast-forward",
            target.clone(),
            Some(to.clone()),
            format!(
                "fast-forwarded {} from {} to {} ({})",
                short(target),
                &from[..from.len().min(10)],
                &to[..to.len().min(10)],
                git.branch
            ),
        ),
        MergeOutcome::MergeCommit { target, commit } => (
            "merge-commit",
            target.clone(),
            Some(commit.clone()),
            format!(
                "merged {} into {} with merge commit {}",
                git.branch,
                short(target),
                &commit[..commit.len().min(10)]
            ),
        ),
        other => ("other", String::new(), None, format!("{other:?}")),
    };
    if json {
        let value = json!({"sandbox": name, "outcome": kind, "branch": git.branch, "target": target,
            "commit": commit});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{text}");
    }
    Ok(0)
}

/// `refs/heads/main` → `main`.
fn short(full_ref: &str) -> &str {
    full_ref.strip_prefix("refs/heads/").unwrap_or(full_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_colours_follow_git() {
        let coloured = colour_patch("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n ctx\n");
        assert!(coloured.contains("\x1b[31m-old\x1b[0m\n"), "{coloured:?}");
        assert!(coloured.contains("\x1b[32m+new\x1b[0m\n"), "{coloured:?}");
        assert!(
            coloured.contains("\x1b[36m@@ -1 +1 @@\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(coloured.ends_with(" ctx\n"));
        assert_eq!(short("refs/heads/main"), "main");
    }
}
