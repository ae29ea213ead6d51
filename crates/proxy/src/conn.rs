//! One client connection of the proxy, with the timeouts of Go's
//! `http.Server` (LiteFS's proxy is one, and `litefs.yml` has its four
//! keys), enforced the way Go does: as deadlines on the connection's reads
//! and writes, so a slow or stalled client is cut off wherever it stalls.
//!
//! - `read-header-timeout` (or `read-timeout` when zero): from the first
//!   byte of a request (the connection's start for the first one) until
//!   its headers are in.
//! - `read-timeout`: from the same moment until the whole request, body
//!   included, is in.
//! - `write-timeout`: from the end of the headers until the response is
//!   written, the handler's time included.
//! - `idle-timeout` (or `read-timeout` when zero): how long a kept-alive
//!   connection waits for its next request.
//!
//! Zero means no limit, as in Go. A deadline that passes fails the read or
//! write (`TimedOut`), and hyper closes the connection.

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The four timeouts of a Go `http.Server`; zero: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `read-timeout`: the whole request, body included.
    pub read: Duration,
    /// `read-header-timeout`: the request's headers.
    pub read_header: Duration,
    /// `write-timeout`: from the end of the headers to the end of the
    /// response.
    pub write: Duration,
    /// `idle-timeout`: between requests on a kept-alive connection.
    pub idle: Duration,
}

fn limit(d: Duration, or: Duration) -> Option<Duration> {
    [d, or].into_iter().find(|d| !d.is_zero())
}

