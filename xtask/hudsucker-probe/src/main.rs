//! The latency anchor of issue 5 ("a hudsucker probe measured +37 µs"): a hudsucker 0.25 MITM proxy with no-op
//! handlers — no policy, no audit, no injection — started by the sbx-netproxy load driver exactly like the `proxy`
//! example (`--listen`, `--state-dir`, `--extra-ca`; other flags are ignored), so both are measured in one run.
//!
//! Two settings differ from hudsucker's defaults, both in its favour or needed for the bench: upstream sockets get
//! TCP_NODELAY (as sbx-netproxy's do), and leaf certificates for IP hosts carry an IP SAN (hudsucker's
//! `RcgenAuthority` puts IPs in a DNS-name SAN, which rustls clients reject).

use std::collections::HashMap;
use std::error::Error;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hudsucker::Proxy;
use hudsucker::certificate_authority::CertificateAuthority;
use hudsucker::rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use hudsucker::rustls::ServerConfig;
use hudsucker::rustls::crypto::aws_lc_rs;
use hudsucker::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

type BoxError = Box<dyn Error + Send + Sync>;

/// Signs one leaf per host with the CA's own key (as `RcgenAuthority` does) and caches its server config.
struct ProbeCa {
    issuer: Issuer<'static, KeyPair>,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl ProbeCa {
    fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into()?),
        });
        let cert = params.signed_by(self.issuer.key(), &self.issuer)?;
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(self.issuer.key().serialize_der()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![cert.into()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl CertificateAuthority for ProbeCa {
    async fn gen_server_config(&self, authority: &http::uri::Authority) -> Arc<ServerConfig> {
        let host = authority.host();
        if let Some(config) = self
            .configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            return config.clone();
        }
        // The trait cannot fail; a host rcgen refuses ends the probe with the reason.
        let config = self
            .server_config(host)
            .unwrap_or_else(|e| panic!("hudsucker-probe: no certificate for {host}: {e}"));
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_owned(), config.clone());
        config
    }
}

fn flag(args: &[String], name: &str) -> Result<String, BoxError> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| format!("{name} VALUE is required").into())
}

/// A fresh CA, written as `STATE_DIR/ca.pem` where the driver looks for sbx-netproxy's.
fn new_ca(state_dir: &PathBuf) -> Result<ProbeCa, BoxError> {
    std::fs::create_dir_all(state_dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    std::fs::write(state_dir.join("ca.pem"), cert.pem())?;
    Ok(ProbeCa {
        issuer: Issuer::from_ca_cert_pem(&cert.pem(), key)?,
        configs: Mutex::new(HashMap::new()),
    })
}

/// HTTPS to the upstream, trusting only `--extra-ca` (the bench's local server), TCP_NODELAY on.
fn upstream_connector(
    extra_ca: &str,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    BoxError,
> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(extra_ca)?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let ca = new_ca(&PathBuf::from(flag(&args, "--state-dir")?))?;
    let connector = upstream_connector(&flag(&args, "--extra-ca")?)?;
    let listener = tokio::net::TcpListener::bind(flag(&args, "--listen")?).await?;
    println!("listening on {}", listener.local_addr()?);
    Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(connector)
        .build()?
        .start()
        .await?;
    Ok(())
}
