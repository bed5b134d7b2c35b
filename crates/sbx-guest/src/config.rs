//! Command-line configuration of the agent.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::transport::Endpoint;

/// How the agent was started, which decides its init duties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Init of a namespace sandbox: the jail already mounted the root; the agent brings up loopback and serves.
    Namespace,
    /// PID 1 of a microVM: the agent also mounts proc/sys/dev/tmp/run and powers off on shutdown.
    MicroVm,
    /// A plain process (tests, debugging): no init duties besides serving.
    Process,
}

impl Mode {
    /// The name used in [`sbx_proto::Ready::mode`].
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Namespace => "namespace",
            Mode::MicroVm => "microvm",
            Mode::Process => "process",
        }
    }
}

/// Everything the agent needs to know, from its command line.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// Init duties.
    pub mode: Mode,
    /// Where the host connects to the exec service.
    pub listen: Endpoint,
    /// Where the egress forwarder relays connections (the host proxy); `None` disables the forwarder.
    pub proxy_upstream: Option<Endpoint>,
    /// Address of the forwarder inside the sandbox.
    pub proxy_listen: SocketAddr,
    /// The sandbox CA certificate (PEM) to trust, when TLS interception is on.
    pub ca_file: Option<PathBuf>,
    /// microVM only: the disks of the root and the workspace shares.
    pub vm: crate::microvm::VmLayout,
    /// Who runs commands whose request names no user (`--user`); the microVM defaults to `agent`.
    pub default_user: Option<String>,
}

/// A command-line error, naming the flag and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A flag needs a value.
    #[error("flag {flag} needs a value")]
    MissingValue {
        /// The flag.
        flag: String,
    },
    /// A value could not be parsed.
    #[error("invalid value {value:?} for {flag}: {reason}")]
    BadValue {
        /// The flag.
        flag: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// An unknown flag.
    #[error("unknown flag {0}; run `sbx-guest --help`")]
    Unknown(String),
    /// `--listen` is required.
    #[error(
        "--listen is required (e.g. --listen unix:/run/sbx/host/agent.sock or --listen vsock:1024)"
    )]
    NoListen,
}

/// Usage text.
pub const USAGE: &str = "usage: sbx-guest --listen ENDPOINT [--mode namespace|microvm|process] \
[--proxy ENDPOINT|none] [--proxy-listen ADDR] [--ca PEMFILE] \
[--user NAME] [--root-disk DEV --state-disk DEV] [--share TAG=PATH[:ro]]...
ENDPOINT: unix:/path | vsock:PORT (listen) | vsock:CID:PORT (connect)";

impl GuestConfig {
    /// Parses the arguments after the program name.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ConfigError> {
        let mut mode = Mode::Process;
        let mut listen = None;
        let mut proxy_upstream = None;
        let mut proxy_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3128));
        let mut ca_file = None;
        let mut vm = crate::microvm::VmLayout::default();
        let mut default_user = None;
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| ConfigError::MissingValue { flag: flag.clone() })
            };
            match flag.as_str() {
                "--mode" => {
                    let v = value()?;
                    mode = match v.as_str() {
                        "namespace" => Mode::Namespace,
                        "microvm" => Mode::MicroVm,
                        "process" => Mode::Process,
                        _ => return Err(bad(&flag, &v, "expected namespace, microvm or process")),
                    }
                }
                "--listen" => {
                    let v = value()?;
                    listen = Some(Endpoint::parse(&v).map_err(|r| bad(&flag, &v, &r))?);
                }
                "--proxy" => {
                    let v = value()?;
                    proxy_upstream = match v.as_str() {
                        "none" => None,
                        _ => Some(Endpoint::parse(&v).map_err(|r| bad(&flag, &v, &r))?),
                    }
                }
                "--proxy-listen" => {
                    let v = value()?;
                    proxy_listen = v.parse().map_err(|e| bad(&flag, &v, &format!("{e}")))?;
                }
                "--ca" => ca_file = Some(PathBuf::from(value()?)),
                "--user" => {
                    let v = value()?;
                    if v.is_empty() || v.contains([':', '/', '\n']) {
                        return Err(bad(&flag, &v, "expected a user name or uid"));
                    }
                    default_user = Some(v);
                }
                "--root-disk" => vm.root_disk = Some(PathBuf::from(value()?)),
                "--state-disk" => vm.state_disk = Some(PathBuf::from(value()?)),
                "--share" => {
                    let v = value()?;
                    vm.shares
                        .push(sbx_proto::vm::decode_share(&v).map_err(|r| bad(&flag, &v, &r))?);
                }
                other => return Err(ConfigError::Unknown(other.to_owned())),
            }
        }
        Ok(Self {
            mode,
            listen: listen.ok_or(ConfigError::NoListen)?,
            proxy_upstream,
            proxy_listen,
            ca_file,
            vm,
            default_user,
        })
    }
}

fn bad(flag: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        flag: flag.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<GuestConfig, ConfigError> {
        GuestConfig::from_args(line.split(' ').map(String::from))
    }

    #[test]
    fn the_microvm_command_line_from_the_host_parses() {
        let c = parse(
            "--mode microvm --listen vsock:1024 --proxy vsock:2:1025 --root-disk /dev/vda --state-disk /dev/vdb \
             --share ws0=/home/me/my%20project --share ws1=/data:ro --ca /sbx/ca.pem",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::MicroVm);
        assert_eq!(
            c.vm.root_disk.as_deref(),
            Some(std::path::Path::new("/dev/vda"))
        );
        assert_eq!(
            c.vm.state_disk.as_deref(),
            Some(std::path::Path::new("/dev/vdb"))
        );
        assert_eq!(c.vm.shares.len(), 2);
        assert_eq!(c.vm.shares[0].path, "/home/me/my project");
        assert!(c.vm.shares[1].read_only && !c.vm.shares[0].read_only);
    }

    #[test]
    fn the_default_user_comes_from_the_jail() {
        let c =
            parse("--mode namespace --listen unix:/run/sbx/host/agent.sock --user agent").unwrap();
        assert_eq!(c.default_user.as_deref(), Some("agent"));
        assert_eq!(
            parse("--listen unix:/a --mode namespace")
                .unwrap()
                .default_user,
            None,
            "without --user a namespace sandbox runs commands as root (the single id mapping)"
        );
        let err = parse("--listen unix:/a --user a:b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--user"), "{err}");
    }

    #[test]
    fn a_hostile_share_is_refused_naming_the_flag() {
        let err = parse("--listen vsock:1024 --share ws0=/a/../../etc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--share") && err.contains(".."), "{err}");
    }
}
