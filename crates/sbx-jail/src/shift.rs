//! Ownership shift of a template directory to the sandbox's id mapping.
//!
//! The template is the read-only lower layer of every sandbox's root, so its files must be owned on the host by the
//! ids that mean the right owner *inside*: a file root owns inside must belong to the mapped root (the subordinate
//! base), the agent's home to the host user, and so on. A template is built with its intended ("canonical") owners
//! as plain host ids: by root (debootstrap, or the host template built as root) every id is itself; by an
//! unprivileged user every file is that user's and stands for root. The first sandbox with a new mapping shifts the
//! tree once (lchown of each entry from canonical to mapped ids) and records the mapping in a stamp file next to the
//! template (`<template>.sbx-idmap`); later starts read the stamp and do nothing. A different mapping later shifts
//! again from the recorded one.
//!
//! Why a shift rather than idmapped mounts (`mount_setattr(MOUNT_ATTR_IDMAP)`): an idmapped mount needs root in the
//! initial namespace, so the `newuidmap` path of an unprivileged user could not use it, and overlayfs over idmapped
//! layers needs Linux 5.19+. The shift works the same for both callers on every kernel the backend supports, costs
//! one walk per template and mapping (about a second for the Debian template), and leaves sandbox start-up as it was.
//! The microVM's ext4 image is made from the tree at build time, before any shift, so it keeps canonical owners.

use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::JailError;
use crate::idmap::{IdMap, MappingMode, UserMapping};
use crate::plan::{Op, cstr};

/// Where the mapping a template is shifted to is recorded.
pub fn stamp_path(template: &Path) -> Result<PathBuf, JailError> {
    let name = template.file_name().ok_or_else(|| JailError::BadPath {
        what: "template",
        path: template.into(),
        reason: "must name a directory (not `/` or end in `..`)".into(),
    })?;
    let mut stamp = name.to_os_string();
    stamp.push(".sbx-idmap");
    Ok(template.with_file_name(stamp))
}

fn template_error(template: &Path, detail: String) -> JailError {
    JailError::Template {
        template: template.into(),
        detail,
    }
}

/// The maps a tree without a stamp was built with.
fn as_built(template: &Path) -> Result<(IdMap, IdMap), JailError> {
    let meta = std::fs::symlink_metadata(template)
        .map_err(|e| template_error(template, format!("cannot stat it: {e}")))?;
    Ok(if meta.uid() == 0 {
        (IdMap::identity(), IdMap::identity())
    } else {
        (IdMap::single(0, meta.uid()), IdMap::single(0, meta.gid()))
    })
}

fn stamp_text(uid: &IdMap, gid: &IdMap) -> String {
    format!("uid_map {}\ngid_map {}\n", uid.compact(), gid.compact())
}

fn parse_stamp(text: &str) -> Option<(IdMap, IdMap)> {
    let mut uid = None;
    let mut gid = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("uid_map", v)) => uid = IdMap::parse_compact(v),
            Some(("gid_map", v)) => gid = IdMap::parse_compact(v),
            _ => {}
        }
    }
    Some((uid?, gid?))
}

/// (uid, gid).
type Owners = (u32, u32);
/// An entry with its owners inside (canonical) and its new owners on the host.
type Work<'a> = (&'a Entry, Owners, Owners);

/// One inode to re-own.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    uid: u32,
    gid: u32,
    mode: u32,
    symlink: bool,
}

/// Every entry of the tree (not following symlinks, not crossing into other file systems), each inode once.
fn walk(root: &Path) -> Result<Vec<Entry>, JailError> {
    let top = std::fs::symlink_metadata(root)
        .map_err(|e| template_error(root, format!("cannot stat it: {e}")))?;
    let root_dev = top.dev();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), top)];
    while let Some((path, meta)) = stack.pop() {
        if meta.dev() != root_dev {
            continue;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| {
                template_error(root, format!("cannot read {}: {e}", path.display()))
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    template_error(root, format!("cannot read {}: {e}", path.display()))
                })?;
                let child = entry.path();
                let m = std::fs::symlink_metadata(&child).map_err(|e| {
                    template_error(root, format!("cannot stat {}: {e}", child.display()))
                })?;
                stack.push((child, m));
            }
        }
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        out.push(Entry {
            path,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.permissions().mode() & 0o7777,
            symlink: meta.file_type().is_symlink(),
        });
    }
    Ok(out)
}

