//! The in-sandbox agent of sbx: init, egress forwarder and exec service, in one static binary.
//!
//! The agent is the first process of every sandbox — PID 1 of a microVM, or the init of a namespace sandbox started
//! by `sbx-jail`. It
//!
//! * does init duties: loopback up, pseudo filesystems in a microVM ([`init`]), reaping every child
//!   ([`table::SessionTable::reap_forever`]), stopping everything and syncing on shutdown;
//! * runs the egress [`forwarder`] on `127.0.0.1:3128`, relaying each connection to the host proxy over the sandbox's
//!   only way out (Unix socket or vsock), and installs the sandbox CA ([`env::install_ca`]);
//! * serves the exec [`service`] over the `sbx-proto` protocol: commands with a pty or pipes, stdin/stdout/stderr,
//!   resize, signals, exit status, env/cwd/user, many sessions, detach/attach.
//!
//! The binary is `sbx-guest --listen unix:/run/sbx/host/agent.sock --proxy unix:/run/sbx/proxy.sock --mode
//! namespace`; [`run`] is what it calls. Build the static binary with `cargo xtask guest-agent`.
//!
//! ```no_run
//! let config = sbx_guest::GuestConfig::from_args(
//!     ["--listen", "unix:/tmp/agent.sock", "--proxy", "none"].map(String::from),
//! )?;
//! sbx_guest::run(config)?; // serves forever
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod env;
pub mod forwarder;
pub mod init;
pub mod microvm;
pub mod process;
pub mod service;
pub mod session;
pub mod table;
pub mod transparent;
pub mod transport;
pub mod users;

use std::sync::Arc;
use std::time::Instant;

pub use config::{GuestConfig, Mode};

/// Starting the agent failed; the message names the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setup step failed.
    #[error("sbx-guest: {step}: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// The underlying error.
        detail: String,
    },
}

fn step(step: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
    move |e| StartError::Step {
        step,
        detail: e.to_string(),
    }
}

/// microVM: pseudo file systems of the initramfs, the overlay root, then the real root's own pseudo file systems,
/// the workspace shares, the CA (moved out of the initramfs) and the network fence.
fn microvm_root(config: &mut GuestConfig) -> Result<(), StartError> {
    let failed = |step: &'static str| move |detail: String| StartError::Step { step, detail };
    init::mount_pseudo_filesystems().map_err(failed("mounting /proc, /sys, /dev"))?;
    let ca = match &config.ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(step("reading the sandbox CA from the initramfs"))?)
        }
        None => None,
    };
    microvm::switch_root(&config.vm).map_err(failed("assembling the root overlay"))?;
    init::mount_pseudo_filesystems().map_err(failed("mounting /proc, /sys, /dev in the root"))?;
    microvm::mount_shares(&config.vm.shares).map_err(failed("mounting the workspaces"))?;
    if let Some(pem) = ca {
        let path = std::path::PathBuf::from("/run/sbx/ca.pem");
        std::fs::create_dir_all("/run/sbx").map_err(step("creating /run/sbx"))?;
        std::fs::write(&path, pem).map_err(step("writing the sandbox CA"))?;
        config.ca_file = Some(path);
    }
    if let Err(e) = microvm::fence_network() {
        eprintln!("sbx-guest: network fence: {e}");
    }
    Ok(())
}

/// Runs the agent: init duties, forwarder, then the exec service (never returns unless setup fails).
pub fn run(config: GuestConfig) -> Result<(), StartError> {
    let started = Instant::now();
    let mut config = config;
    if config.mode == Mode::MicroVm {
        microvm_root(&mut config)?;
    }
    if config.mode != Mode::Process {
        init::loopback_up().map_err(step("bringing up the loopback interface"))?;
        if let Err(e) = init::name_host_in(std::path::Path::new("/etc/hosts")) {
            eprintln!("sbx-guest: cannot add the sandbox's host name to /etc/hosts: {e}");
        }
    }
    let ca = match &config.ca_file {
        Some(ca) => Some(
            env::install_ca(std::path::Path::new("/"), ca)
                .map_err(step("installing the sandbox CA"))?,
        ),
        None => None,
    };
    let proxy_url = config
        .proxy_upstream
        .as_ref()
        .map(|_| format!("http://{}", config.proxy_listen));
    if let Some(upstream) = config.proxy_upstream.clone() {
        let listener =
            forwarder::bind(config.proxy_listen).map_err(step("binding the egress forwarder"))?;
        session::spawn_named("sbx-forwarder", move || {
            forwarder::serve(listener, upstream)
        });
    }
    let listener = config
        .listen
        .listen()
        .map_err(step("listening for the host"))?;
    if config.mode == Mode::Namespace
        && let transport::Endpoint::Unix(path) = &config.listen
    {
        // With keep-id the socket belongs to root inside (a subordinate id on the host), and the unprivileged host
        // user must still connect; inside, its directory (/run/sbx) is root's alone.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(step("opening the agent socket to the host user"))?;
    }
    let ready = sbx_proto::Ready {
        boot_ms: started.elapsed().as_millis() as u64,
        mode: config.mode.as_str().to_owned(),
        proxy_listen: proxy_url
            .as_ref()
            .map(|_| config.proxy_listen.to_string())
            .unwrap_or_default(),
    };
    if config.mode == Mode::MicroVm {
        if let Some(upstream) = config.proxy_upstream.clone() {
            match std::net::TcpListener::bind(("127.0.0.1", microvm::TRANSPARENT_PORT)) {
                Ok(l) => {
                    session::spawn_named("sbx-transparent", move || {
                        transparent::serve(l, upstream)
                    });
                }
                Err(e) => eprintln!("sbx-guest: transparent egress listener: {e}"),
            }
        }
        if let Err(e) = microvm::report_boot() {
            eprintln!("sbx-guest: boot timer not written (/dev/mem: {e})");
        }
    }
    let default_user = match (&config.default_user, config.mode) {
        (Some(user), _) => Some(user.clone()),
        (None, Mode::MicroVm) => Some(users::AGENT_USER.to_owned()),
        (None, _) => None,
    };
    if config.mode == Mode::Namespace
        && let Some(name) = &default_user
        && let Err(e) = users::ensure_home(std::path::Path::new("/etc"), name)
    {
        eprintln!("sbx-guest: home of {name}: {e}");
    }
    let service = service::Service::with_default_user(
        config.mode,
        env::base_env(proxy_url.as_deref(), ca.as_ref()),
        ready,
        default_user,
    );
    let table = Arc::clone(&service.table);
    session::spawn_named("sbx-reaper", move || table.reap_forever());
    service.serve(listener);
    Ok(())
}
