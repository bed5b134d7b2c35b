//! A sandbox's way out: the sbx-netproxy egress proxy the supervisor runs for it.
//!
//! The supervisor starts one [`Egress`] before the sandbox and stops it after. It listens on a Unix socket whose
//! path the backend chooses (namespaces: `<sandbox dir>/proxy.sock`, bind-mounted into the jail as its only way
//! out; a microVM backend passes its vsock `<uds>_<port>` path), and decides every request with:
//! - the compiled policy of every layer ([`crate::policy_files::load_policy`], the code `sbx policy` uses), reloaded
//!   when a layer file changes, so `sbx policy allow` takes effect in running sandboxes;
//! - the installation's CA (`$STATE/proxy/ca-bundle.pem`, created once); the sandbox gets its certificate as
//!   `<sandbox dir>/ca.pem` for its trust stores;
//! - the sandbox's credentials from the secret store (global + sandbox scope), whose placeholders go into the
//!   environment of every command run inside ([`Egress::placeholders_env`]); re-read when `sbx secret` changes
//!   the store ([`Egress::reload_secrets`], see [`crate::credentials`]), so a secret added to a running sandbox
//!   works without a restart;
//! - the audit trail in `$STATE/audit`.
//!
//! Extra upstream CAs (a corporate inspection CA, a test server's CA) and an upstream proxy are read from
//! `$CONFIG/proxy.toml`:
//!
//! ```toml
//! extra_ca = ["/etc/ssl/corp-inspection-ca.pem"]
//! upstream_proxy = "proxy.corp.example:3128"
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use sbx_audit::{AuditHandle, WriterConfig, WriterGuard};
use sbx_netproxy::{EgressPolicy, Ingress, NetworkRequest, Proxy, ProxyConfig, Verdict};
use sbx_policy::Policy;
use serde::Deserialize;

use crate::credentials::{Changes, LiveCredentials};
use crate::fsutil::{FileLock, atomic_write};
use crate::home::Home;
use crate::policy_files;

/// How often a running proxy looks at the policy files for changes.
const RELOAD_CHECK: Duration = Duration::from_millis(200);

/// `$CONFIG/proxy.toml`: how the proxy reaches the outside.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySettings {
    /// PEM files of extra CAs trusted for upstream TLS.
    #[serde(default)]
    pub(crate) extra_ca: Vec<PathBuf>,
    /// An upstream HTTP proxy (`host:port`) to chain through.
    #[serde(default)]
    pub(crate) upstream_proxy: Option<String>,
}

impl ProxySettings {
    /// Reads `$CONFIG/proxy.toml` (defaults when absent); errors name the file and the field.
    pub(crate) fn load(home: &Home) -> Result<ProxySettings> {
        let path = settings_file(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid proxy configuration (fields: extra_ca = [\"/path/ca.pem\"], \
                 upstream_proxy = \"host:port\"); fix or remove it",
                path.display()
            )
        })
    }
}

/// `$CONFIG/proxy.toml`.
pub(crate) fn settings_file(home: &Home) -> PathBuf {
    home.config.join("proxy.toml")
}

/// Where the installation's proxy keeps its CA.
pub(crate) fn proxy_state_dir(home: &Home) -> PathBuf {
    home.state.join("proxy")
}

/// The installation CA's certificate (what `sbx doctor` reports).
pub(crate) fn ca_cert_file(home: &Home) -> PathBuf {
    proxy_state_dir(home).join("ca.pem")
}

/// What the supervisor needs to start a sandbox's proxy.
#[derive(Debug, Clone)]
pub(crate) struct EgressSpec<'a> {
    pub(crate) home: &'a Home,
    pub(crate) sandbox: &'a str,
    /// The Unix socket the proxy listens on (chosen by the backend).
    pub(crate) socket: PathBuf,
    /// Where the sandbox's copy of the CA certificate is written.
    pub(crate) ca_file: PathBuf,
}

