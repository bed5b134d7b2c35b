//! `sbx cp SRC DST`: copy between the host and a sandbox. `NAME:/path` names the sandbox side.
//!
//! The sandbox side is always read and written by the agent inside the sandbox (`find`, `cat`, `mkdir` over the
//! agent protocol), never through host paths into the sandbox's state: a symlink in the sandbox resolves in the
//! sandbox's own mount namespace, so `link -> /etc/shadow` names the sandbox's file, not the host's. Commands run
//! as `sbx exec` runs them (the sandbox's default user), so files copied in belong to the user the agent runs as.
//!
//! Directories follow `cp -r`: `sbx cp NAME:/dir out` with an existing `out/` writes `out/dir/...`, merging into
//! `out/dir` when that exists too (files in it are replaced); the same holds when copying in. On the host side, new
//! files are created fresh (`O_EXCL | O_NOFOLLOW`) and existing ones replaced by rename (which never follows a
//! symlink), only inside real directories (an existing symlink in the way is refused); entry names are checked (no
//! `..`, no absolute paths), and symlinks found inside a copied directory are skipped, so a listing the sandbox
//! controls cannot steer a write outside the destination.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sbx_proto::{Client, ClientError, Message};

use crate::commands::sandbox;
use crate::home::Home;
use crate::names;
use crate::output;
use crate::sandboxes::{Record, SandboxDir};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Side {
    Host(PathBuf),
    Sandbox { name: String, path: String },
}

/// `NAME:/abs/path` is the sandbox side; anything else (write `./a:b` for a host file with a colon) the host.
fn parse_side(arg: &str) -> Side {
    if let Some((name, path)) = arg.split_once(':')
        && path.starts_with('/')
        && names::validate_sandbox(name).is_ok()
    {
        return Side::Sandbox {
            name: name.to_owned(),
            path: path.to_owned(),
        };
    }
    Side::Host(PathBuf::from(arg))
}

/// `sbx cp SRC DST`.
pub(crate) fn run(home: &Home, src: &str, dst: &str) -> Result<i32> {
    match (parse_side(src), parse_side(dst)) {
        (Side::Sandbox { name, path }, Side::Host(to)) => {
            let agent = connect(home, &name)?;
            copy_out(&agent, &name, &path, &to)?;
        }
        (Side::Host(from), Side::Sandbox { name, path }) => {
            let agent = connect(home, &name)?;
            copy_in(&agent, &name, &from, &path)?;
        }
        (Side::Host(_), Side::Host(_)) => bail!(
            "neither side names a sandbox; write the sandbox side as NAME:/path, e.g. `sbx cp ./f my-box:/tmp/f`"
        ),
        (Side::Sandbox { .. }, Side::Sandbox { .. }) => bail!(
            "copying between two sandboxes is not supported; copy to the host first, then into the other sandbox"
        ),
    }
    Ok(0)
}

/// The agent of a running sandbox and the request every copy command is built from (the sandbox's default user).
struct Agent {
    client: Client,
    record: Record,
}

fn connect(home: &Home, name: &str) -> Result<Agent> {
    let record = sandbox::ensure_running(home, name)?;
    let dir = SandboxDir::new(home, name)?;
    let client = crate::backend::connect_agent(&dir, &record)
        .with_context(|| format!("cannot reach the agent of sandbox {name}"))?;
    Ok(Agent { client, record })
}

/// Runs `argv` in the sandbox, streaming stdout into `out` and `stdin` (if any) into the command. Returns the exit
/// code and stderr.
fn run_in(
    agent: &Agent,
    argv: &[&str],
    stdin: Option<&mut dyn Read>,
    out: &mut dyn Write,
) -> Result<(i32, String)> {
    // As `sbx exec` would run it: files written here belong to the user the agent runs as, not to root.
    let mut request = crate::commands::exec::default_request(
        &agent.record,
        argv.iter().map(|a| (*a).to_owned()).collect(),
    );
    // Every path here is absolute; a workspace gone from the host must not make the copy fail.
    request.cwd = None;
    let mut session = agent
        .client
        .exec(request)
        .map_err(|e| anyhow::anyhow!("cannot run {} in the sandbox: {e}", argv[0]))?;
    if let Some(input) = stdin {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input
                .read(&mut buf)
                .context("cannot read the file to copy")?;
            if n == 0 {
                break;
            }
            session
                .write_stdin(&buf[..n])
                .context("cannot send the file to the sandbox")?;
        }
    }
    session.close_stdin().context("cannot close stdin")?;
    let mut stderr = Vec::new();
    loop {
        match session.next_message(Duration::from_secs(3600)) {
            Ok(Message::Stdout(data)) => out.write_all(&data).context("cannot write the copy")?,
            Ok(Message::Stderr(data)) => stderr.extend_from_slice(&data),
            Ok(Message::Exit(status)) => {
                return Ok((
                    status.shell_code(),
                    String::from_utf8_lossy(&stderr).trim().to_owned(),
                ));
            }
            Ok(Message::Error(e)) => bail!("the sandbox refused {}: {}", argv[0], e.message),
            Ok(_) | Err(ClientError::Timeout(_)) => {}
            Err(e) => return Err(e).context("lost the connection to the sandbox"),
        }
    }
}

