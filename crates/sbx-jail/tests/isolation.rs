//! End-to-end isolation tests of the namespace backend: real namespaces, the real static agent, a host template.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn commands_run_inside_with_their_own_pid_and_hostname() {
    if !namespaces_available("commands_run_inside") {
        return;
    }
    let (config, _g) = config("iso-basic");
    let sb = spawn(&config);
    let (code, out, err) = sh(
        &sb,
        "echo pid=$$; hostname; id -u; cat /proc/1/cmdline | tr '\\0' ' '",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("iso-basic\n"), "{out}");
    // With keep-id commands run as the agent user, with the single-mapping fallback as root (the host user).
    let uid = match sb.user_mapping().mode {
        sbx_jail::MappingMode::KeepId => "1000",
        sbx_jail::MappingMode::Single => "0",
    };
    assert!(
        out.contains(&format!("\n{uid}\n")),
        "uid {uid} inside: {out}"
    );
    assert!(
        out.contains("sbx-guest --mode namespace"),
        "the agent is PID 1: {out}"
    );
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn host_files_outside_the_workspace_are_absent() {
    if !namespaces_available("host_files_outside_the_workspace_are_absent") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("README"), "hello from the workspace").unwrap();
    let (mut config, _g) = config("iso-files");
    config.workspaces.push(sbx_jail::WorkspaceMount {
        path: ws.path().into(),
        read_only: false,
    });
    let sb = spawn(&config);
    let home_ssh = home.path().join(".ssh/id_ed25519");
    let script = format!(
        "cat {ws}/README; echo; echo written > {ws}/out.txt && echo wrote; \
         for p in {ssh} {home} /root/.cargo /etc/shadow /home/agent/.bash_history {state}; do \
           if test -e \"$p\"; then echo \"PRESENT $p\"; else echo \"absent $p\"; fi; done",
        ws = ws.path().display(),
        ssh = home_ssh.display(),
        home = home.path().display(),
        state = config.state_dir.display(),
    );
    let (code, out, err) = sh(&sb, &script);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("hello from the workspace\nwrote\n"),
        "{out}"
    );
    assert!(
        !out.contains("PRESENT"),
        "host paths visible inside:\n{out}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "written\n"
    );
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn read_only_workspace_cannot_be_written() {
    if !namespaces_available("read_only_workspace_cannot_be_written") {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let (mut config, _g) = config("iso-ro");
    config.workspaces.push(sbx_jail::WorkspaceMount {
        path: ws.path().into(),
        read_only: true,
    });
    let sb = spawn(&config);
    let (code, _, err) = sh(&sb, &format!("echo x > {}/f", ws.path().display()));
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!ws.path().join("f").exists());
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn workspace_symlinks_to_host_secrets_lead_nowhere() {
    if !namespaces_available("workspace_symlinks_to_host_secrets_lead_nowhere") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc/shadow", ws.path().join("shadow")).unwrap();
    std::os::unix::fs::symlink(home.path().join(".ssh"), ws.path().join("ssh")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../etc/shadow",
        ws.path().join("dotdot"),
    )
    .unwrap();
    // On the host the links work, which is what makes them dangerous.
    assert!(std::fs::read_to_string(ws.path().join("ssh/id_ed25519")).is_ok());
    let (mut config, _g) = config("iso-links");
    config.workspaces.push(sbx_jail::WorkspaceMount {
        path: ws.path().into(),
        read_only: false,
    });
    let sb = spawn(&config);
    let w = ws.path().display();
    let (_, out, _) = sh(
        &sb,
        &format!("cat {w}/shadow {w}/ssh/id_ed25519 {w}/dotdot 2>&1; ls {w}/ssh/ 2>&1"),
    );
    assert!(
        !out.contains("PRIVATE KEY") && !out.contains("root:"),
        "secret leaked:\n{out}"
    );
    assert!(out.contains("No such file or directory"), "{out}");
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn network_has_no_way_out_but_the_proxy_socket() {
    if !namespaces_available("network_has_no_way_out_but_the_proxy_socket") {
        return;
    }
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_service.local_addr().unwrap().port();
    let (config, _g) = config("iso-net");
    let sb = spawn(&config);
    let checks = [
        (
            "loopback service of the host",
            format!("curl --noproxy '*' -sS -m 3 http://127.0.0.1:{port}/"),
        ),
        (
            "outside address",
            "curl --noproxy '*' -sS -m 3 http://1.1.1.1/".to_owned(),
        ),
        ("UDP", "bash -c 'echo x > /dev/udp/8.8.8.8/53'".to_owned()),
        ("DNS", "getent hosts example.com".to_owned()),
    ];
    for (what, cmd) in checks {
        let (code, out, err) = sh(&sb, &cmd);
        assert_ne!(code, 0, "{what} reachable from the sandbox: {out}{err}");
    }
    let (code, out, _) = sh(&sb, "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '");
    assert_eq!((code, out.as_str()), (0, "lo\n"), "only loopback exists");
    let (ping_code, _, ping_err) = sh(
        &sb,
        "command -v ping >/dev/null || exit 77; ping -c1 -W2 1.1.1.1",
    );
    if ping_code == 77 {
        println!("skipped the ICMP check: the host has no ping binary to put in the template");
    } else {
        assert_ne!(ping_code, 0, "ICMP reached the outside: {ping_err}");
    }
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn seccomp_and_namespaces_refuse_remounting_and_nesting() {
    if !namespaces_available("seccomp_and_namespaces_refuse_remounting_and_nesting") {
        return;
    }
    let (config, _g) = config("iso-seccomp");
    let sb = spawn(&config);
    for cmd in [
        "mount -t tmpfs none /tmp",
        "unshare -U true",
        "unshare -m true",
        "mount --bind / /tmp",
    ] {
        // As root inside: what stops it must be the seccomp filter and the namespaces, not a missing privilege.
        let (code, out, err) = sh_as(
            &sb,
            Some("root"),
            &format!(
                "command -v {} >/dev/null || exit 77; {cmd}",
                cmd.split(' ').next().unwrap()
            ),
        );
        if code == 77 {
            println!("skipped `{cmd}`: the host template lacks the program");
            continue;
        }
        assert_ne!(code, 0, "`{cmd}` succeeded inside the sandbox: {out}");
        assert!(
            err.contains("Operation not permitted") || err.contains("permission denied"),
            "`{cmd}`: {err}"
        );
    }
    let (_, out, _) = sh(&sb, "ls /proc | grep -c '^[0-9]'");
    let visible: u32 = out.trim().parse().unwrap();
    assert!(visible < 10, "host processes visible: {visible} pids");
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn stop_and_start_keep_state_and_remove_deletes_it() {
    if !namespaces_available("stop_and_start_keep_state_and_remove_deletes_it") {
        return;
    }
    let (config, _g) = config("iso-state");
    let sb = spawn(&config);
    let (code, _, err) = sh(
        &sb,
        "echo kept > /var/tmp/state.txt && echo tmp > /tmp/gone.txt && sync",
    );
    assert_eq!(code, 0, "{err}");
    sb.stop(Duration::from_secs(5)).unwrap();
    let sb = spawn(&config);
    let (_, out, _) = sh(
        &sb,
        "cat /var/tmp/state.txt; test -e /tmp/gone.txt && echo tmp-survived",
    );
    assert_eq!(out, "kept\n", "state after restart");
    sb.stop(Duration::from_secs(5)).unwrap();
    let state = sbx_jail::StateDir::new(&config.state_dir);
    state.remove().unwrap();
    assert!(!config.state_dir.exists());
    let sb = spawn(&config);
    let (code, _, _) = sh(&sb, "test -e /var/tmp/state.txt");
    assert_ne!(code, 0, "state survived rm");
    sb.stop(Duration::from_secs(5)).unwrap();
    // The template itself never changed.
    assert!(!template().join("var/tmp/state.txt").exists());
}

#[test]
fn commands_run_as_the_agent_user_with_a_pty() {
    if !namespaces_available("commands_run_as_the_agent_user_with_a_pty") {
        return;
    }
    let (config, _g) = config("iso-user");
    let sb = spawn(&config);
    if sb.user_mapping().mode != sbx_jail::MappingMode::KeepId {
        println!(
            "skipped: no agent user inside with the single id mapping ({})",
            sb.user_mapping().fallback.clone().unwrap_or_default()
        );
        return;
    }
    let client = sb.connect().unwrap();
    let req = sbx_proto::ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "id -u; echo $HOME; tty".into()],
        user: Some("agent".into()),
        tty: Some(sbx_proto::WindowSize { rows: 24, cols: 80 }),
        ..Default::default()
    };
    let out = client.exec(req).unwrap().wait_output().unwrap();
    let text = out.stdout_text();
    assert!(
        text.starts_with("1000\r\n/home/agent\r\n/dev/pts/"),
        "{text:?}"
    );
    drop(client);
    sb.stop(Duration::from_secs(5)).unwrap();
}
