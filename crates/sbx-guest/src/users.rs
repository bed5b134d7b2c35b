//! User lookup in the sandbox's own `/etc/passwd` and `/etc/group` (the host's user database is never consulted).

use std::path::Path;

/// The non-root user every template has (uid 1000, passwordless sudo in the Debian template).
pub const AGENT_USER: &str = "agent";

/// A resolved user to run a command as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Login name (or the number when the uid has no entry).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// Resolves `spec` (a name or a numeric uid) against the passwd/group files under `etc`.
pub fn lookup(etc: &Path, spec: &str) -> Result<UserInfo, String> {
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    let by_uid = spec.parse::<u32>().ok();
    let entry = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, home, shell, ..] = f.as_slice() else {
            return None;
        };
        let (uid, gid) = (uid.parse::<u32>().ok()?, gid.parse::<u32>().ok()?);
        let hit = by_uid.map_or(*name == spec, |u| u == uid);
        hit.then(|| UserInfo {
            name: (*name).to_owned(),
            uid,
            gid,
            groups: Vec::new(),
            home: (*home).to_owned(),
            shell: (*shell).to_owned(),
        })
    });
    let mut user = match (entry, by_uid) {
        (Some(u), _) => u,
        (None, Some(uid)) => UserInfo {
            name: spec.to_owned(),
            uid,
            gid: uid,
            groups: Vec::new(),
            home: "/".into(),
            shell: "/bin/sh".into(),
        },
        (None, None) => return Err(format!("no user {spec:?} in the sandbox's /etc/passwd")),
    };
    user.groups = supplementary_groups(etc, &user.name, user.gid);
    Ok(user)
}

/// Makes sure `name`'s home directory exists and is theirs. Templates built without root (the host template of an
/// unprivileged user) cannot give the home to the agent, so the namespace init does it, once; a home that already
/// belongs to someone other than root is left alone.
pub fn ensure_home(etc: &Path, name: &str) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let user = lookup(etc, name).map_err(std::io::Error::other)?;
    if user.uid == 0 || !user.home.starts_with('/') || user.home == "/" {
        return Ok(());
    }
    let home = Path::new(&user.home);
    match std::fs::symlink_metadata(home) {
        Ok(m) if m.is_dir() && m.uid() == 0 => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(home)?,
        Err(e) => return Err(e),
    }
    rustix::fs::chownat(
        rustix::fs::CWD,
        home,
        Some(rustix::fs::Uid::from_raw(user.uid)),
        Some(rustix::fs::Gid::from_raw(user.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

fn supplementary_groups(etc: &Path, name: &str, primary: u32) -> Vec<u32> {
    let group = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    let mut out = vec![primary];
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if let [_, _, gid, members, ..] = f.as_slice()
            && members.split(',').any(|m| m == name)
            && let Ok(g) = gid.parse::<u32>()
            && !out.contains(&g)
        {
            out.push(g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_numbers_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/bash\nbroken line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("group"),
            "root:x:0:\nsudo:x:27:agent,other\nagent:x:1000:\n",
        )
        .unwrap();
        let a = lookup(dir.path(), "agent").unwrap();
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1000, 1000, "/home/agent"));
        assert_eq!(a.groups, vec![1000, 27]);
        assert_eq!(lookup(dir.path(), "0").unwrap().name, "root");
        assert_eq!(lookup(dir.path(), "4242").unwrap().uid, 4242);
        assert!(
            lookup(dir.path(), "mallory")
                .unwrap_err()
                .contains("mallory")
        );
    }
}
