//! User and group id mapping of the sandbox's user namespace ("keep-id").
//!
//! When a subordinate id range is available, the sandbox gets a full 65536-id namespace:
//!
//! * the template's `agent` user (uid/gid from the template's `/etc/passwd`, 1000 in ours) **is the invoking host
//!   user**: every file the agent creates in a workspace belongs to the host user, and the host user's files appear
//!   as the agent's inside;
//! * root (0) and every other id inside map to the subordinate range, so a file root creates in the sandbox's state
//!   is not owned by the host user (nor by host root), and root-only files inside stay out of the agent's reach.
//!
//! The range is the fixed [`SUBORDINATE_BASE`].. range when the caller is root (it writes the maps itself), or the
//! caller's `/etc/subuid` and `/etc/subgid` range (≥ 65536 ids), written with the setuid `newuidmap`/`newgidmap`
//! helpers (package `uidmap`). Without either, the sandbox falls back to the single mapping: root inside is the
//! host user and there is no separate agent user; [`UserMapping::warning`] says so and how to fix it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// First host id of the subordinate range used when the caller is root (inside id `i` is host `BASE + i`).
pub const SUBORDINATE_BASE: u32 = 100_000;
/// Size of a full sandbox id space (inside ids 0..65535); also the least a `/etc/subuid` range must hold.
pub const SUBORDINATE_COUNT: u32 = 65_536;
/// The template's non-root user that becomes the host user.
pub const AGENT_USER: &str = "agent";

/// One line of a `uid_map`/`gid_map`: `count` ids from `inside` map to host ids from `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// How many.
    pub count: u32,
}

/// A uid or gid map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    /// Host id of `inside`, if mapped.
    pub fn to_host(&self, inside: u32) -> Option<u32> {
        self.0.iter().find_map(|r| {
            let off = inside.checked_sub(r.inside)?;
            (off < r.count).then(|| r.outside + off)
        })
    }

    /// Inside id of host id `outside`, if mapped.
    pub fn to_inside(&self, outside: u32) -> Option<u32> {
        self.0.iter().find_map(|r| {
            let off = outside.checked_sub(r.outside)?;
            (off < r.count).then(|| r.inside + off)
        })
    }

    /// Inside id `inside` to host id `outside`, nothing else.
    pub fn single(inside: u32, outside: u32) -> IdMap {
        IdMap(vec![IdRange {
            inside,
            outside,
            count: 1,
        }])
    }

    /// Every id to itself (a tree as built by root, before any shift).
    pub fn identity() -> IdMap {
        IdMap(vec![IdRange {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }])
    }

    /// The keep-id map: `agent` ↔ `host`, every other id of 0..65535 ↔ `base + id`.
    pub fn keep_id(host: u32, agent: u32, base: u32) -> IdMap {
        let mut ranges = Vec::new();
        if agent > 0 {
            ranges.push(IdRange {
                inside: 0,
                outside: base,
                count: agent,
            });
        }
        ranges.push(IdRange {
            inside: agent,
            outside: host,
            count: 1,
        });
        let after = SUBORDINATE_COUNT - agent - 1;
        if after > 0 {
            ranges.push(IdRange {
                inside: agent + 1,
                outside: base + agent + 1,
                count: after,
            });
        }
        IdMap(ranges)
    }

    /// The text written to `/proc/<pid>/{uid,gid}_map`.
    pub fn lines(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
            .collect()
    }

    /// One-line form (`inside:outside:count,…`), as stored in state files.
    pub fn compact(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("{}:{}:{}", r.inside, r.outside, r.count))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`IdMap::compact`].
    pub fn parse_compact(text: &str) -> Option<IdMap> {
        let mut out = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut it = part.split(':').map(str::parse::<u32>);
            let (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count)), None) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                return None;
            };
            out.push(IdRange {
                inside,
                outside,
                count,
            });
        }
        Some(IdMap(out))
    }

    fn args(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|r| [r.inside, r.outside, r.count])
            .map(|n| n.to_string())
            .collect()
    }
}

