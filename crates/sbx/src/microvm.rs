//! The supervisor side of a microVM sandbox: boot it with sbx-microvm, serve the control socket, stop it cleanly.
//!
//! The VM lives in the supervisor process (its vCPU and device threads). Guest egress reaches the host on the Unix
//! socket [`egress_socket_path`]: the sandbox's egress proxy listens there.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use sbx_audit::Action;

use crate::egress::{Egress, EgressSpec};
use crate::home::Home;
use crate::limits::{DEFAULT_MEMORY_MIB, DEFAULT_VCPUS};
use crate::sandboxes::{Record, SandboxDir};
use crate::supervisor::{POLL, Request, STOP_TIMEOUT, handle};

/// The VM's files inside the sandbox directory: state disk, vsock sockets, initramfs, console log.
pub(crate) fn vm_dir(dir: &SandboxDir) -> PathBuf {
    dir.root().join("vm")
}

/// The template image next to the template root the record names (`<template>/rootfs` → `<template>/rootfs.ext4`).
pub(crate) fn template_image(record: &Record) -> PathBuf {
    record.template.with_file_name("rootfs.ext4")
}

/// The microVM config of a sandbox.
pub(crate) fn config(
    dir: &SandboxDir,
    record: &Record,
    guest: &Path,
) -> Result<sbx_microvm::MicroVmConfig> {
    let kernel = crate::backend::guest_kernel()?;
    let mut config = sbx_microvm::MicroVmConfig::new(
        &record.name,
        kernel,
        template_image(record),
        guest,
        vm_dir(dir),
    );
    config.workspaces = record
        .workspaces
        .iter()
        .map(|w| sbx_microvm::Workspace {
            path: w.path.clone(),
            read_only: w.read_only,
        })
        .collect();
    config.vcpus = record.limits.cpus.unwrap_or(DEFAULT_VCPUS);
    config.memory_mib = record.limits.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB);
    Ok(config)
}

/// Where the sandbox's egress proxy must listen for a microVM sandbox: the VMM's `<vsock>_<egress port>` path.
pub(crate) fn egress_socket_path(dir: &SandboxDir) -> PathBuf {
    let mut name = vm_dir(dir).join("vsock.sock").into_os_string();
    name.push(format!("_{}", sbx_proto::VSOCK_EGRESS_PORT));
    PathBuf::from(name)
}

/// Connects to the agent of a running microVM sandbox.
pub(crate) fn connect(dir: &SandboxDir) -> Result<sbx_proto::Client> {
    Ok(sbx_microvm::connect_agent(&vm_dir(dir).join("vsock.sock"))?)
}

/// Runs in the supervisor: boots the VM and serves the control socket until told to stop or the VM ends.
pub(crate) fn serve(home: &Home, dir: &SandboxDir, record: &Record, guest: &Path) -> Result<()> {
    let mut config = config(dir, record, guest)?;
    let socket = dir.control_socket();
    let _ = std::fs::remove_file(&socket);
    crate::signals::catch(crate::signals::TERMINATION);
    // The proxy listens where the VMM delivers the guest's vsock connections to the egress port.
    std::fs::create_dir_all(vm_dir(dir))
        .with_context(|| format!("cannot create {}", vm_dir(dir).display()))?;
    let egress = Egress::start(&EgressSpec {
        home,
        sandbox: &record.name,
        socket: egress_socket_path(dir),
        ca_file: dir.root().join("ca.pem"),
    })?;
    crate::supervisor::check_mounts(home, record, &egress)?;
    config.ca_file = Some(egress.ca_file().to_path_buf());
    let result = run_vm(config, &socket, &egress, record);
    let _ = std::fs::remove_file(socket);
    let _ = egress
        .audit()
        .record(crate::audit::lifecycle(record, Action::SandboxStopped));
    egress.shutdown();
    result
}

/// Boots the VM and serves the control socket until told to stop or the VM ends.
fn run_vm(
    config: sbx_microvm::MicroVmConfig,
    socket: &Path,
    egress: &Egress,
    record: &Record,
) -> Result<()> {
    let mut vm = sbx_microvm::MicroVm::start(config, sbx_microvm::READY_TIMEOUT)
        .context("cannot start the microVM sandbox")?;
    let _ = egress
        .audit()
        .record(crate::audit::lifecycle(record, Action::SandboxStarted));
    let report = vm.startup_report();
    eprintln!(
        "sbx supervisor: microVM {} running (boot to ready: {:?})",
        record.name, report.to_boot_ready
    );
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the control socket non-blocking")?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if handle(stream, egress, record)? == Request::Stop {
                    let _ = std::fs::remove_file(socket);
                    let exit = vm.stop(STOP_TIMEOUT);
                    eprintln!(
                        "sbx supervisor: microVM stopped: {exit} (status {})",
                        exit.exit_code()
                    );
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let signal = crate::signals::take();
                if signal != 0 {
                    eprintln!("sbx supervisor: signal {signal}; stopping the microVM");
                    let _ = std::fs::remove_file(socket);
                    let exit = vm.stop(STOP_TIMEOUT);
                    eprintln!("sbx supervisor: microVM stopped: {exit}");
                    return Ok(());
                }
                if let Some(exit) = vm.try_exit() {
                    let _ = std::fs::remove_file(socket);
                    bail!(
                        "the microVM ended on its own: {exit} (status {})",
                        exit.exit_code()
                    );
                }
                egress.reload_if_changed();
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e).context("control socket accept failed"),
        }
    }
}