/// (canonical uid, canonical gid) → new host ids for one entry; `None` when nothing changes.
fn retarget(e: &Entry, old: &(IdMap, IdMap), new: &(IdMap, IdMap)) -> Option<(Owners, Owners)> {
    let cu = old.0.to_inside(e.uid);
    let cg = old.1.to_inside(e.gid);
    let hu = cu.and_then(|c| new.0.to_host(c)).unwrap_or(e.uid);
    let hg = cg.and_then(|c| new.1.to_host(c)).unwrap_or(e.gid);
    ((hu, hg) != (e.uid, e.gid))
        .then(|| ((cu.unwrap_or(u32::MAX), cg.unwrap_or(u32::MAX)), (hu, hg)))
}

/// The host ownership a template needs for `mapping`: keep-id's maps; for the single mapping the tree as built
/// (root's build unshifted; an unprivileged build is its builder's, which the single mapping shows as root's), since
/// the single map cannot represent the template's other owners and a shift to it would lose them.
fn target_maps(mapping: &UserMapping) -> (IdMap, IdMap) {
    match mapping.mode {
        MappingMode::KeepId => (mapping.uid_map.clone(), mapping.gid_map.clone()),
        MappingMode::Single if mapping.host_uid == 0 => (IdMap::identity(), IdMap::identity()),
        MappingMode::Single => (
            IdMap::single(0, mapping.host_uid),
            IdMap::single(0, mapping.host_gid),
        ),
    }
}

/// What [`prepare_template`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shifted {
    /// The template already had the mapping's ownership.
    AlreadyDone,
    /// This many entries were re-owned.
    Entries(usize),
}

/// Makes the template's host ownership match `mapping` (see the module docs). Concurrent callers wait for each
/// other on the stamp file's lock.
pub fn prepare_template(template: &Path, mapping: &UserMapping) -> Result<Shifted, JailError> {
    let stamp = stamp_path(template)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&stamp)
        .map_err(|e| {
            template_error(
                template,
                format!(
                    "cannot open its id-map stamp {}: {e}; the directory holding the template must be writable",
                    stamp.display()
                ),
            )
        })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| template_error(template, format!("cannot lock {}: {e}", stamp.display())))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| template_error(template, format!("cannot read {}: {e}", stamp.display())))?;
    if text.contains("shifting") {
        return Err(template_error(
            template,
            format!(
                "a previous ownership shift was interrupted ({}), so its files have mixed owners; rebuild the \
                 template (`sbx template build --force NAME`)",
                stamp.display()
            ),
        ));
    }
    let old = if text.trim().is_empty() {
        as_built(template)?
    } else {
        parse_stamp(&text).ok_or_else(|| {
            template_error(
                template,
                format!(
                    "{} is not an id-map stamp; delete it and rebuild the template",
                    stamp.display()
                ),
            )
        })?
    };
    let new = target_maps(mapping);
    let write_stamp = |file: &mut std::fs::File, content: &str| -> Result<(), JailError> {
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(content.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|e| template_error(template, format!("cannot write {}: {e}", stamp.display())))
    };
    if old == new {
        if text.trim().is_empty() {
            write_stamp(&mut file, &stamp_text(&new.0, &new.1))?;
        }
        return Ok(Shifted::AlreadyDone);
    }
    let entries = walk(template)?;
    let work: Vec<Work<'_>> = entries
        .iter()
        .filter_map(|e| retarget(e, &old, &new).map(|(c, h)| (e, c, h)))
        .collect();
    let me = rustix::process::geteuid().as_raw();
    // Only root may give files to arbitrary host ids. An unprivileged user shifts a tree it built itself (every file
    // its own, standing for root) from inside a user namespace with the new mapping, where it may give its files to
    // any mapped id.
    let unprivileged_ok =
        old == (
            IdMap::single(0, me),
            IdMap::single(0, rustix::process::getegid().as_raw()),
        ) && mapping.mode == MappingMode::KeepId;
    if me != 0 && !unprivileged_ok {
        return Err(template_error(
            template,
            format!(
                "its files are owned for another id mapping ({}) and only root can re-own them for this one ({}); \
                 rebuild the template as this user (`sbx template build --force NAME`) or run sbx as the user who \
                 built it",
                old.0.compact(),
                new.0.compact()
            ),
        ));
    }
    write_stamp(
        &mut file,
        &format!("shifting\n{}", stamp_text(&new.0, &new.1)),
    )?;
    if me == 0 {
        for (e, _, (uid, gid)) in &work {
            chown_keeping_privileges(e, *uid, *gid).map_err(|err| {
                template_error(
                    template,
                    format!("cannot re-own {}: {err}", e.path.display()),
                )
            })?;
        }
    } else {
        shift_in_userns(template, mapping, &work)?;
    }
    write_stamp(&mut file, &stamp_text(&new.0, &new.1))?;
    Ok(Shifted::Entries(work.len()))
}

