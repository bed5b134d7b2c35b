//! Every environment variable sbx reads, in one place.

/// Overrides every sbx directory (config, state, runtime); tests point it at a temp dir.
pub(crate) const SBX_HOME: &str = "SBX_HOME";
/// Disables colour output when set to anything (<https://no-color.org>).
pub(crate) const NO_COLOR: &str = "NO_COLOR";
/// XDG base directories, used when `SBX_HOME` is not set.
pub(crate) const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// See [`XDG_CONFIG_HOME`].
pub(crate) const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// The user's home directory.
pub(crate) const HOME: &str = "HOME";
/// Directory of the company/org/team policy layers (default `/etc/sbx/policy.d`).
pub(crate) const SBX_SYSTEM_POLICY_DIR: &str = "SBX_SYSTEM_POLICY_DIR";
/// Path of the static in-sandbox agent (`sbx-guest`); default: next to `sbx` or `/usr/libexec/sbx/`.
pub(crate) const SBX_GUEST_BIN: &str = "SBX_GUEST_BIN";
/// A passphrase for the secret store: selects (or unlocks) the passphrase-protected file store.
pub(crate) const SBX_SECRETS_PASSPHRASE: &str = "SBX_SECRETS_PASSPHRASE";
/// The template new sandboxes use when `-t` is not given (default: `default`, built on first use). Tests set it to
/// `host`, the small template made from this host's programs in about a second.
pub(crate) const SBX_TEMPLATE: &str = "SBX_TEMPLATE";
/// Path of the microVM guest kernel (`vmlinux`); default: `~/.cache/sbx/guest-kernel/vmlinux` (from
/// `cargo xtask guest-kernel`) or `/usr/libexec/sbx/vmlinux`.
pub(crate) const SBX_KERNEL: &str = "SBX_KERNEL";
