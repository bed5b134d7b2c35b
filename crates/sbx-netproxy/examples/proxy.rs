//! Run the egress proxy for one sandbox.
//!
//! ```text
//! cargo run --release -p sbx-netproxy --example proxy -- --listen 127.0.0.1:8080 --policy policy.toml \
//!     --state-dir /tmp/sbx-proxy [--secret SERVICE=VALUE]... [--secret-host SERVICE=HOST]... [--secret-body SERVICE]... \
//!     [--extra-ca PEM]... [--audit-dir DIR] [--ca-secrets-dir DIR] [--upstream-proxy HOST:PORT]
//! curl -x http://127.0.0.1:8080 --cacert /tmp/sbx-proxy/ca.pem https://api.anthropic.com/v1/models
//! ```
//! Prints `listening on ADDR` when ready and `placeholder SERVICE <placeholder>` per secret; writes `STATE/ca.pem`.
//!
//! Secrets go into an in-memory sbx-secrets store (gone when the process ends) and are injected by the real sbx-secrets
//! credentials: a SERVICE from the built-in catalog (`anthropic`, `openai`, `github`, `aws` as `KEYID:SECRET[:TOKEN]`,
//! ...) applies as the catalog says, any other name becomes a custom secret bound to its `--secret-host` hosts
//! (substituted in bodies too with `--secret-body SERVICE`). With `--audit-dir`, events go to a tamper-evident
//! sbx-audit log. The CA key is kept in `STATE/ca-bundle.pem`, or with `--ca-secrets-dir DIR` in an age-encrypted
//! sbx-secrets file store in DIR.

use std::path::PathBuf;
use std::sync::Arc;

use sbx_netproxy::{
    AuditDecision, AuditEvent, AuditSink, Ingress, Proxy, ProxyConfig, SecretCaStore,
    SecretsInjector,
};
use sbx_secrets::{
    Catalog, FileStore, HostPattern, MemoryStore, Protection, Provider, SandboxCredentials,
    SecretKey, SecretStore,
};

const SANDBOX: &str = "example";

const USAGE: &str = "usage: proxy --listen ADDR --policy FILE... --state-dir DIR [--secret SERVICE=VALUE]... \
[--secret-host SERVICE=HOST]... [--secret-body SERVICE]... [--extra-ca PEM]... [--audit-dir DIR] \
[--ca-secrets-dir DIR] [--upstream-proxy HOST:PORT]";

#[derive(Default)]
struct Args {
    listen: Option<String>,
    policies: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    secrets: Vec<(String, String)>,
    secret_hosts: Vec<(String, String)>,
    secret_body: Vec<String>,
    ca_secrets_dir: Option<PathBuf>,
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
            "--secret-body" => args.secret_body.push(value()?),
            "--ca-secrets-dir" => args.ca_secrets_dir = Some(value()?.into()),
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

    let injector = secrets_injector(&args.secrets, &args.secret_hosts, &args.secret_body)?;

    let mut config = ProxyConfig::new(&state_dir);
    for path in &args.extra_cas {
        config.extra_ca_pem.push(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--extra-ca {}: {e}", path.display()))?,
        );
    }
    config.upstream_proxy = args.upstream_proxy;
    if let Some(dir) = &args.ca_secrets_dir {
        let store = FileStore::open(dir, Protection::KeyFile)
            .map_err(|e| anyhow::anyhow!("--ca-secrets-dir {}: {e}", dir.display()))?;
        config.ca_store = Some(Arc::new(SecretCaStore::new(
            Arc::new(store),
            SecretCaStore::default_key()?,
            dir.join("ca.lock"),
        )));
    }
    // With --audit-dir, events go to a tamper-evident sbx-audit log (`sbx_audit::Reader` / `verify` read it back).
    let (audit, guard): (Arc<dyn AuditSink>, Option<sbx_audit::WriterGuard>) = match &args.audit_dir
    {
        Some(dir) => {
            let (handle, guard) =
                sbx_audit::AuditLog::open(dir, sbx_audit::WriterConfig::default())
                    .map_err(|e| anyhow::anyhow!("--audit-dir {}: {e}", dir.display()))?;
            (Arc::new(handle), Some(guard))
        }
        None => (Arc::new(DeniedToStderr), None),
    };
    let proxy = Proxy::new(config, audit)?;
    let addr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen {listen:?}: expected IP:PORT"))?;
    let placeholders: Vec<(String, String)> = args
        .secrets
        .iter()
        .filter_map(|(service, _)| {
            let ph = injector.credentials().placeholder_for(service)?;
            Some((service.clone(), ph.to_owned()))
        })
        .collect();
    let env = injector.credentials().placeholders_env();
    let sandbox = proxy.sandbox(SANDBOX, Arc::new(policy), Arc::new(injector));
    let listener = proxy.listen_tcp(sandbox, addr, Ingress::Forward).await?;
    for (service, placeholder) in placeholders {
        println!("placeholder {service} {placeholder}");
    }
    for (var, placeholder) in env.iter().filter(|(v, _)| v.starts_with("AWS_")) {
        println!("env {var}={placeholder}");
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

/// Store the `--secret` values in an in-memory sbx-secrets store and make this sandbox's credentials from it: built-in
/// providers as the catalog says (plus any `--secret-host`), other names as custom secrets bound to their hosts.
fn secrets_injector(
    secrets: &[(String, String)],
    hosts: &[(String, String)],
    body: &[String],
) -> anyhow::Result<SecretsInjector> {
    let mut catalog = Catalog::builtin();
    let store = MemoryStore::new();
    for (service, value) in secrets {
        let extra: Vec<&str> = hosts
            .iter()
            .filter(|(s, _)| s == service)
            .map(|(_, h)| h.as_str())
            .collect();
        let provider = match catalog.get(service) {
            Some(known) => {
                let mut p = known.clone();
                for h in &extra {
                    p.hosts.push(
                        HostPattern::parse(h)
                            .map_err(|e| anyhow::anyhow!("--secret-host {service}={h}: {e}"))?,
                    );
                }
                p
            }
            None => {
                if extra.is_empty() {
                    anyhow::bail!(
                        "--secret {service}: not a built-in provider; bind it with --secret-host {service}=HOST"
                    );
                }
                let env = format!(
                    "{}_TOKEN",
                    service.to_ascii_uppercase().replace(['-', '.'], "_")
                );
                Provider::custom(service, &env, &extra, body.contains(service))
                    .map_err(|e| anyhow::anyhow!("--secret {service}: {e}"))?
            }
        };
        catalog.add(provider);
        store
            .set(&SecretKey::global(service)?, &value.as_str().into())
            .map_err(|e| anyhow::anyhow!("--secret {service}: {e}"))?;
    }
    let creds = SandboxCredentials::new(SANDBOX, &catalog, store.effective_for(SANDBOX)?)?;
    Ok(SecretsInjector::new(creds, &catalog))
}

/// Without `--audit-dir`: print refusals (one JSON line each) to stderr and keep nothing, so a long run does not
/// accumulate events in memory.
struct DeniedToStderr;

impl AuditSink for DeniedToStderr {
    fn record(&self, event: AuditEvent) {
        if event.decision == Some(AuditDecision::Deny)
            && let Ok(line) = serde_json::to_string(&event)
        {
            eprintln!("{line}");
        }
    }
}