/// A running egress proxy for one sandbox. Stops (and removes its socket) on drop.
pub(crate) struct Egress {
    runtime: Option<tokio::runtime::Runtime>,
    listener: Option<sbx_netproxy::Listener>,
    policy: Arc<LivePolicy>,
    credentials: Arc<LiveCredentials>,
    home: Home,
    audit: AuditHandle,
    guard: Option<WriterGuard>,
    socket: PathBuf,
    ca_file: PathBuf,
    last_check: Mutex<Instant>,
    /// The secret store's and provider catalog's files as of the last credential reload.
    secrets_seen: Mutex<Fingerprint>,
}

impl Egress {
    /// Loads policy, CA, credentials and audit, and starts listening on `spec.socket`.
    pub(crate) fn start(spec: &EgressSpec<'_>) -> Result<Egress> {
        let policy = Arc::new(LivePolicy::load(spec.home, spec.sandbox)?);
        let settings = ProxySettings::load(spec.home)?;
        let mut config = ProxyConfig::new(proxy_state_dir(spec.home));
        for path in &settings.extra_ca {
            let pem = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the extra CA {} named in {}",
                    path.display(),
                    settings_file(spec.home).display()
                )
            })?;
            config.extra_ca_pem.push(pem);
        }
        config.upstream_proxy = settings.upstream_proxy;
        let audit_dir = spec.home.audit_dir();
        let (audit, guard) = sbx_audit::AuditLog::open(&audit_dir, WriterConfig::default())
            .with_context(|| format!("cannot open the audit log in {}", audit_dir.display()))?;
        let proxy = {
            // Two sandboxes starting at once on a fresh installation must agree on one CA.
            let _lock = FileLock::acquire(&proxy_state_dir(spec.home).join("ca"))?;
            Proxy::new(config, Arc::new(audit.clone())).context("cannot set up the egress proxy")?
        };
        atomic_write(&spec.ca_file, proxy.ca().cert_pem().as_bytes())?;
        let credentials = Arc::new(LiveCredentials::empty(spec.sandbox));
        // Taken before reading, so a change made while reading is noticed by the next look.
        let secrets_seen = secrets_fingerprint(spec.home);
        // A store that cannot be opened, or a secret of a service the catalog no longer knows, is reported in the
        // supervisor log and left out: the sandbox still starts, without it.
        if let Err(e) = credentials.reload(spec.home) {
            eprintln!(
                "sbx supervisor: sandbox {} starts without credentials: {e:#} (check with `sbx secret ls`)",
                spec.sandbox
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sbx-egress")
            .enable_all()
            .build()
            .context("cannot start the proxy's runtime")?;
        let sandbox = proxy.sandbox(spec.sandbox, policy.clone(), credentials.clone());
        let listener = runtime
            .block_on(proxy.listen_unix(sandbox, &spec.socket, Ingress::Forward))
            .with_context(|| format!("cannot listen on {}", spec.socket.display()))?;
        Ok(Egress {
            runtime: Some(runtime),
            listener: Some(listener),
            policy,
            credentials,
            home: spec.home.clone(),
            audit,
            guard: Some(guard),
            socket: spec.socket.clone(),
            ca_file: spec.ca_file.clone(),
            last_check: Mutex::new(Instant::now()),
            secrets_seen: Mutex::new(secrets_seen),
        })
    }

    /// The socket the sandbox connects to.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The CA certificate (PEM) the sandbox must trust.
    pub(crate) fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Env var → placeholder for every credential of this sandbox (never a real value), as of the last reload.
    pub(crate) fn placeholders_env(&self) -> Vec<(String, String)> {
        self.credentials.placeholders_env()
    }

    /// Re-reads the secret store and the provider catalog: a secret added while the sandbox runs is injected from
    /// the next request on, and the next command started inside gets its placeholder.
    pub(crate) fn reload_secrets(&self) -> Result<Changes> {
        let changes = self.credentials.reload(&self.home)?;
        if !changes.is_empty() {
            eprintln!("sbx supervisor: secrets reloaded: {changes}");
        }
        Ok(changes)
    }

    /// The audit trail the proxy writes to (the supervisor records lifecycle events with it too).
    pub(crate) fn audit(&self) -> &AuditHandle {
        &self.audit
    }

    /// Reloads the policy now. On a bad file the running policy stays and the error says which file.
    pub(crate) fn reload(&self) -> Result<bool> {
        self.policy.reload()
    }

    /// Reloads the policy if a layer file changed since the last look (checked at most every 200 ms).
    pub(crate) fn reload_if_changed(&self) {
        let Ok(mut last) = self.last_check.lock() else {
            return;
        };
        if last.elapsed() < RELOAD_CHECK {
            return;
        }
        *last = Instant::now();
        if let Err(e) = self.policy.reload() {
            eprintln!("sbx supervisor: keeping the previous policy: {e:#}");
        }
        // `sbx secret` also tells the supervisor directly; this catches a change it could not deliver (the
        // supervisor was still starting). A keychain-backed store has no files to watch: only that message works.
        let now = secrets_fingerprint(&self.home);
        let changed = self
            .secrets_seen
            .lock()
            .is_ok_and(|mut seen| std::mem::replace(&mut *seen, now.clone()) != now);
        if changed && let Err(e) = self.reload_secrets() {
            eprintln!("sbx supervisor: keeping the previous credentials: {e:#}");
        }
    }

    /// Stops accepting, ends open connections, flushes the audit trail and removes the socket.
    pub(crate) fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.listener.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        if let Some(guard) = self.guard.take()
            && let Err(e) = guard.close()
        {
            eprintln!("sbx supervisor: closing the audit log: {e}");
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What identifies a version of a layer file: gone, or its inode, size and modification time.
type Fingerprint = Vec<(PathBuf, Option<(u64, u64, SystemTime)>)>;

fn fingerprint(home: &Home, sandbox: &str) -> Fingerprint {
    files_fingerprint(policy_files::candidate_files(home, Some(sandbox)))
}

/// The provider catalog and the files of the secret store (not its lock files).
fn secrets_fingerprint(home: &Home) -> Fingerprint {
    let mut files = vec![home.providers_file()];
    if let Ok(entries) = std::fs::read_dir(home.secrets_dir()) {
        let mut store: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_none_or(|e| e != "lock"))
            .collect();
        store.sort();
        files.extend(store);
    }
    files_fingerprint(files)
}

fn files_fingerprint(files: Vec<PathBuf>) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok().map(|m| {
                (
                    m.ino(),
                    m.len(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                )
            });
            (path, meta)
        })
        .collect()
}

