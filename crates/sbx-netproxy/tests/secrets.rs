//! The real credential path end to end: an sbx-secrets store (age-encrypted file backend), sbx-secrets' per-sandbox
//! credentials behind `SecretsInjector`, the sbx-policy engine and an sbx-audit log, with an HTTPS upstream that checks
//! what actually arrived: real credentials in headers and bodies for bound hosts only, AWS requests re-signed with the
//! real key (verified independently from the bytes the upstream received), and never a secret in the audit log.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sbx_netproxy::{Ingress, Listener, Proxy, ProxyConfig, SecretsInjector};
use sbx_secrets::sigv4::{self, CanonicalRequest, Scope, SigningKey};
use sbx_secrets::{
    Catalog, FileStore, HostPattern, Protection, Provider, SandboxCredentials, SecretKey,
    SecretStore, SecretValue,
};

const SANDBOX: &str = "sb-e2e";
const ANTHROPIC_REAL: &str = "sk-ant-real-e2e-0123456789";
const INTERNAL_REAL: &str = "internal-real-e2e-abcdef";
const AWS_KEY_ID: &str = "AKIAREALKEYID0000001";
const AWS_SECRET: &str = "real/aws/secret+access+key0000000000001";

struct Rig {
    _up_guard: (),
    proxy: Proxy,
    listener: Listener,
    injector_env: Vec<(String, String)>,
    placeholders: Vec<(String, String)>,
    guard: Option<sbx_audit::WriterGuard>,
    dir: tempfile::TempDir,
}

impl Rig {
    fn placeholder(&self, service: &str) -> String {
        self.placeholders
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, p)| p.clone())
            .unwrap()
    }

    fn env(&self, var: &str) -> String {
        self.injector_env
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, p)| p.clone())
            .unwrap()
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.listener.local_addr())).unwrap())
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.proxy.ca().cert_pem().as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Close the audit log and return every event plus the raw bytes of the log files.
    fn close_audit(mut self) -> (Vec<sbx_audit::Event>, String) {
        let audit_dir = self.dir.path().join("audit");
        drop(self.listener);
        drop(self.proxy);
        self.guard.take().unwrap().close().unwrap();
        let reader = sbx_audit::Reader::open(&audit_dir).unwrap();
        let (events, issues) = reader.collect(&sbx_audit::Filter::all().sandbox(SANDBOX));
        assert!(issues.is_empty(), "{issues:?}");
        let raw: String = std::fs::read_dir(&audit_dir)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        (events, raw)
    }
}

/// Bind `provider` to 127.0.0.1 too (the local upstream stands in for the real API host).
fn bound_locally(catalog: &Catalog, name: &str) -> Provider {
    let mut p = catalog.get(name).unwrap().clone();
    p.hosts.push(HostPattern::parse("127.0.0.1").unwrap());
    p
}

async fn rig(up: &Upstream, also_allow: &[String], store_dir: &Path) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    // The real age-encrypted file store, written and read back through the SecretStore trait.
    let store = FileStore::open(store_dir, Protection::KeyFile).unwrap();
    store
        .set(
            &SecretKey::global("anthropic").unwrap(),
            &ANTHROPIC_REAL.into(),
        )
        .unwrap();
    store
        .set(
            &SecretKey::global("internal").unwrap(),
            &INTERNAL_REAL.into(),
        )
        .unwrap();
    store
        .set(
            &SecretKey::global("aws").unwrap(),
            &SecretValue::from(format!("{AWS_KEY_ID}:{AWS_SECRET}")),
        )
        .unwrap();
    let mut catalog = Catalog::builtin();
    catalog.add(bound_locally(&catalog, "anthropic"));
    catalog.add(bound_locally(&catalog, "aws"));
    catalog.add(Provider::custom("internal", "INTERNAL_TOKEN", &["127.0.0.1"], true).unwrap());
    let creds =
        SandboxCredentials::new(SANDBOX, &catalog, store.effective_for(SANDBOX).unwrap()).unwrap();
    let placeholders = ["anthropic", "internal"]
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                creds.placeholder_for(s).unwrap().to_owned(),
            )
        })
        .collect();
    let injector_env = creds.placeholders_env();
    let injector = SecretsInjector::new(creds, &catalog);

    let (handle, guard) =
        sbx_audit::AuditLog::open(dir.path().join("audit"), sbx_audit::WriterConfig::default())
            .unwrap();
    let mut config = ProxyConfig::new(dir.path().join("state"));
    config.extra_ca_pem = vec![up.ca_pem.clone()];
    config.system_roots = false;
    let proxy = Proxy::new(config, Arc::new(handle)).unwrap();
    let mut allowed = vec![format!("127.0.0.1:{}", up.addr.port())];
    allowed.extend_from_slice(also_allow);
    let policy_text = allow_policy(&allowed);
    let policy = sbx_policy::Policy::new(vec![(
        sbx_policy::LayerLevel::User,
        sbx_policy::PolicyLayer::parse("user.toml", &policy_text).unwrap(),
    )]);
    let sandbox = proxy.sandbox(SANDBOX, Arc::new(policy), Arc::new(injector));
    let listener = proxy
        .listen_tcp(sandbox, "127.0.0.1:0".parse().unwrap(), Ingress::Forward)
        .await
        .unwrap();
    Rig {
        _up_guard: (),
        proxy,
        listener,
        injector_env,
        placeholders,
        guard: Some(guard),
        dir,
    }
}