impl Timeouts {
    fn header(&self) -> Option<Duration> {
        limit(self.read_header, self.read)
    }
    fn idle(&self) -> Option<Duration> {
        limit(self.idle, self.read)
    }
    fn read(&self) -> Option<Duration> {
        limit(self.read, Duration::ZERO)
    }
    fn write(&self) -> Option<Duration> {
        limit(self.write, Duration::ZERO)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers, since `head_start`.
    Head,
    /// Serving a request.
    Busy,
    /// Between requests.
    Idle,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    head_start: Instant,
    read_deadline: Option<Instant>,
    write_deadline: Option<Instant>,
    /// The task of the read waiting for bytes, if one is.
    reader: Option<Waker>,
}

/// The deadlines of one connection, moved on by what happens on it.
#[derive(Debug)]
struct Clock {
    t: Timeouts,
    state: Mutex<State>,
}

impl Clock {
    fn new(t: Timeouts) -> Clock {
        let now = Instant::now();
        Clock {
            t,
            state: Mutex::new(State {
                phase: Phase::Head,
                head_start: now,
                read_deadline: t.header().map(|d| now + d),
                write_deadline: None,
                reader: None,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut s)
    }

    /// Bytes arrived: an idle connection starts reading a request.
    fn got_bytes(&self) {
        let header = self.t.header();
        self.with(|s| {
            if s.phase == Phase::Idle {
                let now = Instant::now();
                s.phase = Phase::Head;
                s.head_start = now;
                s.read_deadline = header.map(|d| now + d);
            }
        });
    }

    /// A request's headers are in.
    fn request(&self) {
        let (read, write) = (self.t.read(), self.t.write());
        let waker = self.with(|s| {
            s.phase = Phase::Busy;
            s.read_deadline = read.map(|d| s.head_start + d);
            s.write_deadline = write.map(|d| Instant::now() + d);
            s.reader.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The response is handed over (hyper may still be writing its last
    /// bytes, so the write deadline stays until the next request): wait
    /// for the next request.
    fn response_done(&self) {
        let idle = self.t.idle();
        let waker = self.with(|s| {
            if s.phase != Phase::Busy {
                return None;
            }
            s.phase = Phase::Idle;
            s.read_deadline = idle.map(|d| Instant::now() + d);
            s.reader.take()
        });
        // A read already waiting must see its new deadline.
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Remembers the task of a read that waits, for a deadline change.
    fn reading(&self, w: &Waker) {
        self.with(|s| match &s.reader {
            Some(old) if old.will_wake(w) => {}
            _ => s.reader = Some(w.clone()),
        });
    }

    fn read_deadline(&self) -> Option<Instant> {
        self.with(|s| s.read_deadline)
    }

    fn write_deadline(&self) -> Option<Instant> {
        self.with(|s| s.write_deadline)
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("proxy: client {what} deadline passed"),
    )
}

/// A stream whose reads and writes fail once the [`Clock`]'s deadline for
/// them has passed, even while they wait.
struct DeadlineIo<T> {
    inner: T,
    clock: Arc<Clock>,
    read_sleep: Pin<Box<Sleep>>,
    write_sleep: Pin<Box<Sleep>>,
}

impl<T> DeadlineIo<T> {
    fn new(inner: T, clock: Arc<Clock>) -> Self {
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        DeadlineIo {
            inner,
            clock,
            read_sleep: Box::pin(tokio::time::sleep_until(far)),
            write_sleep: Box::pin(tokio::time::sleep_until(far)),
        }
    }
}

/// Whether `deadline` has passed; if not, arranges to be woken when it
/// does.
fn expired(deadline: Option<Instant>, sleep: &mut Pin<Box<Sleep>>, cx: &mut Context<'_>) -> bool {
    let Some(d) = deadline else {
        return false;
    };
    if Instant::now() >= d {
        return true;
    }
    if sleep.deadline() != d {
        sleep.as_mut().reset(d);
    }
    sleep.as_mut().poll(cx).is_ready()
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let deadline = this.clock.read_deadline();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Poll::Ready(Err(timed_out("read")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.got_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.clock.reading(cx.waker());
                if expired(deadline, &mut this.read_sleep, cx) {
                    Poll::Ready(Err(timed_out("read")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> DeadlineIo<T> {
    fn guarded<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        let deadline = self.clock.write_deadline();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Poll::Ready(Err(timed_out("write")));
        }
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Pending if expired(deadline, &mut self.write_sleep, cx) => {
                Poll::Ready(Err(timed_out("write")))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.guarded(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.guarded(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that tells the [`Clock`] when hyper is done with it
/// (written whole, or dropped on an error): the connection is then idle.
pub(crate) struct Tracked<B> {
    inner: B,
    clock: Arc<Clock>,
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.clock.response_done();
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves HTTP/1.1 on `tcp` with `handler`, under `timeouts`, until the
/// client or a deadline ends the connection.
pub async fn serve_connection<H, F, B>(
    tcp: tokio::net::TcpStream,
    timeouts: Timeouts,
    handler: H,
) -> Result<(), hyper::Error>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let clock = Arc::new(Clock::new(timeouts));
    let io = TokioIo::new(DeadlineIo::new(tcp, clock.clone()));
    let handler = Arc::new(handler);
    let svc = hyper::service::service_fn(move |req| {
        clock.request();
        let (clock, handler) = (clock.clone(), handler.clone());
        async move {
            let resp = handler(req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| Tracked { inner, clock }))
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// A proxy-like server on a free port: `/slow` answers after 600 ms,
    /// `/body` reads the whole request body; everything else at once.
    fn server(t: Timeouts) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_connection(
                    tcp,
                    t,
                    |req: Request<Incoming>| async move {
                        let path = req.uri().path().to_owned();
                        if path == "/slow" {
                            tokio::time::sleep(Duration::from_millis(600)).await;
                        }
                        if path == "/body" {
                            use http_body_util::BodyExt;
                            if req.into_body().collect().await.is_err() {
                                return Response::new(Full::new(Bytes::from("cut")));
                            }
                        }
                        Response::new(Full::new(Bytes::from("ok")))
                    },
                ));
            }
        });
        (addr, rt)
    }

    /// Reads one `Content-Length: 2` response; `None` if the connection
    /// ended first.
    fn response(c: &mut TcpStream) -> Option<String> {
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= end + 4 + 2 {
                    return Some(String::from_utf8_lossy(&got).into_owned());
                }
            }
            match c.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Whether the server closed `c` (within 5 s).
    fn closed(c: &mut TcpStream) -> bool {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 64];
        match c.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
        }
    }

    fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn an_idle_connection_is_closed_after_idle_timeout_and_kept_before() {
        let (addr, _rt) = server(Timeouts {
            idle: Duration::from_millis(300),
            ..Timeouts::default()
        });
        let mut c = connect(addr);
        c.write_all(GET).unwrap();
        assert!(response(&mut c).unwrap().contains("200 OK"));
        // Right away, the connection still serves.
        c.write_all(GET).unwrap();
        assert!(response(&mut c).unwrap().contains("200 OK"));
        assert!(closed(&mut c), "an idle connection outlived idle-timeout");
    }

    #[test]
    fn without_timeouts_an_idle_connection_stays() {
        let (addr, _rt) = server(Timeouts::default());
        let mut c = connect(addr);
        c.write_all(GET).unwrap();
        assert!(response(&mut c).is_some());
        std::thread::sleep(Duration::from_millis(800));
        c.write_all(GET).unwrap();
        assert!(response(&mut c).unwrap().contains("200 OK"));
    }

    #[test]
    fn headers_that_stall_are_cut_off() {
        let (addr, _rt) = server(Timeouts {
            read_header: Duration::from_millis(300),
            idle: Duration::from_secs(60),
            ..Timeouts::default()
        });
        let mut c = connect(addr);
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        assert!(closed(&mut c), "stalled headers were not cut off");
    }

    #[test]
    fn a_body_that_stalls_is_cut_off_by_read_timeout() {
        let (addr, _rt) = server(Timeouts {
            read: Duration::from_millis(400),
            ..Timeouts::default()
        });
        let mut c = connect(addr);
        c.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .unwrap();
        let r = response(&mut c);
        assert!(
            r.as_deref().is_none_or(|r| r.contains("cut")),
            "a stalled body was read whole: {r:?}"
        );
        assert!(r.is_some() || closed(&mut c));
    }

    #[test]
    fn a_slow_answer_is_cut_off_by_write_timeout() {
        let (addr, _rt) = server(Timeouts {
            write: Duration::from_millis(200),
            ..Timeouts::default()
        });
        let mut c = connect(addr);
        c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(response(&mut c), None, "answered past write-timeout");
        // A quick one on a new connection is fine.
        let mut c = connect(addr);
        c.write_all(GET).unwrap();
        assert!(response(&mut c).unwrap().contains("200 OK"));
    }
}
