//! Branch mode, clone mode and review for sbx sandboxes, built on gix.
//!
//! In branch mode each sandbox gets its own branch and a linked worktree of the user's repository, at
//! `<repo>/.sbx/<sandbox>-worktrees/<branch>`, registered exactly like `git worktree add` registers one. In clone
//! mode it gets a private clone, which the host repository sees as the remote `sandbox-<name>`. The user then
//! lists the sandboxes, reviews the diff against the commit each started from, merges it back into the branch they
//! had checked out, or throws it away.
//!
//! ```no_run
//! use sbx_worktree::Host;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::open("/path/to/repo".as_ref())?;
//! let sandbox = host.create("agent-1", None)?; // branch sbx/agent-1
//! println!("agent works in {}", sandbox.path.display());
//! // … the agent edits and commits in sandbox.path …
//! for status in host.list()? {
//!     println!("{} {} ahead {} dirty {:?}", status.sandbox, status.branch.unwrap_or_default(), status.ahead, status.dirty);
//! }
//! let diff = host.diff("agent-1")?;
//! print!("{}", diff.summary);
//! print!("{}", diff.patch);
//! host.merge("agent-1")?; // fast-forward or merge commit; refuses on conflicts, changing nothing
//! host.remove("agent-1", false)?; // refuses unmerged commits unless forced
//! # Ok(()) }
//! ```
//!
//! Safety rules the crate keeps: sandbox and branch names are validated ([`SandboxName`], [`BranchName`]) before
//! they reach a path, a ref or a command line; the user's checked-out branch, index and uncommitted changes are
//! never modified except by a merge the user asks for, which refuses rather than lose anything; concurrent sbx
//! processes can create and remove sandboxes of one repository at the same time (git's lock files and `O_EXCL`
//! claims, no lock held between operations). `.sbx/` is kept out of `git status` through `.git/info/exclude`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod clone;
mod create;
mod diff;
pub mod error;
mod exclude;
mod gitcli;
mod host;
mod include;
mod list;
mod merge;
mod name;
mod record;
mod remove;
mod status;
mod untrusted;

pub use create::Sandbox;
pub use diff::{ChangeKind, Diff, DiffSummary, FileChange};
pub use host::Host;
pub use include::{WORKTREE_INCLUDE, WorktreeInclude};
pub use list::SandboxStatus;
pub use merge::MergeOutcome;
pub use name::{BranchName, SandboxName};
pub use record::{Mode, State};
pub use remove::Removed;
