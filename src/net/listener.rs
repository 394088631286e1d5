//! The HTTP/1.1 accept loop, with the limits axum::serve leaves out: a cap
//! on concurrent connections, a deadline for request headers (slowloris),
//! a bound on header bytes (431 beyond), an idle timeout on keep-alive
//! connections, and a graceful stop that lets in-flight requests finish.
//!
//! What must stay true: idle connections never keep a working client out.
//! A connection is *busy* from the moment hyper hands its request to the
//! router until the response body is dropped (sent, or the client gone);
//! otherwise it is *idle* (between keep-alive requests, or still sending a
//! request's headers). At the connection cap, a new connection closes the
//! connection idle longest and takes its slot, so a client holding
//! `max_connections` idle sockets delays others by one close, not by a
//! timeout. Only busy connections (bounded by the body timeout, and for
//! streams by the stream cap, which is at most half the connection cap)
//! make a new connection wait.
//!
//! Both the log server and the witness server run on this loop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

/// Connection limits.
#[derive(Clone, Debug)]
pub struct NetLimits {
    /// Connections served at once. At the cap, the connection idle
    /// longest is closed for a new one; when none is idle, new ones wait
    /// in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers. hyper starts this
    /// deadline again after each response, so it also bounds how long a
    /// keep-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Bytes of request line and headers at most (hyper's read buffer).
    pub max_header_bytes: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
        }
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
/// One connection as the accept loop and its requests see it.
struct ConnState {
    /// Requests whose response body is not yet dropped.
    busy: AtomicUsize,
    /// When the connection last became idle, ms since the loop started.
    idle_since: AtomicU64,
    /// Set once the loop has asked this connection to close.
    evicted: AtomicBool,
    /// Close gracefully: finish the request in flight, if any.
    evict: Notify,
    /// Close now, whatever is in flight.
    kill: Notify,
    /// Set once the connection is closing (server stop, eviction, idle):
    /// long-lived responses end themselves then.
    closing: AtomicBool,
}

/// A handle on the connection a request arrived on, in the request's
/// extensions. Long-lived responses (streams) use it to close their
/// connection at once when they must end, even if the client reads
/// nothing (a response body nobody polls cannot end itself).
#[derive(Clone)]
pub struct ConnHandle(Arc<ConnState>);

impl ConnHandle {
    /// Closes the connection now, dropping whatever is in flight.
    pub fn close(&self) {
        self.0.kill.notify_one();
    }

    /// Whether the server asked this connection to close (it is stopping,
    /// or the connection was idle): a stream should end.
    pub fn closing(&self) -> bool {
        self.0.closing.load(Ordering::Acquire)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every connection finish its request, and returns.
/// With `tls`, each connection is a TLS one: its handshake runs in the
/// connection's own task (a slow client never stalls accepting), within
/// the header timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: NetLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let start = Instant::now();
    let now_ms = move || start.elapsed().as_millis() as u64;
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let live: Arc<Mutex<HashMap<u64, Arc<ConnState>>>> = Default::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    'accept: loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let permit = loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                break p;
            }
            // At the cap: make room by closing the connection idle
            // longest (unless one is already closing), then wait for a
            // slot. Look again now and then: a busy connection may have
            // gone idle meanwhile.
            evict_idlest(&live);
            tokio::select! {
                p = slots.clone().acquire_owned() => break p.expect("never closed"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = &mut shutdown => break 'accept,
            }
        };
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let state = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now_ms()),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            kill: Notify::new(),
            closing: AtomicBool::new(false),
        });
        live.lock().expect("not poisoned").insert(id, state.clone());
        let svc = Tracked {
            inner: TowerToHyperService::new(router.clone()),
            conn: ConnHandle(state.clone()),
            now_ms: Arc::new(now_ms),
        };
        let mut stop = stop_rx.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        let live = live.clone();
        conns.spawn(async move {
            let _permit = permit;
            let stream: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => Box::new(s),
                        _ => {
                            live.lock().expect("not poisoned").remove(&id);
                            return;
                        }
                    }
                }
            };
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192));
            let conn = b.serve_connection(TokioIo::new(JsonErrors::new(stream)), svc);
            tokio::pin!(conn);
            let mut closing = false;
            // An idle connection asked to close that has not within this
            // (a client sending half a request's headers) is dropped.
            let mut drop_idle_at = None;
            loop {
                // Idle since when, if idle: the deadline to close it.
                let idle_deadline = match state.busy.load(Ordering::Acquire) {
                    0 => {
                        let since = state.idle_since.load(Ordering::Acquire);
                        start + Duration::from_millis(since) + limits.idle_timeout
                    }
                    _ => Instant::now() + limits.idle_timeout,
                };
                let was_closing = closing;
                let mut idle_close = false;
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = state.kill.notified() => break,
                    _ = stop.changed(), if !closing => closing = true,
                    _ = state.evict.notified(), if !closing => {
                        closing = true;
                        idle_close = true;
                    }
                    _ = tokio::time::sleep_until(idle_deadline), if !closing => {
                        let since = state.idle_since.load(Ordering::Acquire);
                        let idle_for = now_ms().saturating_sub(since);
                        closing = state.busy.load(Ordering::Acquire) == 0
                            && idle_for >= limits.idle_timeout.as_millis() as u64;
                        idle_close = closing;
                    }
                    _ = sleep_until_opt(drop_idle_at) => {
                        if state.busy.load(Ordering::Acquire) == 0 {
                            break;
                        }
                        drop_idle_at = None;
                    }
                }
                if closing && !was_closing {
                    // Ends an idle connection at once; a busy one after
                    // its response; one in the middle of a request's
                    // headers when they are complete, or dropped soon.
                    state.closing.store(true, Ordering::Release);
                    conn.as_mut().graceful_shutdown();
                    if idle_close {
                        drop_idle_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            live.lock().expect("not poisoned").remove(&id);
        });
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks the connection idle longest to close, unless one already is.
fn evict_idlest(live: &Mutex<HashMap<u64, Arc<ConnState>>>) {
    let live = live.lock().expect("not poisoned");
    // One that went busy since it was asked finishes its request first:
    // it no longer counts as making room soon.
    let closing_soon = live
        .values()
        .any(|c| c.evicted.load(Ordering::Acquire) && c.busy.load(Ordering::Acquire) == 0);
    if closing_soon {
        return;
    }
    let idlest = live
        .values()
        .filter(|c| c.busy.load(Ordering::Acquire) == 0)
        .min_by_key(|c| c.idle_since.load(Ordering::Acquire));
    if let Some(c) = idlest {
        c.evicted.store(true, Ordering::Release);
        c.evict.notify_one();
    }
}

