//! OTLP export against a real HTTP receiver on 127.0.0.1 started by the test.
#![cfg(feature = "otlp")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;

use sbx_audit::otlp::{OtlpError, OtlpExporter};
use sbx_audit::{Decision, Event, Proxy};

/// Accepts one request, answers with `status`, and returns (request line, body).
fn receiver(status: u16) -> (String, thread::JoinHandle<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        r.read_line(&mut request_line).unwrap();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let reply = if status == 200 {
            "{}"
        } else {
            "collector overloaded"
        };
        write!(
            &stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        (request_line, body)
    });
    (format!("http://{addr}"), handle)
}

#[test]
fn events_arrive_as_otlp_log_records() {
    let (endpoint, server) = receiver(200);
    let events = vec![
        Event::network("web-1", "evil.example", 443, Proxy::Forward, Decision::Deny)
            .explained(Some("deny evil.example"), Some("company"), "matched-deny")
            .user("alice"),
        Event::secret_injected("web-1", "anthropic", "api.anthropic.com"),
    ];
    OtlpExporter::new(&endpoint)
        .unwrap()
        .export(&events)
        .unwrap();
    let (request_line, body) = server.join().unwrap();
    assert_eq!(request_line.trim(), "POST /v1/logs HTTP/1.1");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rl = &v["resourceLogs"][0];
    assert_eq!(
        rl["resource"]["attributes"][0]["value"]["stringValue"],
        "sbx"
    );
    let records = rl["scopeLogs"][0]["logRecords"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    let deny = &records[0];
    assert_eq!(deny["severityText"], "WARN");
    assert_eq!(
        deny["timeUnixNano"],
        (events[0].timestamp.unix_micros() as i128 * 1000).to_string()
    );
    let attr = |r: &serde_json::Value, k: &str| {
        r["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
    };
    assert_eq!(attr(deny, "sbx.host").as_deref(), Some("evil.example"));
    assert_eq!(attr(deny, "sbx.decision").as_deref(), Some("DENY"));
    assert_eq!(attr(deny, "sbx.layer").as_deref(), Some("company"));
    assert_eq!(attr(deny, "enduser.id").as_deref(), Some("alice"));
    assert_eq!(attr(deny, "log.record.uid"), Some(events[0].id.to_string()));
    let body_event: Event =
        serde_json::from_str(deny["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(body_event, events[0]);
    assert_eq!(records[1]["severityText"], "INFO");
    assert_eq!(
        attr(&records[1], "sbx.action").as_deref(),
        Some("secret_injected")
    );
}

#[test]
fn a_collector_error_is_reported_with_its_status() {
    let (endpoint, server) = receiver(503);
    let err = OtlpExporter::new(&endpoint)
        .unwrap()
        .export(&[Event::exec("s", &["ls"])])
        .unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(err, OtlpError::Rejected { status: 503, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("collector overloaded"));
}

#[test]
fn an_unreachable_collector_is_an_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = OtlpExporter::new(&endpoint)
        .unwrap()
        .export(&[Event::exec("s", &["ls"])])
        .unwrap_err();
    assert!(matches!(err, OtlpError::Io { .. }), "{err}");
}
