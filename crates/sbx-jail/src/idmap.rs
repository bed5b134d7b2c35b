//! User and group id mapping of the sandbox's user namespace.
//!
//! Root inside is always the invoking host user, so files the sandbox writes in the workspace belong to that user.
//! When the host side runs with `CAP_SETUID` (root), ids 1..65536 inside map to an unprivileged host range, so a
//! non-root `agent` user exists inside; an unprivileged caller gets only the single mapping.

/// First host id of the subordinate range used when the caller is root.
pub const SUBORDINATE_BASE: u32 = 100_000;
/// Size of the subordinate range.
pub const SUBORDINATE_COUNT: u32 = 65_535;

/// The text written to `/proc/<pid>/{uid,gid}_map`.
pub fn map_lines(outer_id: u32, privileged: bool) -> String {
    let mut s = format!("0 {outer_id} 1\n");
    if privileged {
        s.push_str(&format!("1 {} {SUBORDINATE_COUNT}\n", SUBORDINATE_BASE + 1));
    }
    s
}

/// Writes the maps for `pid` (the host side, after clone, before releasing the child).
pub fn write_maps(pid: i32) -> std::io::Result<()> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let privileged = uid == 0;
    let proc = format!("/proc/{pid}");
    if !privileged {
        std::fs::write(format!("{proc}/setgroups"), "deny")?;
    }
    std::fs::write(format!("{proc}/uid_map"), map_lines(uid, privileged))?;
    std::fs::write(format!("{proc}/gid_map"), map_lines(gid, privileged))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprivileged_callers_map_only_themselves() {
        assert_eq!(map_lines(1000, false), "0 1000 1\n");
        assert_eq!(map_lines(0, true), "0 0 1\n1 100001 65535\n");
    }
}