/// One entry of the sandbox-side listing.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    rel: PathBuf,
}

/// Parses `find -printf '%y %m %P\0'` output; entries with unsafe names are an error (the sandbox controls them).
fn parse_listing(raw: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in raw.split(|b| *b == 0).filter(|i| !i.is_empty()) {
        let text = std::str::from_utf8(item).context("a file name in the sandbox is not UTF-8")?;
        let mut parts = text.splitn(3, ' ');
        let (Some(kind), Some(mode), Some(rel)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("unexpected listing line from the sandbox: {text:?}");
        };
        let kind = kind
            .chars()
            .next()
            .filter(|_| kind.len() == 1)
            .context("bad file type")?;
        let mode =
            u32::from_str_radix(mode, 8).with_context(|| format!("bad file mode {mode:?}"))?;
        let rel = PathBuf::from(rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            bail!(
                "refusing the sandbox entry {:?}: not a plain relative path",
                rel
            );
        }
        entries.push(Entry { kind, mode, rel });
    }
    Ok(entries)
}

/// Where a copy lands: into an existing directory by the source's name, otherwise at `to`.
fn host_target(to: &Path, source_name: &str) -> PathBuf {
    if to.is_dir() {
        to.join(source_name)
    } else {
        to.to_owned()
    }
}

fn base_name(path: &str) -> Result<String> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{path} has no file name to copy"))
}

/// Sandbox → host.
fn copy_out(agent: &Agent, name: &str, path: &str, to: &Path) -> Result<()> {
    let mut listing = Vec::new();
    // -H: the path given may itself be a symlink, resolved inside the sandbox; nothing below it is followed.
    let (code, err) = run_in(
        agent,
        &["find", "-H", path, "-printf", "%y %m %P\\0"],
        None,
        &mut listing,
    )?;
    if code != 0 {
        bail!("cannot read {name}:{path}: {err}");
    }
    let entries = parse_listing(&listing)?;
    let Some(root) = entries.first().filter(|e| e.rel.as_os_str().is_empty()) else {
        bail!("{name}:{path} is not there");
    };
    let target = host_target(to, &base_name(path)?);
    match root.kind {
        'f' => copy_file_out(agent, name, path, root.mode, &target, true),
        'd' => {
            // Like `cp -r`: an existing directory of that name receives the tree (files in it are replaced).
            create_or_reuse_dir(&target)?;
            let mut made: HashSet<PathBuf> = HashSet::from([PathBuf::new()]);
            for entry in entries.iter().skip(1) {
                let parent = entry
                    .rel
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                if !made.contains(&parent) {
                    // Only inside directories created here; a name under a skipped entry is not followed.
                    continue;
                }
                let dest = target.join(&entry.rel);
                let inside = format!("{}/{}", path.trim_end_matches('/'), entry.rel.display());
                match entry.kind {
                    'd' => {
                        create_or_reuse_dir(&dest)?;
                        made.insert(entry.rel.clone());
                    }
                    'f' => {
                        let exists = std::fs::symlink_metadata(&dest).is_ok();
                        copy_file_out(agent, name, &inside, entry.mode, &dest, exists)?;
                    }
                    other => output::warning(&format!(
                        "skipped {name}:{inside}: {} are not copied out of a sandbox",
                        kind_name(other)
                    )),
                }
            }
            Ok(())
        }
        other => bail!(
            "{name}:{path} is {}; only files and directories are copied",
            kind_name(other)
        ),
    }
}

