//! Byte-stream plumbing: boxed streams, replaying peeked bytes, activity tracking for idle timeouts.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::classify::{Classified, MAX_PEEK};

/// A client or upstream byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed byte stream.
pub(crate) type BoxIo = Box<dyn Io>;

/// A stream that first replays bytes already read from it.
pub(crate) struct Prefixed {
    prefix: Bytes,
    inner: BoxIo,
}

impl Prefixed {
    pub(crate) fn new(prefix: Vec<u8>, inner: BoxIo) -> Self {
        Self {
            prefix: Bytes::from(prefix),
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if !self.prefix.has_remaining() {
                // Free the replayed bytes' allocation now rather than when the connection ends.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Read until `kind` stops answering [`Classified::NeedMore`], [`MAX_PEEK`] bytes, EOF or `timeout`.
pub(crate) async fn read_first(
    io: &mut BoxIo,
    timeout: Duration,
    kind: fn(&[u8]) -> Classified,
) -> (Vec<u8>, Classified) {
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let verdict = kind(&buf);
        if verdict != Classified::NeedMore || buf.len() >= MAX_PEEK {
            return (buf, verdict);
        }
        // Read straight into `buf`'s spare capacity: no scratch array in the future, which lives as long as the
        // connection (a 4 KiB array here cost 4 KiB per open connection).
        let want = 4096.min(MAX_PEEK - buf.len());
        buf.reserve(want);
        let mut limited = (&mut *io).take(want as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return (buf, Classified::NeedMore),
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The last time bytes moved on a connection.
#[derive(Debug)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    pub(crate) fn new() -> Self {
        let a = Self(AtomicU64::new(0));
        a.touch();
        a
    }
    fn touch(&self) {
        let nanos = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }
    pub(crate) fn last(&self) -> Instant {
        epoch() + Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// Something that sees the bytes moving through an [`Observed`] stream.
pub(crate) trait Observer: Unpin {
    /// Bytes just read from the stream.
    fn read(&mut self, data: &[u8]);
    /// `n` bytes were just written to the stream.
    fn wrote(&mut self, _n: usize) {}
    /// Called before every read: an error ends the stream (e.g. a request head that is taking too long). An observer
    /// with a deadline registers `cx` so the reader is woken when it passes.
    fn check(&mut self, _cx: &mut Context<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// Activity tracking: any bytes moving either way count as activity.
impl Observer for Arc<Activity> {
    fn read(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.touch();
        }
    }
    fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.touch();
        }
    }
}

/// A stream whose traffic an [`Observer`] sees (activity for idle timeouts, the HTTP/1 framing watch).
pub(crate) struct Observed<T, O> {
    inner: T,
    observer: O,
}

impl<T, O> Observed<T, O> {
    pub(crate) fn new(inner: T, observer: O) -> Self {
        Self { inner, observer }
    }
}

/// A stream that records activity on every successful read or write.
pub(crate) type Watched<T> = Observed<T, Arc<Activity>>;

impl<T: AsyncRead + Unpin, O: Observer> AsyncRead for Observed<T, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        this.observer.check(cx)?;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.observer.read(&buf.filled()[before..]);
        r
    }
}

impl<T: AsyncWrite + Unpin, O: Observer> AsyncWrite for Observed<T, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.observer.wrote(n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.observer.wrote(n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Per-connection limits: holds the sandbox's connection slot and ends the connection when idle or too old.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    pub(crate) activity: Arc<Activity>,
    idle: Duration,
    deadline: Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ConnGuard {
    pub(crate) fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        idle: Duration,
        total: Duration,
    ) -> Self {
        Self {
            activity: Arc::new(Activity::new()),
            idle,
            deadline: Instant::now() + total,
            _permit: permit,
        }
    }

    /// Resolves when the connection has been idle for too long or has reached its total lifetime.
    pub(crate) async fn expired(&self) {
        loop {
            let next = (self.activity.last() + self.idle).min(self.deadline);
            if Instant::now() >= next {
                return;
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }

    /// Run `fut` until it finishes or the connection expires.
    pub(crate) async fn watch<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            r = fut => Some(r),
            () = self.expired() => None,
        }
    }
}
