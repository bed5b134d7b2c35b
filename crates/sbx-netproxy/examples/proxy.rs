//! Run the egress proxy for one sandbox.
//!
//! ```text
//! cargo run --release -p sbx-netproxy --example proxy -- --listen 127.0.0.1:8080 --policy policy.toml \
//!     --state-dir /tmp/sbx-proxy [--secret SERVICE=VALUE]... [--secret-host SERVICE=HOST]... [--extra-ca PEM]... \
//!     [--audit-dir DIR] [--upstream-proxy HOST:PORT]
//! curl -x http://127.0.0.1:8080 --cacert /tmp/sbx-proxy/ca.pem https://api.anthropic.com/v1/models
//! ```
//! Prints `listening on ADDR` when ready and `placeholder SERVICE <placeholder>` per secret; writes `STATE/ca.pem`.

use std::path::PathBuf;
use std::sync::Arc;

use sbx_netproxy::simple::{MemoryAudit, StaticCredential, StaticInjector};
use sbx_netproxy::{AuditSink, Ingress, Proxy, ProxyConfig};

const USAGE: &str = "usage: proxy --listen ADDR --policy FILE... --state-dir DIR [--secret SERVICE=VALUE]... \
[--secret-host SERVICE=HOST]... [--extra-ca PEM]... [--audit-dir DIR] [--upstream-proxy HOST:PORT]";

#[derive(Default)]
struct Args {
    listen: Option<String>,
    policies: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    secrets: Vec<(String, String)>,
    secret_hosts: Vec<(String, String)>,
    extra_cas: Vec<PathBuf>,
    audit_dir: Option<PathBuf>,
    upstream_proxy: Option<String>,
}

fn split_pair(flag: &str, v: &str) -> anyhow::Result<(String, String)> {
    v.split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("{flag} {v:?}: expected NAME=VALUE"))
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => args.listen = Some(value()?),
            "--policy" => args.policies.push(value()?.into()),
            "--state-dir" => args.state_dir = Some(value()?.into()),
            "--secret" => args.secrets.push(split_pair("--secret", &value()?)?),
            "--secret-host" => args
                .secret_hosts
                .push(split_pair("--secret-host", &value()?)?),
            "--extra-ca" => args.extra_cas.push(value()?.into()),
            "--audit-dir" => args.audit_dir = Some(value()?.into()),
            "--upstream-proxy" => args.upstream_proxy = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let listen = args
        .listen
        .ok_or_else(|| anyhow::anyhow!("--listen is required\n{USAGE}"))?;
    let state_dir = args
        .state_dir
        .ok_or_else(|| anyhow::anyhow!("--state-dir is required\n{USAGE}"))?;
    if args.policies.is_empty() {
        anyhow::bail!("at least one --policy FILE is required\n{USAGE}");
    }
    let policy_paths: Vec<&std::path::Path> = args.policies.iter().map(PathBuf::as_path).collect();
    // The real policy engine: files in authority order (company, org, team, user, sandbox), errors as file:line:col.
    let policy = sbx_policy::batch::load_policy(&policy_paths)?;

    let mut creds = Vec::new();
    for (service, value) in &args.secrets {
        let mut cred = StaticCredential::well_known(service, value);
        cred.hosts.extend(
            args.secret_hosts
                .iter()
                .filter(|(s, _)| s == service)
                .map(|(_, h)| h.to_ascii_lowercase()),
        );
        creds.push(cred);
    }
    let injector = StaticInjector::new(creds);

    let mut config = ProxyConfig::new(&state_dir);
    for path in &args.extra_cas {
        config.extra_ca_pem.push(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--extra-ca {}: {e}", path.display()))?,
        );
    }
    config.upstream_proxy = args.upstream_proxy;
    // With --audit-dir, events go to a tamper-evident sbx-audit log (`sbx_audit::Reader` / `verify` read it back).
    let (audit, guard): (Arc<dyn AuditSink>, Option<sbx_audit::WriterGuard>) = match &args.audit_dir
    {
        Some(dir) => {
            let (handle, guard) =
                sbx_audit::AuditLog::open(dir, sbx_audit::WriterConfig::default())
                    .map_err(|e| anyhow::anyhow!("--audit-dir {}: {e}", dir.display()))?;
            (Arc::new(handle), Some(guard))
        }
        None => (Arc::new(MemoryAudit::default()), None),
    };
    let proxy = Proxy::new(config, audit)?;
    let addr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen {listen:?}: expected IP:PORT"))?;
    let placeholders = injector.placeholders();
    let sandbox = proxy.sandbox("example", Arc::new(policy), Arc::new(injector));
    let listener = proxy.listen_tcp(sandbox, addr, Ingress::Forward).await?;
    for (service, placeholder) in placeholders {
        println!("placeholder {service} {placeholder}");
    }
    println!("listening on {}", listener.local_addr());
    tokio::signal::ctrl_c().await?;
    drop(listener);
    if let Some(guard) = guard {
        guard
            .close()
            .map_err(|e| anyhow::anyhow!("closing the audit log: {e}"))?;
    }
    Ok(())
}