/// How the sandbox's ids are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingMode {
    /// The agent user is the host user; root and the rest are a subordinate range.
    KeepId,
    /// Fallback: root inside is the host user; no other id exists inside.
    Single,
}

/// What [`crate::JailConfig::user_mapping`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MappingChoice {
    /// Keep-id when a subordinate range is available, the single mapping otherwise.
    #[default]
    Auto,
    /// Always the single mapping (tests, or hosts where a subordinate range must not be used).
    Single,
}

/// Who writes the maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapWriter {
    /// This process writes `/proc/<pid>/{uid,gid}_map` (root, or the single mapping of an unprivileged caller).
    Direct,
    /// The setuid `newuidmap`/`newgidmap` helpers write them (an unprivileged caller's `/etc/subuid` range).
    NewIdMap,
}

/// The id mapping of one sandbox, and why it is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMapping {
    /// Keep-id or the single-mapping fallback.
    pub mode: MappingMode,
    /// The invoking host user.
    pub host_uid: u32,
    /// The invoking host user's group.
    pub host_gid: u32,
    /// The agent's (uid, gid) inside, which are the host user's (keep-id only).
    pub agent: Option<(u32, u32)>,
    /// First host uid and gid of the subordinate range (keep-id only).
    pub subordinate: Option<(u32, u32)>,
    /// The uid map.
    pub uid_map: IdMap,
    /// The gid map.
    pub gid_map: IdMap,
    /// Who writes the maps.
    pub writer: MapWriter,
    /// Why the single mapping is used, with the fix (fallback only).
    pub fallback: Option<String>,
}

impl UserMapping {
    /// The user commands run as when the exec request names none: the agent with keep-id, root otherwise.
    pub fn default_user(&self) -> Option<&'static str> {
        (self.mode == MappingMode::KeepId).then_some(AGENT_USER)
    }

    /// One line for `sbx ls`/create output.
    pub fn summary(&self) -> String {
        match (self.mode, self.agent, self.subordinate) {
            (MappingMode::KeepId, Some((uid, gid)), Some((su, sg))) => format!(
                "agent (uid {uid}, gid {gid}) = host uid {} gid {}; root and other ids = host uids {su}-{} \
                 (gids {sg}-{})",
                self.host_uid,
                self.host_gid,
                su + SUBORDINATE_COUNT - 1,
                sg + SUBORDINATE_COUNT - 1
            ),
            _ => format!(
                "single mapping: everything runs as root inside = host uid {} (no separate agent user)",
                self.host_uid
            ),
        }
    }

    /// For the fallback: what is weaker and how to get keep-id. `None` with keep-id.
    pub fn warning(&self) -> Option<String> {
        let reason = self.fallback.as_deref()?;
        Some(format!(
            "the agent runs as root inside the sandbox (the single id mapping: root inside = your host user, no \
             non-root agent user): {reason}"
        ))
    }

    /// Serialises for the state directory (`key value` lines).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "mode {}\nhost {} {}\nuid_map {}\ngid_map {}\n",
            match self.mode {
                MappingMode::KeepId => "keep-id",
                MappingMode::Single => "single",
            },
            self.host_uid,
            self.host_gid,
            self.uid_map.compact(),
            self.gid_map.compact()
        );
        if let Some((u, g)) = self.agent {
            s.push_str(&format!("agent {u} {g}\n"));
        }
        if let Some((u, g)) = self.subordinate {
            s.push_str(&format!("subordinate {u} {g}\n"));
        }
        if self.writer == MapWriter::NewIdMap {
            s.push_str("writer newidmap\n");
        }
        if let Some(f) = &self.fallback {
            s.push_str(&format!("fallback {}\n", f.replace('\n', " ")));
        }
        s
    }

    /// Parses [`UserMapping::to_text`]; `None` when it is not one.
    pub fn from_text(text: &str) -> Option<UserMapping> {
        let mut m = UserMapping {
            mode: MappingMode::Single,
            host_uid: 0,
            host_gid: 0,
            agent: None,
            subordinate: None,
            uid_map: IdMap::default(),
            gid_map: IdMap::default(),
            writer: MapWriter::Direct,
            fallback: None,
        };
        let pair = |v: &str| {
            let (a, b) = v.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let mut seen_mode = false;
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "mode" => {
                    seen_mode = true;
                    m.mode = match value {
                        "keep-id" => MappingMode::KeepId,
                        "single" => MappingMode::Single,
                        _ => return None,
                    }
                }
                "host" => (m.host_uid, m.host_gid) = pair(value)?,
                "agent" => m.agent = Some(pair(value)?),
                "subordinate" => m.subordinate = Some(pair(value)?),
                "uid_map" => m.uid_map = IdMap::parse_compact(value)?,
                "gid_map" => m.gid_map = IdMap::parse_compact(value)?,
                "writer" => m.writer = MapWriter::NewIdMap,
                "fallback" => m.fallback = Some(value.to_owned()),
                _ => {}
            }
        }
        seen_mode.then_some(m)
    }
}

