//! Runs one command in a throw-away namespace sandbox built from the host template:
//! `cargo run -p sbx-jail --example run -- GUEST_BINARY PROGRAM [ARGS...]` (GUEST_BINARY from `cargo xtask guest-agent`).
//! The current directory is mounted as the workspace.

use std::time::Duration;

use sbx_jail::{Jail, JailConfig, WorkspaceMount};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let guest = args
        .next()
        .ok_or("usage: run GUEST_BINARY PROGRAM [ARGS...]")?;
    let argv: Vec<String> = args.collect();
    if argv.is_empty() {
        return Err("usage: run GUEST_BINARY PROGRAM [ARGS...]".into());
    }
    let tmp = std::env::temp_dir().join(format!("sbx-example-{}", std::process::id()));
    let tpl = tmp.join("template");
    sbx_template::host_template(&tpl)?;
    let mut config = JailConfig::new(
        "example",
        &tpl,
        tmp.join("state"),
        std::fs::canonicalize(guest)?,
    );
    config.workspaces.push(WorkspaceMount {
        path: std::env::current_dir()?,
        read_only: false,
    });
    eprintln!("{}", sbx_jail::ISOLATION_WARNING);
    let sandbox = Jail::spawn(&config)?;
    eprintln!("sandbox ready in {:?}", sandbox.startup_time());
    let cwd = std::env::current_dir()?.display().to_string();
    let request = sbx_proto::ExecRequest {
        argv,
        cwd: Some(cwd),
        ..Default::default()
    };
    let client = sandbox.connect()?;
    let session = client.exec(request)?;
    session.close_stdin()?;
    let out = session.wait_output()?;
    drop(client);
    print!("{}", out.stdout_text());
    eprint!("{}", out.stderr_text());
    let mapping = sandbox.user_mapping().clone();
    eprintln!("ids: {}", mapping.summary());
    if let Some(w) = mapping.warning() {
        eprintln!("warning: {w}");
    }
    sandbox.stop(Duration::from_secs(5))?;
    // With keep-id an unprivileged user cannot delete what belongs to its subordinate range by itself.
    if std::fs::remove_dir_all(&tmp).is_err() {
        sbx_jail::shift::remove_tree(&tmp, &mapping)?;
    }
    std::process::exit(out.status.shell_code());
}
