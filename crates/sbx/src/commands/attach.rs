//! `sbx attach NAME` and `sbx run -d`: the agent's session outlives the terminal that started it. `sbx run` keeps
//! the session's id in `<sandbox>/agent.session`; Ctrl-] detaches, `sbx attach` takes the session over again
//! (the agent replays what the session printed meanwhile).

use anyhow::{Context, Result, bail};
use sbx_proto::{ClientError, WindowSize};

use crate::commands::exec::{self, ExecArgs};
use crate::home::Home;
use crate::sandboxes::SandboxDir;

/// `sbx attach NAME`.
pub(crate) fn run(home: &Home, name: &str) -> Result<i32> {
    let dir = SandboxDir::new(home, name)?;
    dir.load()?;
    let id_file = exec::session_file(&dir);
    let no_session = || {
        format!(
            "sandbox {name} has no agent session to attach to; start one with `sbx run --name {name} AGENT`, or open \
             a shell with `sbx exec -it {name} bash`"
        )
    };
    let id: u32 = match std::fs::read_to_string(&id_file) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} is corrupt; {}", id_file.display(), no_session()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{}", no_session()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", id_file.display())),
    };
    let client = sbx_jail::connect(&sbx_jail::StateDir::new(dir.jail())).with_context(|| {
        format!("cannot reach the agent of sandbox {name}; is it running? (`sbx ls`)")
    })?;
    let mut session = match client.attach(id) {
        Ok(s) => s,
        Err(ClientError::Agent(report)) => {
            // The sandbox was restarted, or the session ended and was collected: the id is stale.
            let _ = std::fs::remove_file(&id_file);
            bail!("{} (the agent says: {})", no_session(), report.message);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot attach to sandbox {name}")),
    };
    if let Some(ws) = terminal_size() {
        let _ = session.resize(ws.rows, ws.cols);
    }
    exec::finish_agent_session(&mut session, name, &id_file, true, true)
}

/// `sbx run -d`: starts the agent's session and returns at once, printing how to attach.
pub(crate) fn start_detached(home: &Home, args: ExecArgs) -> Result<i32> {
    let record = crate::commands::sandbox::ensure_running(home, &args.name)?;
    let dir = SandboxDir::new(home, &args.name)?;
    let client = crate::backend::connect_agent(&dir, &record)
        .with_context(|| format!("cannot reach the agent of sandbox {}", args.name))?;
    // As `sbx exec` does: the credential placeholders in force now, then `-e` from creation and from here.
    let mut env = crate::supervisor::placeholders_env(&dir)?;
    env.extend(record.env.iter().cloned());
    env.extend(args.env.iter().cloned());
    let mut request = exec::default_request(&record, args.argv.clone());
    request.env = env;
    if let Some(workdir) = &args.workdir {
        request.cwd = Some(workdir.clone());
    }
    if let Some(user) = &args.user {
        request.user = Some(user.clone());
    }
    request.tty = Some(terminal_size().unwrap_or(WindowSize { rows: 24, cols: 80 }));
    request.detached = true;
    request.background = true;
    let mut session = client.exec(request).map_err(|e| {
        anyhow::anyhow!(
            "cannot start `{}` in sandbox {}: {e}",
            args.argv.join(" "),
            args.name
        )
    })?;
    crate::fsutil::atomic_write(
        &exec::session_file(&dir),
        session.id().to_string().as_bytes(),
    )?;
    // An agent speaking protocol version 1 ignores `background`; the Detach makes it buffer from here on.
    if client.version() < 2 {
        session
            .detach(std::time::Duration::ZERO)
            .context("cannot detach from the agent session")?;
    }
    eprintln!(
        "agent started in sandbox {0}; `sbx attach {0}` connects to it",
        args.name
    );
    println!("{}", args.name);
    Ok(0)
}

fn terminal_size() -> Option<WindowSize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}
