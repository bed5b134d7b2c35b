//! Credentials in request bodies and AWS re-signing: what happens between header injection and forwarding.
//!
//! A body is buffered only when the injector asks for it (a secret bound to this host wants body substitution, or an
//! AWS request signed by the sandbox needs its payload hash), and then only up to `Limits::max_buffered_body`.
//! Bodies headed to hosts the body secrets are not bound to stream through untouched while a watch looks for their
//! placeholders, across chunk boundaries, and audits each one seen as `placeholder_blocked`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{BoxError, ProxyBody, full};
use crate::handler::{Conn, audit_injection, collect_limited};
use crate::seam::{
    AuditAction, AuditDecision, AuditEvent, AuditSink, BodyPlan, Destination, Resign, Verdict,
};

/// A refusal: status and the verdict for the 403/413 body and the audit record.
pub(crate) type Refusal = (StatusCode, Verdict);

/// Apply body substitution and SigV4 re-signing to a request about to be forwarded.
pub(crate) async fn apply_to_body(
    conn: &Conn,
    dest: &Destination<'_>,
    head: &mut http::request::Parts,
    mut body: ProxyBody,
) -> Result<ProxyBody, Refusal> {
    let injector = &conn.sandbox.injector;
    let plan = injector.body_plan(dest, head);
    let needs_hash = injector.needs_payload_hash(dest, head);
    let mut payload_sha256 = None;
    if plan == BodyPlan::Buffer || needs_hash {
        let limit = conn.shared.limits.max_buffered_body;
        let bytes = collect_limited(body, limit).await.ok_or_else(|| {
            let reason = format!(
                "body-too-large (bodies for credential substitution or AWS re-signing are buffered up to {limit} bytes)"
            );
            (StatusCode::PAYLOAD_TOO_LARGE, Verdict::proxy_deny(&reason))
        })?;
        let mut data = Vec::from(bytes);
        if plan == BodyPlan::Buffer {
            let before = data.len();
            audit_injection(conn, injector.inject_body(dest, &mut data));
            if data.len() != before || head.headers.contains_key(CONTENT_LENGTH) {
                head.headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
            }
        }
        if needs_hash {
            payload_sha256 = Some(sbx_secrets::sigv4::sha256_hex(&data));
        }
        body = full(data);
    }
    match injector.resign(dest, head, payload_sha256.as_deref()) {
        Resign::Resigned { service, host } => conn.audit(
            Some(AuditDecision::Allow),
            AuditAction::SecretInjected { service, host },
            None,
        ),
        Resign::Refused { reason } => {
            return Err((StatusCode::FORBIDDEN, Verdict::proxy_deny(&reason)));
        }
        Resign::NotApplicable => {}
    }
    if let BodyPlan::Watch(needles) = plan {
        body = PlaceholderWatch::new(body, needles, conn.blocked_reporter(dest.authority))
            .boxed_unsync();
    }
    Ok(body)
}

/// Called with the service name of a placeholder seen in a body headed to a host it is not bound to.
pub(crate) type OnBlocked = Box<dyn Fn(&str) + Send>;

impl Conn {
    /// An [`OnBlocked`] that audits `placeholder_blocked` for `host` in this connection's sandbox.
    fn blocked_reporter(&self, host: &str) -> OnBlocked {
        let sink: Arc<dyn AuditSink> = self.shared.audit.clone();
        let sandbox = self.sandbox.id.clone();
        let host = host.to_owned();
        Box::new(move |service: &str| {
            let v = Verdict::proxy_deny("placeholder_blocked");
            sink.record(AuditEvent {
                sandbox: sandbox.clone(),
                decision: Some(AuditDecision::Deny),
                action: AuditAction::PlaceholderBlocked {
                    service: service.to_owned(),
                    host: host.clone(),
                },
                rule: None,
                layer: v.layer,
                reason: Some(v.reason),
            });
        })
    }
}

/// A streamed body watched for placeholders (each reported once); the bytes pass through unchanged.
pub(crate) struct PlaceholderWatch {
    inner: ProxyBody,
    /// `(service, placeholder, seen)`.
    needles: Vec<(String, Vec<u8>, bool)>,
    /// The last bytes of the previous chunk (one less than the longest placeholder), so a placeholder split across
    /// chunks is still seen.
    tail: Vec<u8>,
    keep: usize,
    on_blocked: OnBlocked,
}

impl PlaceholderWatch {
    pub(crate) fn new(
        inner: ProxyBody,
        needles: Vec<(String, String)>,
        on_blocked: OnBlocked,
    ) -> Self {
        let keep = needles
            .iter()
            .map(|(_, p)| p.len().saturating_sub(1))
            .max()
            .unwrap_or(0);
        Self {
            inner,
            needles: needles
                .into_iter()
                .map(|(s, p)| (s, p.into_bytes(), false))
                .collect(),
            tail: Vec::new(),
            keep,
            on_blocked,
        }
    }

    fn scan(&mut self, data: &[u8]) {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(data);
        for (service, needle, seen) in &mut self.needles {
            if !*seen && !needle.is_empty() && window.windows(needle.len()).any(|w| w == needle) {
                *seen = true;
                (self.on_blocked)(service);
            }
        }
        let start = window.len().saturating_sub(self.keep);
        window.drain(..start);
        self.tail = window;
    }
}

impl Body for PlaceholderWatch {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let data = data.clone();
            self.scan(&data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    async fn watched(chunks: &[&'static [u8]]) -> (Vec<u8>, Vec<String>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        let body = http_body_util::StreamBody::new(futures_stream(frames)).boxed_unsync();
        let watch = PlaceholderWatch::new(
            body,
            vec![
                ("svc".into(), "sbx-ph-svc-abc".into()),
                ("other".into(), "sbx-ph-other-xyz".into()),
            ],
            Box::new(move |s: &str| sink.lock().unwrap().push(s.to_owned())),
        );
        let out = watch.collect().await.unwrap().to_bytes().to_vec();
        let seen = seen.lock().unwrap().clone();
        (out, seen)
    }

    fn futures_stream(
        frames: Vec<Result<Frame<Bytes>, BoxError>>,
    ) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + Unpin {
        struct Iter(std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>);
        impl futures_core::Stream for Iter {
            type Item = Result<Frame<Bytes>, BoxError>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(self.0.next())
            }
        }
        Iter(frames.into_iter())
    }

    #[tokio::test]
    async fn a_placeholder_split_across_chunks_is_seen_once_and_passed_through_unchanged() {
        let (out, seen) = watched(&[
            b"{\"k\":\"sbx-ph-s",
            b"vc-a",
            b"bc\", \"again\": \"sbx-ph-svc-abc\"}",
        ])
        .await;
        assert_eq!(
            out,
            b"{\"k\":\"sbx-ph-svc-abc\", \"again\": \"sbx-ph-svc-abc\"}".to_vec()
        );
        assert_eq!(seen, ["svc"]);
    }

    #[tokio::test]
    async fn bodies_without_placeholders_report_nothing() {
        let (out, seen) = watched(&[b"sbx-ph-svc-ab", b"d sbx-ph-other-xy"]).await;
        assert_eq!(out, b"sbx-ph-svc-abd sbx-ph-other-xy".to_vec());
        assert!(seen.is_empty(), "{seen:?}");
    }
}