/// Creates `dir`, or accepts it when it already is a real directory. A symlink is refused even when it points at a
/// directory: writing through it would land outside the destination the user named.
fn create_or_reuse_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            if meta.is_dir() {
                Ok(())
            } else if meta.file_type().is_symlink() {
                bail!(
                    "{} is a symlink; copy to the directory it points at instead",
                    dir.display()
                )
            } else {
                bail!(
                    "{} exists and is not a directory; remove it or copy to another path",
                    dir.display()
                )
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

fn kind_name(kind: char) -> &'static str {
    match kind {
        'l' => "a symlink (symlinks)",
        'p' => "a named pipe (pipes)",
        's' => "a socket (sockets)",
        'c' | 'b' => "a device (devices)",
        _ => "a special file (special files)",
    }
}

/// Streams one sandbox file into a new host file. `replace`: the user's own target path may exist and is replaced
/// atomically (rename never follows a symlink at the target); inside a copied directory files are created fresh.
fn copy_file_out(
    agent: &Agent,
    name: &str,
    inside: &str,
    mode: u32,
    dest: &Path,
    replace: bool,
) -> Result<()> {
    let tmp = if replace {
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        dest.with_file_name(format!(".{file_name}.sbx-cp.{}", std::process::id()))
    } else {
        dest.to_owned()
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        let (code, err) = run_in(agent, &["cat", "--", inside], None, &mut file)?;
        if code != 0 {
            bail!("cannot read {name}:{inside}: {err}");
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
        file.sync_all()?;
        if replace {
            std::fs::rename(&tmp, dest)
                .with_context(|| format!("cannot write {}", dest.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Host → sandbox.
fn copy_in(agent: &Agent, name: &str, from: &Path, path: &str) -> Result<()> {
    let meta =
        std::fs::metadata(from).with_context(|| format!("cannot read {}", from.display()))?;
    let source_name = from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name to copy", from.display()))?;
    let (is_dir, _) = run_in(agent, &["test", "-d", path], None, &mut std::io::sink())?;
    let target = if is_dir == 0 {
        format!("{}/{source_name}", path.trim_end_matches('/'))
    } else {
        path.to_owned()
    };
    if meta.is_dir() {
        copy_dir_in(agent, name, from, &target)
    } else {
        copy_file_in(agent, name, from, &target, meta.permissions().mode())
    }
}

fn copy_file_in(agent: &Agent, name: &str, from: &Path, target: &str, mode: u32) -> Result<()> {
    let mut file = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let (code, err) = run_in(
        agent,
        &[
            "sh",
            "-c",
            "cat > \"$1\" && chmod \"$2\" \"$1\"",
            "sh",
            target,
            &format!("{:o}", mode & 0o777),
        ],
        Some(&mut file as &mut dyn Read),
        &mut std::io::sink(),
    )?;
    if code != 0 {
        bail!("cannot write {name}:{target}: {err}");
    }
    Ok(())
}

fn copy_dir_in(agent: &Agent, name: &str, from: &Path, target: &str) -> Result<()> {
    let (code, err) = run_in(
        agent,
        &["mkdir", "-p", "--", target],
        None,
        &mut std::io::sink(),
    )?;
    if code != 0 {
        bail!("cannot create {name}:{target}: {err}");
    }
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .with_context(|| format!("cannot list {}", from.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", from.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let inside = format!("{}/{file_name}", target.trim_end_matches('/'));
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            copy_dir_in(agent, name, &path, &inside)?;
        } else if meta.is_file() {
            copy_file_in(agent, name, &path, &inside, meta.permissions().mode())?;
        } else {
            output::warning(&format!(
                "skipped {}: only files and directories are copied",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_told_apart() {
        assert_eq!(
            parse_side("box:/tmp/x"),
            Side::Sandbox {
                name: "box".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(parse_side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(parse_side("a:relative"), Side::Host("a:relative".into()));
        assert_eq!(parse_side("Bad Name:/x"), Side::Host("Bad Name:/x".into()));
    }

    #[test]
    fn listings_with_escaping_names_are_refused() {
        let ok = parse_listing(b"d 755 \0f 644 a/b c\0l 777 link\0").unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(
            ok[1],
            Entry {
                kind: 'f',
                mode: 0o644,
                rel: "a/b c".into()
            }
        );
        for bad in [
            &b"f 644 ../x\0"[..],
            b"f 644 /etc/x\0",
            b"f 644 a/../../x\0",
            b"f xyz a\0",
        ] {
            assert!(
                parse_listing(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