/// lchown, then restore what the kernel clears on a change of owner: setuid/setgid bits and file capabilities.
fn chown_keeping_privileges(e: &Entry, uid: u32, gid: u32) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Gid, Uid};
    let caps = if e.symlink {
        None
    } else {
        let mut buf = vec![0u8; 64];
        rustix::fs::lgetxattr(&e.path, "security.capability", &mut buf)
            .ok()
            .map(|n| buf[..n].to_vec())
    };
    rustix::fs::chownat(
        CWD,
        &e.path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !e.symlink && e.mode & 0o6000 != 0 {
        std::fs::set_permissions(&e.path, std::fs::Permissions::from_mode(e.mode))?;
    }
    if let Some(caps) = caps {
        rustix::fs::lsetxattr(
            &e.path,
            "security.capability",
            &caps,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}

/// Removes `path` (a template or state directory) from a user namespace with `mapping`, where an unprivileged
/// caller may delete what belongs to its subordinate range (files root inside created, a shifted template).
/// Root needs no help: use `std::fs::remove_dir_all`.
pub fn remove_tree(path: &Path, mapping: &UserMapping) -> Result<(), JailError> {
    let failed = |detail: String| JailError::Prepare {
        step: format!("remove {}", path.display()),
        source: std::io::Error::other(detail),
    };
    let rm = ["/usr/bin/rm", "/bin/rm"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| failed("no rm in /usr/bin or /bin".into()))?;
    // Program path, then argv from argv[0]: `rm -rf -- <path>`.
    let argv = [
        Path::new(rm),
        Path::new("rm"),
        Path::new("-rf"),
        Path::new("--"),
        path,
    ]
    .iter()
    .map(cstr)
    .collect::<Result<Vec<_>, _>>()?;
    crate::spawn::run_in_userns(mapping, &[], Some(&argv))?;
    if path.exists() {
        return Err(failed(
            "still present after removing it in the sandbox's user namespace".into(),
        ));
    }
    Ok(())
}

/// The unprivileged shift: a child in a new user namespace with `mapping` re-owns each entry to its canonical ids.
fn shift_in_userns(
    template: &Path,
    mapping: &UserMapping,
    work: &[Work<'_>],
) -> Result<(), JailError> {
    let mut ops = Vec::with_capacity(work.len() * 2);
    for (e, (uid, gid), _) in work {
        let path: CString = cstr(&e.path)?;
        ops.push(Op::Chown {
            path: path.clone(),
            uid: *uid,
            gid: *gid,
        });
        if !e.symlink && e.mode & 0o6000 != 0 {
            ops.push(Op::Chmod { path, mode: e.mode });
        }
    }
    crate::spawn::run_in_userns(mapping, &ops, None).map_err(|e| {
        template_error(
            template,
            format!("re-owning the template in a user namespace: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idmap::{MapWriter, MappingMode};

    fn keep_id(base: u32) -> UserMapping {
        UserMapping {
            mode: MappingMode::KeepId,
            host_uid: 0,
            host_gid: 0,
            agent: Some((1000, 1000)),
            subordinate: Some((base, base)),
            uid_map: IdMap::keep_id(0, 1000, base),
            gid_map: IdMap::keep_id(0, 1000, base),
            writer: MapWriter::Direct,
            fallback: None,
        }
    }

    #[test]
    fn stamps_sit_next_to_the_template() {
        assert_eq!(
            stamp_path(Path::new("/s/default/rootfs")).unwrap(),
            Path::new("/s/default/rootfs.sbx-idmap")
        );
        assert!(stamp_path(Path::new("/")).is_err());
    }

    #[test]
    fn retargeting_goes_through_the_canonical_ids() {
        let e = |uid, gid| Entry {
            path: PathBuf::new(),
            uid,
            gid,
            mode: 0o644,
            symlink: false,
        };
        let built = (IdMap::identity(), IdMap::identity());
        let m = keep_id(100_000);
        let new = (m.uid_map.clone(), m.gid_map.clone());
        // Root's file goes to the subordinate base, the agent's to the host user (root here).
        assert_eq!(
            retarget(&e(0, 0), &built, &new),
            Some(((0, 0), (100_000, 100_000)))
        );
        assert_eq!(
            retarget(&e(1000, 1000), &built, &new),
            Some(((1000, 1000), (0, 0)))
        );
        assert_eq!(
            retarget(&e(42, 0), &built, &new),
            Some(((42, 0), (100_042, 100_000)))
        );
        // Back from keep-id to another base: the agent's file stays the host user's.
        let other = keep_id(300_000);
        let other = (other.uid_map.clone(), other.gid_map.clone());
        assert_eq!(retarget(&e(0, 0), &new, &other), None);
        assert_eq!(
            retarget(&e(100_000, 100_000), &new, &other),
            Some(((0, 0), (300_000, 300_000)))
        );
    }

    #[test]
    fn an_interrupted_shift_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("rootfs");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(
            stamp_path(&t).unwrap(),
            "shifting\nuid_map 0:0:1\ngid_map 0:0:1\n",
        )
        .unwrap();
        let err = prepare_template(&t, &keep_id(100_000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("interrupted") && err.contains("sbx template build --force"),
            "{err}"
        );
    }

    #[test]
    fn subordinate_owned_trees_are_removed_from_a_user_namespace() {
        if rustix::process::geteuid().as_raw() != 0 {
            println!("skipped: making subordinate-owned files needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("state");
        std::fs::create_dir_all(tree.join("upper/root")).unwrap();
        std::fs::write(tree.join("upper/root/secret"), "x").unwrap();
        for p in ["upper/root/secret", "upper/root"] {
            rustix::fs::chown(
                tree.join(p),
                Some(rustix::fs::Uid::from_raw(100_000)),
                Some(rustix::fs::Gid::from_raw(100_000)),
            )
            .unwrap();
        }
        std::fs::set_permissions(
            tree.join("upper/root"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        remove_tree(&tree, &keep_id(100_000)).unwrap();
        assert!(!tree.exists());
    }

    #[test]
    fn root_shifts_once_and_restores_setuid_bits() {
        if rustix::process::geteuid().as_raw() != 0 {
            println!("skipped: only root can give files to other host ids");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("rootfs");
        std::fs::create_dir_all(t.join("home/agent")).unwrap();
        std::fs::create_dir_all(t.join("bin")).unwrap();
        std::fs::write(t.join("bin/su"), "x").unwrap();
        std::fs::set_permissions(t.join("bin/su"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::os::unix::fs::symlink("su", t.join("bin/link")).unwrap();
        std::fs::hard_link(t.join("bin/su"), t.join("bin/su2")).unwrap();
        rustix::fs::chown(
            t.join("home/agent"),
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1000)),
        )
        .unwrap();
        let m = keep_id(100_000);
        assert!(matches!(prepare_template(&t, &m).unwrap(), Shifted::Entries(n) if n >= 5));
        let meta = |p: &str| std::fs::symlink_metadata(t.join(p)).unwrap();
        assert_eq!(
            (meta("bin/su").uid(), meta("bin/su").gid()),
            (100_000, 100_000)
        );
        assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755, "setuid kept");
        assert_eq!(meta("bin/link").uid(), 100_000);
        assert_eq!(
            meta("home/agent").uid(),
            0,
            "the agent's home is the host user's"
        );
        assert_eq!(meta("").uid(), 100_000);
        assert_eq!(prepare_template(&t, &m).unwrap(), Shifted::AlreadyDone);
        // A new mapping re-shifts from the recorded one.
        let m2 = keep_id(200_000);
        prepare_template(&t, &m2).unwrap();
        assert_eq!(meta("bin/su").uid(), 200_000);
        assert_eq!(meta("home/agent").uid(), 0);
        // The single mapping takes the tree back to its owners as built.
        let single = UserMapping {
            mode: MappingMode::Single,
            agent: None,
            subordinate: None,
            uid_map: IdMap::single(0, 0),
            gid_map: IdMap::single(0, 0),
            ..m2
        };
        prepare_template(&t, &single).unwrap();
        assert_eq!(meta("bin/su").uid(), 0);
        assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
        assert_eq!(
            (meta("home/agent").uid(), meta("home/agent").gid()),
            (1000, 1000)
        );
    }
}
