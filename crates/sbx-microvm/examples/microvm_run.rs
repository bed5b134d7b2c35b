//! Boots a sandbox microVM and runs one command in it:
//! `cargo run -p sbx-microvm --example microvm_run -- KERNEL TEMPLATE_IMAGE AGENT STATE_DIR CMD [ARGS...]`
//! (KERNEL from `cargo xtask guest-kernel`, TEMPLATE_IMAGE from `sbx template build`, AGENT from
//! `cargo xtask guest-agent`). The current directory is shared at its own path. Needs hardware virtualization.

use std::time::Duration;

use sbx_microvm::{MicroVm, MicroVmConfig, Workspace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kernel, image, agent, state, cmd @ ..] = args.as_slice() else {
        return Err("usage: run KERNEL TEMPLATE_IMAGE AGENT STATE_DIR CMD [ARGS...]".into());
    };
    if cmd.is_empty() {
        return Err("give a command to run".into());
    }
    let mut config = MicroVmConfig::new("example", kernel, image, agent, state);
    config.workspaces.push(Workspace {
        path: std::env::current_dir()?,
        read_only: false,
    });
    eprintln!(
        "egress proxy socket: {}",
        config.egress_socket_path().display()
    );
    let vm = MicroVm::start(config, sbx_microvm::READY_TIMEOUT)?;
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let out = vm.connect()?.run(&argv)?;
    print!("{}", out.stdout_text());
    eprint!("{}", out.stderr_text());
    eprintln!("VM ended: {}", vm.stop(Duration::from_secs(20)));
    Ok(())
}
