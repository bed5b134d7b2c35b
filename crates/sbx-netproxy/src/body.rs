//! Body types: one boxed body for everything the proxy sends, byte counting, and the audit record that is emitted
//! when a response body ends (so `bytes_down` and `duration_ms` are real, and streams are never buffered).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};

use crate::seam::{AuditAction, AuditDecision, AuditEvent, AuditSink};

/// Errors inside bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the proxy produces.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Box any body, counting the data bytes that pass into `counter`.
pub(crate) fn counted<B>(body: B, counter: Arc<AtomicU64>) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    })
    .map_err(Into::into)
    .boxed_unsync()
}

/// The request half of an `HttpRequest` audit event, finished when the response body is done or dropped.
pub(crate) struct RequestRecord {
    pub(crate) sink: Arc<dyn AuditSink>,
    pub(crate) sandbox: String,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) allowed: bool,
    pub(crate) rule: Option<String>,
    pub(crate) layer: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) bytes_up: Arc<AtomicU64>,
    pub(crate) bytes_down: u64,
    pub(crate) started: Instant,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.sink.record(AuditEvent {
            sandbox: self.sandbox.clone(),
            decision: Some(if self.allowed {
                AuditDecision::Allow
            } else {
                AuditDecision::Deny
            }),
            action: AuditAction::HttpRequest {
                method: std::mem::take(&mut self.method),
                host: std::mem::take(&mut self.host),
                port: self.port,
                path: std::mem::take(&mut self.path),
                status: self.status,
                bytes_up: self.bytes_up.load(Ordering::Relaxed),
                bytes_down: self.bytes_down,
                duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            rule: self.rule.take(),
            layer: self.layer.take(),
            reason: self.reason.take(),
        });
    }
}

/// A response body that counts what it yields and emits its [`RequestRecord`] when done or dropped.
pub(crate) struct AuditedBody {
    inner: ProxyBody,
    record: Option<RequestRecord>,
}

impl AuditedBody {
    pub(crate) fn new(inner: ProxyBody, record: RequestRecord) -> Self {
        Self {
            inner,
            record: Some(record),
        }
    }
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(rec)) = (frame.data_ref(), self.record.as_mut()) {
                    rec.bytes_down += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                self.record.take();
            }
            Poll::Pending => {}
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