/// Finds `program` in `PATH` (and the usual sbin/bin directories, where distributions put the uidmap helpers).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The first range of at least [`SUBORDINATE_COUNT`] ids for `name` or `id` in a `/etc/subuid`-style text.
pub fn subordinate_range(text: &str, name: Option<&str>, id: u32) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let matches = Some(who) == name || who.parse::<u32>().ok() == Some(id);
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        (matches && count >= SUBORDINATE_COUNT).then_some(start)
    })
}

/// The login name of host uid `uid` from the host's `/etc/passwd`.
fn host_user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// The `agent` user's (uid, gid) from the template's `/etc/passwd`.
pub fn template_agent(template: &Path) -> Result<(u32, u32), String> {
    let passwd = template.join("etc/passwd");
    let meta = std::fs::symlink_metadata(&passwd)
        .map_err(|e| format!("cannot read {}: {e}", passwd.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", passwd.display()));
    }
    let text = std::fs::read_to_string(&passwd)
        .map_err(|e| format!("cannot read {}: {e}", passwd.display()))?;
    let found = text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        match f.as_slice() {
            [name, _, uid, gid, ..] if *name == AGENT_USER => Some((uid.parse(), gid.parse())),
            _ => None,
        }
    });
    match found {
        Some((Ok(uid), Ok(gid)))
            if uid > 0 && gid > 0 && uid < SUBORDINATE_COUNT && gid < SUBORDINATE_COUNT =>
        {
            Ok((uid, gid))
        }
        Some(_) => Err(format!(
            "the `{AGENT_USER}` entry in {} needs a uid and gid between 1 and {}",
            passwd.display(),
            SUBORDINATE_COUNT - 1
        )),
        None => Err(format!(
            "the template has no `{AGENT_USER}` user in {}",
            passwd.display()
        )),
    }
}

fn fix_hint(name: &str) -> String {
    format!(
        "install the uidmap helpers and give {name} a subordinate id range of 65536 ids, e.g. `sudo apt-get install \
         uidmap` and `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}` (which adds the \
         line `{name}:100000:65536` to /etc/subuid and /etc/subgid; pick a range no other user has)"
    )
}

/// Chooses the mapping for a sandbox of `template` run by this process.
pub fn choose(choice: MappingChoice, template: &Path) -> UserMapping {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    choose_for(
        choice,
        template,
        uid,
        gid,
        &Host {
            subuid: Path::new("/etc/subuid"),
            subgid: Path::new("/etc/subgid"),
            newuidmap: find_program("newuidmap").is_some() && find_program("newgidmap").is_some(),
        },
    )
}

