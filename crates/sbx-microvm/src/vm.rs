//! A running microVM sandbox: boot, wait for the agent, connect, stop cleanly.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sbx_proto::{Client, VSOCK_AGENT_PORT};
use sbx_vmm::{ExitReason, StartupReport, Vm, VmHandle};

use crate::config::MicroVmConfig;
use crate::error::{MicroVmError, io};
use crate::{initramfs, state_disk, vsock};

/// How long to wait for the agent after boot by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A booted microVM whose agent answered.
#[derive(Debug)]
pub struct MicroVm {
    config: MicroVmConfig,
    handle: VmHandle,
    exit_rx: mpsc::Receiver<ExitReason>,
    waiter: Option<JoinHandle<()>>,
    exit: Option<ExitReason>,
}

impl MicroVm {
    /// Prepares the state disk (first start only) and the initramfs, boots the VM and waits up to `ready_timeout`
    /// for the agent to answer on vsock. The sandbox's egress proxy should already listen on
    /// [`MicroVmConfig::egress_socket_path`].
    pub fn start(config: MicroVmConfig, ready_timeout: Duration) -> Result<MicroVm, MicroVmError> {
        config.validate()?;
        std::fs::create_dir_all(&config.state_dir).map_err(io("create", &config.state_dir))?;
        state_disk::ensure(&config.state_disk(), config.state_disk_bytes)?;
        initramfs::write(
            &config.initramfs(),
            &config.agent,
            config.ca_file.as_deref(),
        )?;
        let _ = std::fs::remove_file(config.vsock_socket());
        let vm = Vm::start(config.vm_builder()?.build()?)?;
        let handle = vm.handle();
        let (tx, exit_rx) = mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name(format!("sbx-vm-{}", config.name))
            .spawn(move || {
                let reason = vm
                    .wait()
                    .unwrap_or_else(|e| ExitReason::VmmFailed(e.to_string()));
                let _ = tx.send(reason);
            })
            .map_err(io("start the VM thread for", &config.state_dir))?;
        let mut me = MicroVm {
            config,
            handle,
            exit_rx,
            waiter: Some(waiter),
            exit: None,
        };
        me.wait_ready(ready_timeout)?;
        Ok(me)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), MicroVmError> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < timeout {
            if let Some(reason) = self.try_exit() {
                last = format!("the VM ended: {reason}");
                break;
            }
            match self.connect() {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.handle.stop();
        Err(MicroVmError::NotReady {
            seconds: timeout.as_secs(),
            detail: last,
            console: self.config.console_log(),
        })
    }

    /// A protocol client on a fresh vsock stream to the agent's exec service.
    pub fn connect(&self) -> Result<Client, MicroVmError> {
        connect_agent(&self.config.vsock_socket())
    }

    /// The path the VMM connects guest egress to: the sandbox's proxy socket.
    pub fn egress_socket_path(&self) -> PathBuf {
        self.config.egress_socket_path()
    }

    /// The config the VM was started from.
    pub fn config(&self) -> &MicroVmConfig {
        &self.config
    }

    /// Boot timings (the guest's boot-timer write included).
    pub fn startup_report(&self) -> StartupReport {
        self.handle.startup_report()
    }

    /// How the VM ended, if it has.
    pub fn try_exit(&mut self) -> Option<ExitReason> {
        if self.exit.is_none()
            && let Ok(reason) = self.exit_rx.try_recv()
        {
            self.exit = Some(reason);
        }
        self.exit.clone()
    }

    /// Stops the sandbox: asks the agent to stop every process, sync and power off; if the VM has not ended within
    /// `timeout`, stops it from the host. Returns how it ended.
    pub fn stop(mut self, timeout: Duration) -> ExitReason {
        if self.try_exit().is_none()
            && let Ok(client) = self.connect()
        {
            // The agent powers off right after answering, so an error here (connection closed) is expected.
            let _ = client.shutdown();
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(reason) = self.try_exit() {
                return reason;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.handle.stop();
        self.join()
    }

    fn join(&mut self) -> ExitReason {
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
        self.try_exit()
            .unwrap_or_else(|| ExitReason::VmmFailed("the VM thread ended without a reason".into()))
    }
}

impl Drop for MicroVm {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.handle.stop();
            self.join();
        }
    }
}

/// Connects a protocol client to the agent of the VM whose hybrid-vsock socket is `uds`.
pub fn connect_agent(uds: &std::path::Path) -> Result<Client, MicroVmError> {
    let stream = vsock::connect_guest(uds, VSOCK_AGENT_PORT, Duration::from_secs(5))
        .map_err(io("connect to the agent through", uds))?;
    Ok(Client::connect_unix(stream, "microvm agent")?)
}