/// The sandbox's compiled policy, replaced when its layer files change.
struct LivePolicy {
    home: Home,
    sandbox: String,
    current: RwLock<Arc<Policy>>,
    seen: Mutex<Fingerprint>,
}

impl LivePolicy {
    fn load(home: &Home, sandbox: &str) -> Result<LivePolicy> {
        let seen = fingerprint(home, sandbox);
        let policy = policy_files::load_policy(home, Some(sandbox))?;
        Ok(LivePolicy {
            home: home.clone(),
            sandbox: sandbox.to_owned(),
            current: RwLock::new(Arc::new(policy)),
            seen: Mutex::new(seen),
        })
    }

    /// Recompiles when a layer file changed; returns whether it did.
    fn reload(&self) -> Result<bool> {
        let now = fingerprint(&self.home, &self.sandbox);
        let Ok(mut seen) = self.seen.lock() else {
            bail!("policy state poisoned");
        };
        if *seen == now {
            return Ok(false);
        }
        // Remember the new version even if it does not compile, so a broken file is reported once, not every tick.
        *seen = now;
        let policy = policy_files::load_policy(&self.home, Some(&self.sandbox))?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(policy);
        }
        eprintln!("sbx supervisor: policy reloaded");
        Ok(true)
    }

    fn get(&self) -> Option<Arc<Policy>> {
        self.current.read().ok().map(|p| p.clone())
    }
}