fn kinds(events: &[sbx_audit::Event]) -> Vec<String> {
    events.iter().map(|e| e.action.kind().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_store_credentials_reach_bound_hosts_in_headers_and_bodies_and_never_the_audit_log() {
    let up = upstream(true).await;
    let store_dir = tempfile::tempdir().unwrap();
    let rig = rig(&up, &[], store_dir.path()).await;
    let client = rig.client();
    let anthropic = rig.placeholder("anthropic");
    let internal = rig.placeholder("internal");

    let body = format!("{{\"token\":\"{internal}\",\"again\":\"{internal}\"}}");
    let resp = client
        .post(format!("https://127.0.0.1:{}/upload", up.addr.port()))
        .header("x-api-key", &anthropic)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let seen = up.seen.last();
    assert_eq!(seen.headers["x-api-key"], ANTHROPIC_REAL);
    let expected = format!("{{\"token\":\"{INTERNAL_REAL}\",\"again\":\"{INTERNAL_REAL}\"}}");
    assert_eq!(String::from_utf8_lossy(&seen.body), expected);
    assert_eq!(seen.headers["content-length"], expected.len().to_string());

    let (events, raw) = rig.close_audit();
    let k = kinds(&events);
    let injected: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.action {
            sbx_audit::Action::SecretInjected { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect();
    assert!(
        injected.contains(&"anthropic".to_owned()) && injected.contains(&"internal".to_owned()),
        "{k:?}"
    );
    for secret in [ANTHROPIC_REAL, INTERNAL_REAL, AWS_SECRET] {
        assert!(!raw.contains(secret), "a secret reached the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_placeholder_headed_elsewhere_is_left_alone_and_audited_as_blocked() {
    // "Elsewhere" is a second upstream reached as localhost: allowed by policy, not a host the secret is bound to.
    let up = upstream(true).await;
    let other = upstream(false).await;
    let store_dir = tempfile::tempdir().unwrap();
    let elsewhere = format!("localhost:{}", other.addr.port());
    let rig = rig(&up, std::slice::from_ref(&elsewhere), store_dir.path()).await;
    let internal = rig.placeholder("internal");
    let client = rig.client();
    // Streamed in pieces that split the placeholder: it is never buffered, still seen, and passed on unchanged.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"leak=".to_vec()),
        Ok(internal.as_bytes()[..7].to_vec()),
        Ok(internal.as_bytes()[7..].to_vec()),
    ];
    let resp = client
        .post(format!("http://{elsewhere}/exfil"))
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&other.seen.last().body),
        format!("leak={internal}")
    );
    // The same placeholder to the bound host is substituted.
    let resp = client
        .post(format!("https://127.0.0.1:{}/bound", up.addr.port()))
        .body(format!("ok {internal}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&up.seen.last().body),
        format!("ok {INTERNAL_REAL}")
    );
    let (events, raw) = rig.close_audit();
    let blocked: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.action {
            sbx_audit::Action::PlaceholderBlocked { service, host } => {
                Some((service.clone(), host.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        blocked,
        [("internal".to_owned(), "localhost".to_owned())],
        "{:?}",
        kinds(&events)
    );
    assert!(!raw.contains(INTERNAL_REAL));
}

/// Sign like an AWS SDK would in the sandbox, with the placeholder credentials from its environment.
fn sandbox_sign(
    env_key_id: &str,
    env_secret: &str,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    send_content_hash: bool,
) -> Vec<(String, String)> {
    let amz_date = "20260101T120000Z";
    let scope = Scope {
        date: "20260101".into(),
        region: "us-east-1".into(),
        service: "sqs".into(),
    };
    let payload = sigv4::sha256_hex(body);
    let mut headers = vec![
        ("host".to_owned(), host.to_owned()),
        ("x-amz-date".to_owned(), amz_date.to_owned()),
    ];
    if send_content_hash {
        headers.push(("x-amz-content-sha256".to_owned(), payload.clone()));
    }
    headers.sort();
    let creq = CanonicalRequest {
        method,
        uri: sigv4::canonical_uri(path, true),
        query: String::new(),
        headers: headers.clone(),
        payload_hash: &payload,
    };
    let sig = SigningKey::derive(&SecretValue::from(env_secret), &scope)
        .sign(&creq.string_to_sign(amz_date, &scope));
    let mut out: Vec<(String, String)> = headers.into_iter().filter(|(n, _)| n != "host").collect();
    out.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={env_key_id}/{}, SignedHeaders={}, Signature={sig}",
            scope.as_string(),
            creq.signed_headers()
        ),
    ));
    out
}

/// Check the signature on what the upstream received, with the real secret key, from scratch.
fn verify_with_real_key(seen: &SeenRequest) -> Result<(), String> {
    let auth = &seen.headers["authorization"];
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not sigv4")?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let credential = field("Credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts[0] != AWS_KEY_ID {
        return Err(format!("signed with key id {}", parts[0]));
    }
    let scope = Scope {
        date: parts[1].into(),
        region: parts[2].into(),
        service: parts[3].into(),
    };
    let signed = field("SignedHeaders")?;
    let headers: Vec<(String, String)> = signed
        .split(';')
        .map(|n| {
            (
                n.to_owned(),
                seen.headers.get(n).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let payload = seen
        .headers
        .get("x-amz-content-sha256")
        .cloned()
        .unwrap_or_else(|| sigv4::sha256_hex(&seen.body));
    let creq = CanonicalRequest {
        method: &seen.method,
        uri: sigv4::canonical_uri(&seen.path, true),
        query: sigv4::canonical_query(&seen.query, None),
        headers,
        payload_hash: &payload,
    };
    let expected = SigningKey::derive(&SecretValue::from(AWS_SECRET), &scope)
        .sign(&creq.string_to_sign(&seen.headers["x-amz-date"], &scope));
    if field("Signature")? == expected {
        Ok(())
    } else {
        Err(format!(
            "signature does not verify with the real key; canonical request as received:\n{}\nheaders: {:?}",
            creq.text(),
            seen.headers
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_requests_are_resigned_with_the_real_key() {
    let up = upstream(true).await;
    let store_dir = tempfile::tempdir().unwrap();
    let rig = rig(&up, &[], store_dir.path()).await;
    let client = rig.client();
    let key_id = rig.env("AWS_ACCESS_KEY_ID");
    let secret = rig.env("AWS_SECRET_ACCESS_KEY");
    assert_ne!(key_id, AWS_KEY_ID);
    let host = format!("127.0.0.1:{}", up.addr.port());
    let body = b"Action=SendMessage&MessageBody=hello";
    // Without x-amz-content-sha256 (the proxy hashes the buffered body) and with it (S3 style).
    for with_hash in [false, true] {
        let mut req = client
            .post(format!("https://{host}/queue/one"))
            .body(body.to_vec());
        for (n, v) in sandbox_sign(
            &key_id,
            &secret,
            "POST",
            &host,
            "/queue/one",
            body,
            with_hash,
        ) {
            req = req.header(n, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "with_hash={with_hash}");
        resp.bytes().await.unwrap();
        let seen = up.seen.last();
        assert!(!seen.headers["authorization"].contains(&key_id));
        verify_with_real_key(&seen).unwrap_or_else(|e| panic!("with_hash={with_hash}: {e}"));
    }

    // Adversarial: a request signed with someone else's key id is refused, not forwarded or re-signed.
    let before = up.seen.requests.lock().unwrap().len();
    let mut req = client
        .post(format!("https://{host}/queue/one"))
        .body(body.to_vec());
    for (n, v) in sandbox_sign(
        "AKIAATTACKER00000000",
        &secret,
        "POST",
        &host,
        "/queue/one",
        body,
        true,
    ) {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    assert!(text.contains("sigv4-refused"), "{}", short(&text));
    assert_eq!(up.seen.requests.lock().unwrap().len(), before);

    let (events, raw) = rig.close_audit();
    assert!(
        events.iter().any(|e| matches!(&e.action,
            sbx_audit::Action::SecretInjected { service, .. } if service == "aws")),
        "{:?}",
        kinds(&events)
    );
    assert!(!raw.contains(AWS_SECRET));
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Iter(std::sync::Mutex<std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.lock().unwrap().next())
        }
    }
    Iter(std::sync::Mutex::new(items.into_iter()))
}
