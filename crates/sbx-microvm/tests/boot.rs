//! Boot to exec: a real microVM with the real kernel, a template image, the static agent; a command runs as the
//! agent user, the workspace is shared at its path, state survives a restart, stop ends the VM cleanly.
//!
//! Needs hardware virtualization (`kvm_intel`/`kvm_amd`), the guest kernel (`cargo xtask guest-kernel`, or
//! `SBX_TEST_KERNEL`), a template image (`SBX_TEST_TEMPLATE_IMAGE`, e.g. from `sbx template build`) and the static
//! agent (`SBX_GUEST_BIN`, from `cargo xtask guest-agent`). It prints one line saying what is missing otherwise.

use std::path::PathBuf;
use std::time::Duration;

use sbx_microvm::{
    MicroVm, MicroVmConfig, Workspace, hardware_virtualization, kvm_hardware_virtualization,
};

fn env_file(var: &str, fallback: Option<PathBuf>) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or(fallback)
        .filter(|p| p.is_file())
}

fn inputs() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    if !hardware_virtualization() {
        return Err(format!(
            "no hardware virtualization (KVM flavour {:?}); a guest cannot boot to userspace here",
            kvm_hardware_virtualization()
        ));
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let kernel = env_file(
        "SBX_TEST_KERNEL",
        Some(home.join(".cache/sbx/guest-kernel/vmlinux")),
    )
    .ok_or("no guest kernel (cargo xtask guest-kernel or SBX_TEST_KERNEL)")?;
    let image = env_file(
        "SBX_TEST_TEMPLATE_IMAGE",
        Some(home.join(".local/state/sbx/templates/default/rootfs.ext4")),
    )
    .ok_or("no template image (sbx template build or SBX_TEST_TEMPLATE_IMAGE)")?;
    let agent = env_file("SBX_GUEST_BIN", None)
        .ok_or("no static agent (SBX_GUEST_BIN from cargo xtask guest-agent)")?;
    Ok((kernel, image, agent))
}

#[test]
fn boots_to_exec_keeps_state_and_stops_cleanly() {
    let (kernel, image, agent) = match inputs() {
        Ok(i) => i,
        Err(why) => {
            println!("SKIPPED boots_to_exec_keeps_state_and_stops_cleanly: {why}");
            return;
        }
    };
    let state = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("hello.txt"), "from the host\n").unwrap();
    let mut config = MicroVmConfig::new("e2e", kernel, image, agent, state.path().join("vm"));
    config.workspaces.push(Workspace {
        path: workspace.path().to_path_buf(),
        read_only: false,
    });
    config.memory_mib = 512;
    let vm = MicroVm::start(config.clone(), Duration::from_secs(60)).unwrap();
    assert!(
        vm.startup_report().to_boot_ready.is_some(),
        "the agent wrote the boot timer"
    );
    let client = vm.connect().unwrap();
    let ws = workspace.path().display().to_string();
    let out = client
        .run(&["sh", "-c", &format!("id -un; cat {ws}/hello.txt; echo kept > /var/tmp/state.txt; sudo -n true && echo sudo-ok")])
        .unwrap();
    assert_eq!(
        out.stdout_text(),
        "agent\nfrom the host\nsudo-ok\n",
        "{}",
        out.stderr_text()
    );
    drop(client);
    let exit = vm.stop(Duration::from_secs(20));
    assert_eq!(exit.exit_code(), 0, "{exit}");
    let vm = MicroVm::start(config, Duration::from_secs(60)).unwrap();
    let out = vm
        .connect()
        .unwrap()
        .run(&["cat", "/var/tmp/state.txt"])
        .unwrap();
    assert_eq!(out.stdout_text(), "kept\n");
    assert_eq!(vm.stop(Duration::from_secs(20)).exit_code(), 0);
}
