//! OpenTelemetry export: events as OTLP log records over OTLP/HTTP with the JSON encoding (`POST /v1/logs`).
//!
//! Point it at a collector (the OpenTelemetry Collector, or the Datadog / New Relic agents' OTLP receivers, which
//! listen on `http://127.0.0.1:4318` by default) and they forward to the vendor over TLS. The exporter itself
//! speaks plain HTTP/1.1 and so only talks to a local or trusted-network collector; it adds no dependencies.
//!
//! Each event becomes one log record: `timeUnixNano` from the timestamp, severity `WARN` for `DENY` and `INFO`
//! otherwise, the event's JSON as the string body, and attributes `sbx.sandbox`, `sbx.category`, `sbx.decision`,
//! `sbx.action`, `sbx.host`, `sbx.rule`, `sbx.layer`, `sbx.reason`, `sbx.agent`, `enduser.id`, `log.record.uid`.
//! The resource carries `service.name = sbx` and `host.name`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{Value, json};

use crate::event::{Decision, Event};

/// Exporting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not a usable `http://host:port` URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {problem}; expected e.g. http://127.0.0.1:4318")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Connecting, sending or receiving failed.
    #[error("OTLP export to {endpoint} failed: {source}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The collector answered with an error status.
    #[error("OTLP collector at {endpoint} answered {status}: {body}")]
    Rejected {
        /// The endpoint.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
}

/// Sends events to an OTLP/HTTP collector.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    endpoint: String,
    authority: String,
    path: String,
    timeout: Duration,
}

impl OtlpExporter {
    /// An exporter for `endpoint` (`http://host:port`, optionally with a base path); logs go to `<endpoint>/v1/logs`.
    pub fn new(endpoint: &str) -> Result<Self, OtlpError> {
        let err = |problem| OtlpError::Endpoint {
            endpoint: endpoint.to_owned(),
            problem,
        };
        let rest = match endpoint.strip_prefix("http://") {
            Some(rest) => rest,
            None if endpoint.starts_with("https://") => {
                return Err(err(
                    "https is not supported; send to a local collector over http",
                ));
            }
            None => return Err(err("must start with http://")),
        };
        let (authority, base) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if authority.is_empty() || authority.contains(['@', ' ']) {
            return Err(err("missing or invalid host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:4318")
        };
        let base = base.trim_end_matches('/');
        let path = if base.is_empty() {
            "/v1/logs".to_owned()
        } else {
            format!("/{base}/v1/logs")
        };
        Ok(Self {
            endpoint: endpoint.to_owned(),
            authority,
            path,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the connect/read/write timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `events` in one request.
    pub fn export(&self, events: &[Event]) -> Result<(), OtlpError> {
        if events.is_empty() {
            return Ok(());
        }
        let body =
            serde_json::to_vec(&to_otlp_json(events)).map_err(|e| self.io(io::Error::other(e)))?;
        let (status, reply) = self.post(&body).map_err(|e| self.io(e))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(OtlpError::Rejected {
                endpoint: self.endpoint.clone(),
                status,
                body: String::from_utf8_lossy(&reply).chars().take(200).collect(),
            })
        }
    }

    fn io(&self, source: io::Error) -> OtlpError {
        OtlpError::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn post(&self, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let addr =
            self.authority.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "host name did not resolve")
            })?;
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        read_response(BufReader::new(stream))
    }
}

/// Reads an HTTP/1.1 response: status code and (up to 64 KiB of) body.
fn read_response<R: BufRead>(mut r: R) -> io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad HTTP response: {what}"),
        )
    };
    let mut line = String::new();
    r.by_ref().take(8192).read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut length: Option<u64> = None;
    loop {
        line.clear();
        if r.by_ref().take(8192).read_line(&mut line)? == 0 {
            break;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok();
        }
    }
    let mut body = Vec::new();
    r.take(length.unwrap_or(64 * 1024).min(64 * 1024))
        .read_to_end(&mut body)?;
    Ok((status, body))
}

/// The OTLP/JSON `ExportLogsServiceRequest` for `events`.
pub fn to_otlp_json(events: &[Event]) -> Value {
    let host = events.first().map_or_else(
        || crate::local_hostname().to_owned(),
        |e| e.hostname.clone(),
    );
    let records: Vec<Value> = events.iter().map(record).collect();
    json!({
        "resourceLogs": [{
            "resource": { "attributes": [attr("service.name", "sbx"), attr("host.name", &host)] },
            "scopeLogs": [{
                "scope": { "name": "sbx-audit", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": records
            }]
        }]
    })
}

fn attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn record(e: &Event) -> Value {
    let nanos = i128::from(e.timestamp.unix_micros()) * 1000;
    let (severity, text) = if e.decision == Some(Decision::Deny) {
        (13, "WARN")
    } else {
        (9, "INFO")
    };
    let mut attrs = vec![
        attr("log.record.uid", &e.id.to_string()),
        attr("sbx.category", e.category.as_str()),
        attr("sbx.action", e.action.kind()),
    ];
    let optional = [
        ("sbx.sandbox", e.sandbox.as_deref()),
        ("sbx.decision", e.decision.map(Decision::as_str)),
        ("sbx.host", e.host()),
        ("sbx.rule", e.rule.as_deref()),
        ("sbx.layer", e.layer.as_deref()),
        ("sbx.reason", e.reason.as_deref()),
        ("sbx.agent", e.agent.as_deref()),
        ("enduser.id", e.user.as_deref()),
    ];
    attrs.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| attr(k, v))),
    );
    json!({
        "timeUnixNano": nanos.to_string(),
        "observedTimeUnixNano": nanos.to_string(),
        "severityNumber": severity,
        "severityText": text,
        "body": { "stringValue": serde_json::to_string(e).unwrap_or_default() },
        "attributes": attrs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            OtlpExporter::new("http://127.0.0.1:4318").unwrap().path,
            "/v1/logs"
        );
        let e = OtlpExporter::new("http://collector/otel/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("collector:4318", "/otel/v1/logs")
        );
        for bad in ["https://x", "x:4318", "http://", "http://u@h"] {
            assert!(
                OtlpExporter::new(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("expected e.g."),
                "{bad}"
            );
        }
    }
}
