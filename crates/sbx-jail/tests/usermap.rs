//! Keep-id: the agent user is the host user, root and every other id inside are a subordinate range; and the
//! single-mapping fallback. CI runs as root, where the fixed subordinate range applies.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use sbx_jail::{MappingChoice, MappingMode, WorkspaceMount};

fn keep_id_available(test: &str) -> bool {
    if !namespaces_available(test) {
        return false;
    }
    let m = sbx_jail::idmap::choose(MappingChoice::Auto, template());
    if m.mode != MappingMode::KeepId {
        println!(
            "skipped {test}: no subordinate id range here ({})",
            m.fallback.unwrap_or_default()
        );
        return false;
    }
    true
}

#[test]
fn the_agent_is_the_host_user_and_root_is_a_subordinate_id() {
    if !keep_id_available("the_agent_is_the_host_user_and_root_is_a_subordinate_id") {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("from-host"), "hi").unwrap();
    let (mut config, _g) = config("keep-id");
    config.workspaces.push(WorkspaceMount {
        path: ws.path().into(),
        read_only: false,
    });
    let sb = spawn(&config);
    let mapping = sb.user_mapping().clone();
    assert_eq!(mapping.mode, MappingMode::KeepId);
    assert_eq!(
        mapping.agent,
        Some((1000, 1000)),
        "read from the template's /etc/passwd"
    );
    assert!(mapping.warning().is_none());
    let host_uid = rustix::process::geteuid().as_raw();
    let host_gid = rustix::process::getegid().as_raw();
    let sub_root = mapping.uid_map.to_host(0).unwrap();
    assert_ne!(sub_root, 0);
    assert_ne!(sub_root, host_uid);

    // The default user is the agent, with its environment.
    let w = ws.path().display();
    let (code, out, err) = sh_as(
        &sb,
        None,
        &format!(
            "id -u; id -g; echo $HOME $USER; stat -c %u {w}/from-host; echo made > {w}/by-agent; \
             stat -c '%u %g' / /etc/passwd /home/agent"
        ),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "1000\n1000\n/home/agent agent\n1000\n0 0\n0 0\n1000 1000\n",
        "the host user's file is the agent's; the template's files are root's, the home the agent's"
    );
    let made = std::fs::metadata(ws.path().join("by-agent")).unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (host_uid, host_gid),
        "a file the agent creates in the workspace belongs to the host user"
    );

    // `-u root` is root; what root creates in the sandbox's state belongs to the subordinate range on the host.
    let (code, out, err) = sh_as(
        &sb,
        Some("root"),
        "id -u; echo secret > /var/tmp/by-root; chmod 600 /var/tmp/by-root; echo ok",
    );
    assert_eq!((code, out.as_str()), (0, "0\nok\n"), "{err}");
    let by_root = std::fs::metadata(config.state_dir.join("upper/var/tmp/by-root")).unwrap();
    assert_eq!(
        by_root.uid(),
        sub_root,
        "root inside is the subordinate base"
    );
    assert_ne!(by_root.uid(), 0, "not host root");

    // The agent cannot read root's files, reach the agent's socket directory, or touch kernel-wide knobs.
    let (code, _, err) = sh_as(&sb, None, "cat /var/tmp/by-root");
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _, err) = sh_as(&sb, None, "ls /run/sbx/host");
    assert_ne!(code, 0, "the agent reached the exec socket's directory");
    assert!(err.contains("Permission denied"), "{err}");
    for user in [None, Some("root")] {
        // Each write is a no-op if it succeeded (the value or mode it already has), so a failing test harms nothing.
        let (code, _, err) = sh_as(
            &sb,
            user,
            "v=$(cat /proc/sys/kernel/printk_ratelimit) && echo $v > /proc/sys/kernel/printk_ratelimit",
        );
        assert_ne!(code, 0, "{user:?} wrote a host sysctl");
        assert!(err.contains("Read-only file system"), "{user:?}: {err}");
        let (code, out, err) = sh_as(
            &sb,
            user,
            "for f in /proc/kpagecount /proc/slabinfo; do test -e $f || continue; head -c 8 $f | wc -c; done",
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            out.lines().all(|n| n.trim() == "0"),
            "{user:?} read the host's page or slab tables: {out}"
        );
        let (code, _, err) = sh_as(&sb, user, "chmod 666 /dev/null");
        assert_ne!(code, 0, "{user:?} changed the host's /dev/null");
        assert!(err.contains("Read-only file system"), "{user:?}: {err}");
    }

    // sudo works where the template has it (the Debian template; the host template only if the host has sudo).
    let (code, out, _) = sh_as(
        &sb,
        None,
        "command -v sudo >/dev/null || exit 77; sudo -n id -u",
    );
    if code == 77 {
        println!("sudo check skipped: the host template has no sudo");
    } else {
        assert_eq!((code, out.as_str()), (0, "0\n"));
    }

    // The mapping is recorded for `sbx ls`.
    let recorded = sbx_jail::StateDir::new(&config.state_dir)
        .user_mapping()
        .unwrap();
    assert_eq!(recorded, mapping);
    assert!(
        recorded.summary().contains("agent (uid 1000"),
        "{}",
        recorded.summary()
    );
    sb.stop(Duration::from_secs(5)).unwrap();

    // State survives a restart with the same owners.
    let sb = spawn(&config);
    let (code, out, err) = sh_as(
        &sb,
        Some("root"),
        "stat -c %u /var/tmp/by-root; stat -c %u /",
    );
    assert_eq!((code, out.as_str()), (0, "0\n0\n"), "{err}");
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_single_mapping_fallback_runs_everything_as_root_and_says_so() {
    if !namespaces_available("the_single_mapping_fallback_runs_everything_as_root_and_says_so") {
        return;
    }
    // Its own template: a template is shifted to one mapping at a time.
    let (_t, template) = new_template();
    let ws = tempfile::tempdir().unwrap();
    let (mut config, _g) = config("single");
    config.template = template;
    config.user_mapping = MappingChoice::Single;
    config.workspaces.push(WorkspaceMount {
        path: ws.path().into(),
        read_only: false,
    });
    let sb = spawn(&config);
    let mapping = sb.user_mapping();
    assert_eq!(mapping.mode, MappingMode::Single);
    let warning = mapping.warning().unwrap();
    assert!(warning.contains("runs as root inside"), "{warning}");
    assert!(
        mapping.summary().contains("single mapping"),
        "{}",
        mapping.summary()
    );
    let (code, out, err) = sh_as(
        &sb,
        None,
        &format!("id -u; echo x > {}/f", ws.path().display()),
    );
    assert_eq!((code, out.as_str()), (0, "0\n"), "{err}");
    assert_eq!(
        std::fs::metadata(ws.path().join("f")).unwrap().uid(),
        rustix::process::geteuid().as_raw()
    );
    assert_eq!(
        sbx_jail::StateDir::new(&config.state_dir)
            .user_mapping()
            .map(|m| m.mode),
        Some(MappingMode::Single)
    );
    sb.stop(Duration::from_secs(5)).unwrap();
}
