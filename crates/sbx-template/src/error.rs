//! Errors of building, listing and removing templates.

use std::path::PathBuf;

/// Building, listing or removing a template failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A tool the build needs is missing.
    #[error("`{tool}` is needed to build the {what}; install it with `{install}` and run again")]
    MissingTool {
        /// The program.
        tool: &'static str,
        /// What it is needed for.
        what: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// Building needs root (debootstrap chroots).
    #[error("building the Debian template needs root (debootstrap uses chroot); run it with sudo")]
    NeedsRoot,
    /// A network service the build downloads from cannot be reached.
    #[error(
        "the {service} ({endpoint}) is unreachable: {detail}; the template build downloads from it — check the \
         network or proxy settings (or pass a reachable Debian mirror) and run again"
    )]
    Unreachable {
        /// What it is (Debian mirror, npm registry).
        service: &'static str,
        /// Host and port tried.
        endpoint: String,
        /// The connection error.
        detail: String,
    },
    /// The template name is not usable as a directory name.
    #[error(
        "invalid template name `{name}`: use 1-64 characters of a-z, 0-9, `-`, `_` or `.`, not starting with `.`"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No template of that name exists.
    #[error("no template named `{name}` in {root} (see `sbx template ls`)")]
    NotFound {
        /// The name given.
        name: String,
        /// The template store.
        root: PathBuf,
    },
    /// A manifest could not be read or parsed.
    #[error(
        "template manifest {path} is unreadable: {detail}; remove the template with `sbx template rm` and build it again"
    )]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A step failed.
    #[error("template build step `{step}` failed: {detail}")]
    Step {
        /// The step.
        step: String,
        /// What happened (exit status, last lines of output).
        detail: String,
    },
    /// File system error.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io {
        action,
        path,
        source,
    }
}