fn poisoned() -> Verdict {
    Verdict::proxy_deny("policy-unavailable")
}

impl EgressPolicy for LivePolicy {
    fn check_network(&self, request: &NetworkRequest<'_>) -> Verdict {
        self.get()
            .map_or_else(poisoned, |p| EgressPolicy::check_network(&*p, request))
    }

    fn allows_address(&self, ip: IpAddr, port: u16, host: &str) -> Verdict {
        self.get().map_or_else(poisoned, |p| {
            EgressPolicy::allows_address(&*p, ip, port, host)
        })
    }

    fn check_model(&self, api_host: &str, model: &str) -> Verdict {
        self.get().map_or_else(poisoned, |p| {
            EgressPolicy::check_model(&*p, api_host, model)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(dir: &Path) -> Home {
        Home {
            config: dir.join("config"),
            state: dir.join("state"),
        }
    }

    fn req(host: &str) -> NetworkRequest<'_> {
        NetworkRequest {
            host,
            port: 443,
            protocol: sbx_netproxy::Protocol::Https,
            method: Some("GET"),
            path: Some("/"),
        }
    }

    #[test]
    fn live_policy_follows_edits_and_keeps_the_old_policy_on_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path());
        let live = LivePolicy::load(&h, "box").unwrap();
        assert!(!live.check_network(&req("api.example.com")).allowed);
        assert!(!live.reload().unwrap(), "nothing changed yet");

        let file = policy_files::sandbox_file(&h, "box");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            "name = \"sandbox box\"\n[[network]]\naction = \"allow\"\nhosts = [\"api.example.com\"]\n",
        )
        .unwrap();
        assert!(live.reload().unwrap());
        let v = live.check_network(&req("api.example.com"));
        assert!(v.allowed, "{v:?}");

        std::fs::write(&file, "[[network]\nbroken").unwrap();
        let err = format!("{:#}", live.reload().unwrap_err());
        assert!(
            err.contains("policy.toml"),
            "the error names the file: {err}"
        );
        assert!(live.check_network(&req("api.example.com")).allowed);
        assert!(!live.reload().unwrap(), "a broken version is reported once");
    }

    #[test]
    fn the_secrets_fingerprint_sees_store_and_catalog_changes_but_not_locks() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path());
        let empty = secrets_fingerprint(&h);
        std::fs::create_dir_all(h.secrets_dir()).unwrap();
        std::fs::write(h.secrets_dir().join("secrets.lock"), "").unwrap();
        assert_eq!(secrets_fingerprint(&h), empty, "lock files are not changes");
        std::fs::write(h.secrets_dir().join("secrets.age"), "v1").unwrap();
        let stored = secrets_fingerprint(&h);
        assert_ne!(stored, empty);
        std::fs::write(h.secrets_dir().join("secrets.age"), "version 2").unwrap();
        assert_ne!(secrets_fingerprint(&h), stored);
        let before = secrets_fingerprint(&h);
        std::fs::create_dir_all(&h.config).unwrap();
        std::fs::write(h.providers_file(), "").unwrap();
        assert_ne!(
            secrets_fingerprint(&h),
            before,
            "the provider catalog counts"
        );
    }

    #[test]
    fn proxy_settings_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path());
        assert!(ProxySettings::load(&h).unwrap().extra_ca.is_empty());
        std::fs::create_dir_all(&h.config).unwrap();
        std::fs::write(settings_file(&h), "extra_cas = [\"x\"]\n").unwrap();
        let err = format!("{:#}", ProxySettings::load(&h).unwrap_err());
        assert!(
            err.contains("proxy.toml") && err.contains("extra_cas"),
            "{err}"
        );
    }
}
