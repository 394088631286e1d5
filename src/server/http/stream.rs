//! `GET /v1/stream`: server-sent events of the log, in index order, at
//! each consumer's pace, with per-token and overall caps.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::ApiError;
use super::params::{canonical_u64, Params};
use super::state::{authorize, AppState};
use crate::server::auth::Scope;
use crate::sys::follow::{Follower, Follows, Role};

/// `GET /v1/stream?from=<index>&class_uid=&user=` (scope `read`):
/// server-sent events, one per committed event in index order, from `from`
/// (or after the `Last-Event-ID` a reconnecting client sends), then live.
/// Each SSE id is the event's index. The stream reads the store at the
/// consumer's pace: nothing is buffered per consumer, so a slow one never
/// holds up appends, and any consumer resumes exactly where it stopped.
///
/// What must stay true: a stream ends within about a second once its token
/// is revoked (or loses `read`), once the server stops, or once its client
/// has read nothing for `stream_idle_timeout`; streams are capped per token
/// and overall, so they never hold all connection slots; and it never ends
/// or skips without a trace: an event it cannot read is sent as an
/// `unreadable` SSE event with its id, a store it cannot read ends it with
/// an `error` event, both logged and counted in
/// `sealog_stream_errors_total`.
pub(super) async fn stream(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    use axum::response::sse::{KeepAlive, Sse};
    let who = authorize(&s, &headers, Scope::Read)?;
    let p = Params::parse(q)?;
    p.only(&["from", "class_uid", "user"])?;
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(canonical_u64)
                .and_then(|id| id.checked_add(1))
                .ok_or_else(|| {
                    ApiError::bad(
                        "Last-Event-ID",
                        "not a canonical decimal index below 2^64 - 1",
                    )
                })
        })
        .transpose()?;
    let from = match resume {
        Some(next) => next,
        None => p.u64("from")?.unwrap_or(0),
    };
    let class = p.u64("class_uid")?;
    let user = p.str("user").map(String::from);
    let slot = StreamSlot::take(&s, &who.name)?;
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let conn = extensions
        .get::<crate::net::listener::ConnHandle>()
        .cloned();
    let (end_tx, end_rx) = tokio::sync::watch::channel(None::<&'static str>);
    let polled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    tokio::spawn(stream_watchdog(
        s.clone(),
        auth_header,
        conn,
        end_tx,
        polled.clone(),
        started,
    ));
    let follows = Follows::Leaves {
        chunk: STREAM_CHUNK,
    };
    let follower = Follower::new(Role::Stream, follows, from, s.log.watch_size());
    let state = StreamState {
        s: s.clone(),
        follower: follower.stop_on(end_rx),
        buf: Vec::new(),
        done: false,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(state, move |mut st| {
        let user = user.clone();
        let polled = polled.clone();
        async move {
            polled.store(
                started.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let ev = st.next_event(class, user.as_deref()).await?;
            Some((Ok::<_, std::convert::Infallible>(ev), st))
        }
    });
    let keep_alive = s.limits.stream_idle_timeout.div_f64(4.0).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(15),
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response())
}

/// One open stream's place in the caps, given back when dropped.
struct StreamSlot {
    s: Arc<AppState>,
    token: String,
}

impl StreamSlot {
    fn take(s: &Arc<AppState>, token: &str) -> Result<Self, ApiError> {
        let mut c = s.streams.lock().expect("not poisoned");
        let mine = c.by_token.get(token).copied().unwrap_or(0);
        if mine >= s.limits.max_streams_per_token {
            return Err(ApiError::TooManyStreams(format!(
                "this token has {mine} open streams, the most one token may hold"
            )));
        }
        if c.total >= s.limits.max_streams {
            return Err(ApiError::StreamsFull(format!(
                "{} streams are open, the most the server holds",
                c.total
            )));
        }
        c.total += 1;
        *c.by_token.entry(token.to_string()).or_default() += 1;
        Ok(StreamSlot {
            s: s.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut c = self.s.streams.lock().expect("not poisoned");
        c.total -= 1;
        if let Some(n) = c.by_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                c.by_token.remove(&self.token);
            }
        }
    }
}

/// Ends a stream when it must (see `stream`): tells it why, and if its
/// body does not end soon (a client that reads nothing never polls it),
/// closes its connection.
async fn stream_watchdog(
    s: Arc<AppState>,
    auth_header: String,
    conn: Option<crate::net::listener::ConnHandle>,
    end: tokio::sync::watch::Sender<Option<&'static str>>,
    polled: Arc<std::sync::atomic::AtomicU64>,
    started: tokio::time::Instant,
) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(250);
    let idle_ms = s.limits.stream_idle_timeout.as_millis() as u64;
    let why = loop {
        tokio::select! {
            _ = end.closed() => return, // the stream is gone
            _ = tokio::time::sleep(TICK) => {}
        }
        if s.tokens.authorize(Some(&auth_header), Scope::Read).is_err() {
            break "token revoked";
        }
        if conn.as_ref().is_some_and(|c| c.closing()) {
            break "server closing the connection";
        }
        let since = polled.load(std::sync::atomic::Ordering::Relaxed);
        if (started.elapsed().as_millis() as u64).saturating_sub(since) > idle_ms {
            break "client read nothing";
        }
    };
    tracing::info!(reason = why, "ending a stream");
    let _ = end.send(Some(why));
    let ended = tokio::time::timeout(std::time::Duration::from_secs(1), end.closed()).await;
    if ended.is_err() {
        if let Some(c) = conn {
            c.close();
        }
    }
}

/// Events a stream reads from one snapshot, ahead of its client.
const STREAM_CHUNK: u64 = 256;

/// A stream's position (its follower, which also ends it when the
/// watchdog says so) and what it has read ahead.
struct StreamState {
    s: Arc<AppState>,
    follower: Follower,
    /// Read events not yet sent, last first.
    buf: Vec<(u64, Result<Value, String>)>,
    done: bool,
    _slot: StreamSlot,
}

impl StreamState {
    /// The next SSE event to send, waiting for new ones; None to end.
    ///
    /// The follower hands out the next leaves once the log has signed
    /// them. A store that cannot be read ends the stream rather than
    /// retrying: its client resumes with `Last-Event-ID`. An event that
    /// cannot be read is sent as `unreadable`.
    async fn next_event(
        &mut self,
        class: Option<u64>,
        user: Option<&str>,
    ) -> Option<axum::response::sse::Event> {
        use axum::response::sse::Event;
        loop {
            // What was read goes out unless the watchdog ends the stream;
            // once it is sent, a log that stopped ends it (`next`).
            if self.done || self.follower.stop_signalled() {
                return None;
            }
            if let Some((i, v)) = self.buf.pop() {
                let ev = Event::default().id(i.to_string());
                return Some(match v {
                    Ok(v) => ev.data(json!({"index": i, "event": v}).to_string()),
                    Err(e) => ev
                        .event("unreadable")
                        .data(json!({"index": i, "error": e}).to_string()),
                });
            }
            let range = self.follower.next().await?;
            match self.s.log.stream_events(range.clone(), class, user) {
                Ok(events) => self.buf = events,
                Err(_) => {
                    // The client resumes from its last id.
                    self.done = true;
                    let body = json!({"error": {"code": "storage", "message": "the log cannot read its store; reconnect with Last-Event-ID"}});
                    return Some(Event::default().event("error").data(body.to_string()));
                }
            }
            self.buf.reverse();
            self.follower.advance_to(range.end);
        }
    }
}
