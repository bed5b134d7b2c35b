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
[--proxy ENDPOINT|none] [--proxy-listen ADDR] [--ca PEMFILE]
ENDPOINT: unix:/path | vsock:PORT (listen) | vsock:CID:PORT (connect)";

impl GuestConfig {
    /// Parses the arguments after the program name.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ConfigError> {
        let mut mode = Mode::Process;
        let mut listen = None;
        let mut proxy_upstream = None;
        let mut proxy_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3128));
        let mut ca_file = None;
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
                other => return Err(ConfigError::Unknown(other.to_owned())),
            }
        }
        Ok(Self {
            mode,
            listen: listen.ok_or(ConfigError::NoListen)?,
            proxy_upstream,
            proxy_listen,
            ca_file,
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
