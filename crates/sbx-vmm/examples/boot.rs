//! Boots a Linux kernel with the serial console on stdin/stdout and exits with a status that says how the guest ended
//! (0: guest reboot/power-off; 2: guest crash; 128+N: signal N; 1: VMM or vCPU failure; 64: bad arguments or
//! configuration).
//!
//! ```sh
//! cargo run --release -p sbx-vmm --example boot -- --kernel PATH [--initrd PATH] [--cmdline STR] [--mem-mib N] \
//!     [--vcpus N] [--disk PATH[:ro]]... [--vsock-uds PATH] [--vsock-cid N] [--rng]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use sbx_vmm::{SerialOutput, Vm, VmBuilder};

const USAGE: &str = "usage: boot --kernel PATH [--initrd PATH] [--cmdline STR] [--mem-mib N] [--vcpus N] \
[--disk PATH[:ro]]... [--vsock-uds PATH] [--vsock-cid N] [--rng]";
const EXIT_USAGE: u8 = 64;

fn parse(args: &[String]) -> Result<VmBuilder, String> {
    let mut builder = VmBuilder::new()
        .serial(SerialOutput::Stdout)
        .handle_signals(true);
    let mut kernel = false;
    let mut vsock_uds: Option<PathBuf> = None;
    let mut vsock_cid = 3u32;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        builder = match flag.as_str() {
            "--kernel" => {
                kernel = true;
                builder.kernel(value()?)
            }
            "--initrd" => builder.initrd(value()?),
            "--cmdline" => builder.cmdline(value()?),
            "--mem-mib" => {
                let v = value()?;
                builder.memory_mib(
                    v.parse()
                        .map_err(|_| format!("--mem-mib {v:?}: not a number"))?,
                )
            }
            "--vcpus" => {
                let v = value()?;
                builder.vcpus(
                    v.parse()
                        .map_err(|_| format!("--vcpus {v:?}: not a number from 1 to 255"))?,
                )
            }
            "--disk" => {
                let v = value()?;
                match v.strip_suffix(":ro") {
                    Some(path) => builder.disk(path, true),
                    None => builder.disk(v, false),
                }
            }
            "--vsock-uds" => {
                vsock_uds = Some(PathBuf::from(value()?));
                builder
            }
            "--vsock-cid" => {
                let v = value()?;
                vsock_cid = v
                    .parse()
                    .map_err(|_| format!("--vsock-cid {v:?}: not a number"))?;
                builder
            }
            "--rng" => builder.rng(true),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
    }
    if !kernel {
        return Err(format!("--kernel is required\n{USAGE}"));
    }
    if let Some(uds) = vsock_uds {
        builder = builder.vsock(vsock_cid, uds);
    }
    Ok(builder)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let builder = match parse(&args) {
        Ok(b) => b,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sbx-vmm: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let vm = match Vm::start(config) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("sbx-vmm: {e}");
            return ExitCode::from(1);
        }
    };
    match vm.wait() {
        Ok(reason) => {
            eprintln!("sbx-vmm: {reason}");
            ExitCode::from(u8::try_from(reason.exit_code()).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("sbx-vmm: {e}");
            ExitCode::from(1)
        }
    }
}