/// The router as a hyper service that marks its connection busy while a
/// request is handled and its response body lives.
struct Tracked<F> {
    inner: TowerToHyperService<Router>,
    conn: ConnHandle,
    now_ms: Arc<F>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<F: Fn() -> u64 + Send + Sync + 'static> hyper::service::Service<axum::http::Request<Incoming>>
    for Tracked<F>
{
    type Response = axum::http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, mut req: axum::http::Request<Incoming>) -> Self::Future {
        let busy = Busy::start(self.conn.0.clone(), self.now_ms.clone());
        req.extensions_mut().insert(self.conn.clone());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|inner| Body::new(BusyBody { inner, _busy: busy })))
        })
    }
}

/// Marks a connection busy while it lives.
struct Busy<F: Fn() -> u64> {
    conn: Arc<ConnState>,
    now_ms: Arc<F>,
}

impl<F: Fn() -> u64> Busy<F> {
    fn start(conn: Arc<ConnState>, now_ms: Arc<F>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn, now_ms }
    }
}

impl<F: Fn() -> u64> Drop for Busy<F> {
    fn drop(&mut self) {
        // Idle from now: set the time before the count reads 0.
        self.conn
            .idle_since
            .store((self.now_ms)(), Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it is dropped.
struct BusyBody<F: Fn() -> u64> {
    inner: Body,
    _busy: Busy<F>,
}

impl<F: Fn() -> u64> hyper::body::Body for BusyBody<F> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, with one rewrite on the way out: the bare error answers
/// hyper itself writes for a request it cannot parse (400, 414, 431, with
/// an empty body and no content type) get the JSON error body every other
/// error answer has. They are told apart by that empty body: every error
/// answer of the log's routes carries a JSON body (`http::error::json_errors`).
struct JsonErrors {
    inner: Box<dyn Io>,
    /// A rewritten answer being written: bytes, how many went out, and the
    /// length of hyper's own buffer to report once all have.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl JsonErrors {
    fn new(inner: Box<dyn Io>) -> Self {
        JsonErrors {
            inner,
            pending: None,
        }
    }

    /// Writes the pending rewrite; Ready(n) reports hyper's length.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let (bytes, done, report) = self.pending.as_mut().expect("pending");
        while *done < bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let report = *report;
        self.pending = None;
        Poll::Ready(Ok(report))
    }
}

/// hyper's bare error answer in `buf`, rewritten with a JSON body.
fn rewrite_bare_error(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_end != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?;
    let status_line = head.split("\r\n").next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let lower = head.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length: 0\r\n") || lower.contains("content-type") {
        return None;
    }
    // The statuses hyper answers a parse error with (it then closes).
    let (code, message) = match status {
        400 => ("bad_request", "malformed HTTP request"),
        414 => ("uri_too_long", "request target too long"),
        431 => ("headers_too_large", "request headers too large"),
        _ => return None,
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() && buf.starts_with(b"HTTP/1.1 ") {
            if let Some(bytes) = rewrite_bare_error(buf) {
                self.pending = Some((bytes, 0, buf.len()));
            }
        }
        if self.pending.is_some() {
            return self.poll_pending(cx);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper queues the head as the first slice; a bare error answer is
        // that head alone.
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.pending.is_none() {
            if let Some(first) = first.filter(|b| b.starts_with(b"HTTP/1.1 ")) {
                let rest: usize = bufs.iter().map(|b| b.len()).sum::<usize>() - first.len();
                if rest == 0 {
                    if let Some(bytes) = rewrite_bare_error(first) {
                        self.pending = Some((bytes, 0, first.len()));
                    }
                }
            }
        }
        if self.pending.is_some() {
            return self.poll_pending(cx);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed by this
/// call, not when the future is first polled: a SIGTERM sent as soon as
/// "serving" is logged must stop the server gracefully, and before its
/// handler exists it killed the process (a test saw exit by signal).
/// Call within the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_error_heads_are_rewritten() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite_bare_error(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        for keep in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
        ] {
            assert!(rewrite_bare_error(keep).is_none());
        }
    }
}