/// What the host offers an unprivileged caller.
#[derive(Debug)]
pub(crate) struct Host<'a> {
    pub(crate) subuid: &'a Path,
    pub(crate) subgid: &'a Path,
    pub(crate) newuidmap: bool,
}

pub(crate) fn choose_for(
    choice: MappingChoice,
    template: &Path,
    uid: u32,
    gid: u32,
    host: &Host<'_>,
) -> UserMapping {
    let single = |reason: String| UserMapping {
        mode: MappingMode::Single,
        host_uid: uid,
        host_gid: gid,
        agent: None,
        subordinate: None,
        uid_map: IdMap::single(0, uid),
        gid_map: IdMap::single(0, gid),
        writer: MapWriter::Direct,
        fallback: Some(reason),
    };
    if choice == MappingChoice::Single {
        return single("the single mapping was asked for in the sandbox configuration".into());
    }
    let (agent_uid, agent_gid) = match template_agent(template) {
        Ok(ids) => ids,
        Err(e) => return single(e),
    };
    let name = host_user_name(uid);
    let shown = name.clone().unwrap_or_else(|| uid.to_string());
    let (sub_uid, sub_gid, writer) = if uid == 0 {
        (SUBORDINATE_BASE, SUBORDINATE_BASE, MapWriter::Direct)
    } else {
        if !host.newuidmap {
            return single(format!(
                "newuidmap/newgidmap are not installed; {}",
                fix_hint(&shown)
            ));
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let su = subordinate_range(&read(host.subuid), name.as_deref(), uid);
        let sg = subordinate_range(&read(host.subgid), name.as_deref(), uid);
        match (su, sg) {
            (Some(su), Some(sg)) => (su, sg, MapWriter::NewIdMap),
            _ => {
                return single(format!(
                    "{shown} has no range of 65536 ids in {} and {}; {}",
                    host.subuid.display(),
                    host.subgid.display(),
                    fix_hint(&shown)
                ));
            }
        }
    };
    let overlaps = |id: u32, base: u32| id >= base && id - base < SUBORDINATE_COUNT;
    if overlaps(uid, sub_uid) || overlaps(gid, sub_gid) {
        return single(format!(
            "the host user's own id lies inside its subordinate range (uid {uid} in {sub_uid}.., gid {gid} in \
             {sub_gid}..); {}",
            fix_hint(&shown)
        ));
    }
    UserMapping {
        mode: MappingMode::KeepId,
        host_uid: uid,
        host_gid: gid,
        agent: Some((agent_uid, agent_gid)),
        subordinate: Some((sub_uid, sub_gid)),
        uid_map: IdMap::keep_id(uid, agent_uid, sub_uid),
        gid_map: IdMap::keep_id(gid, agent_gid, sub_gid),
        writer,
        fallback: None,
    }
}

/// Writes `mapping` for `pid` (the host side, after clone, before releasing the child).
pub fn write_maps(pid: i32, mapping: &UserMapping) -> io::Result<()> {
    let proc = format!("/proc/{pid}");
    match mapping.writer {
        MapWriter::Direct => {
            if rustix::process::geteuid().as_raw() != 0 {
                // An unprivileged process may only write a gid map after giving up setgroups.
                std::fs::write(format!("{proc}/setgroups"), "deny")?;
            }
            std::fs::write(format!("{proc}/uid_map"), mapping.uid_map.lines())?;
            std::fs::write(format!("{proc}/gid_map"), mapping.gid_map.lines())?;
        }
        MapWriter::NewIdMap => {
            for (helper, map) in [
                ("newuidmap", &mapping.uid_map),
                ("newgidmap", &mapping.gid_map),
            ] {
                let out = Command::new(helper)
                    .arg(pid.to_string())
                    .args(map.args())
                    .output()
                    .map_err(|e| io::Error::new(e.kind(), format!("run {helper}: {e}")))?;
                if !out.status.success() {
                    return Err(io::Error::other(format!(
                        "{helper} {pid} {} failed ({}): {}",
                        map.args().join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_template() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nagent:x:1000:1001::/home/agent:/bin/sh\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn keep_id_maps_the_agent_to_the_host_user_and_the_rest_to_the_range() {
        let m = IdMap::keep_id(4242, 1000, 200_000);
        assert_eq!(m.lines(), "0 200000 1000\n1000 4242 1\n1001 201001 64535\n");
        assert_eq!(m.to_host(0), Some(200_000));
        assert_eq!(m.to_host(1000), Some(4242));
        assert_eq!(m.to_host(65535), Some(265_535));
        assert_eq!(m.to_host(65536), None);
        assert_eq!(m.to_inside(4242), Some(1000));
        assert_eq!(m.to_inside(201_000), None, "the agent's own slot is unused");
        assert_eq!(IdMap::parse_compact(&m.compact()), Some(m));
    }

    #[test]
    fn root_gets_the_fixed_range_and_reads_the_agent_from_the_template() {
        let t = host_template();
        let host = Host {
            subuid: Path::new("/nonexistent"),
            subgid: Path::new("/nonexistent"),
            newuidmap: false,
        };
        let m = choose_for(MappingChoice::Auto, t.path(), 0, 0, &host);
        assert_eq!(m.mode, MappingMode::KeepId);
        assert_eq!(m.agent, Some((1000, 1001)));
        assert_eq!(m.uid_map.to_host(0), Some(SUBORDINATE_BASE));
        assert_eq!(m.gid_map.to_host(1001), Some(0));
        assert_eq!(m.default_user(), Some("agent"));
        assert!(m.warning().is_none());
        assert_eq!(UserMapping::from_text(&m.to_text()), Some(m));
    }

    #[test]
    fn unprivileged_callers_use_their_subid_range_or_fall_back_with_the_fix() {
        let t = host_template();
        let dir = tempfile::tempdir().unwrap();
        let (su, sg) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&su, "other:100000:65536\n4321:300000:65536\n").unwrap();
        std::fs::write(&sg, "4321:400000:70000\n").unwrap();
        let host = Host {
            subuid: &su,
            subgid: &sg,
            newuidmap: true,
        };
        let m = choose_for(MappingChoice::Auto, t.path(), 4321, 4321, &host);
        assert_eq!(m.mode, MappingMode::KeepId);
        assert_eq!(m.writer, MapWriter::NewIdMap);
        assert_eq!(m.uid_map.to_host(0), Some(300_000));
        assert_eq!(m.gid_map.to_host(0), Some(400_000));
        assert_eq!(m.uid_map.to_host(1000), Some(4321));

        let no_helpers = Host {
            newuidmap: false,
            ..host
        };
        let m = choose_for(MappingChoice::Auto, t.path(), 4321, 4321, &no_helpers);
        assert_eq!(m.mode, MappingMode::Single);
        assert_eq!(m.uid_map.lines(), "0 4321 1\n");
        let w = m.warning().unwrap();
        assert!(
            w.contains("apt-get install uidmap") && w.contains("/etc/subuid"),
            "{w}"
        );

        std::fs::write(&su, "4321:300000:1000\n").unwrap();
        let m = choose_for(MappingChoice::Auto, t.path(), 4321, 4321, &host);
        assert_eq!(
            m.mode,
            MappingMode::Single,
            "a range smaller than 65536 is not enough"
        );

        let m = choose_for(MappingChoice::Single, t.path(), 0, 0, &host);
        assert_eq!(m.mode, MappingMode::Single);
        assert_eq!(m.default_user(), None);
    }

    #[test]
    fn a_template_without_an_agent_user_falls_back_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            subuid: Path::new("/nonexistent"),
            subgid: Path::new("/nonexistent"),
            newuidmap: false,
        };
        let m = choose_for(MappingChoice::Auto, dir.path(), 0, 0, &host);
        assert_eq!(m.mode, MappingMode::Single);
        assert!(m.fallback.unwrap().contains("etc/passwd"));
    }
}
