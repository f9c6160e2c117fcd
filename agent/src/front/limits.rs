//! What bounds the front against the Internet (docs/front.md#limits): one
//! deadline before the first request, an idle timeout after it, a cap on
//! open connections in all and per client address, and an accept loop that
//! backs off when the process is out of descriptors.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

/// From accept to the end of the first request's head: the first byte, the
/// TLS handshake and the head together (nginx's `client_header_timeout`
/// with the handshake inside it).
pub const PRE_REQUEST: Duration = Duration::from_secs(10);
/// No byte either way for this long ends a connection: a kept-alive one
/// between requests, or a WebSocket. Longer than Jupyter's WebSocket ping
/// (every 30 s), so an idle kernel's connection stays.
pub const IDLE: Duration = Duration::from_secs(60);
/// A kept-alive connection quiet for this long gives back its HTTP buffers
/// and its connection to Jupyter until the client sends again (nginx frees
/// an idle kept-alive connection's buffers as soon as its request ends).
pub const PARK_AFTER: Duration = Duration::from_secs(1);
/// TCP keepalive: a peer that vanished is found even while nothing is sent.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Open connections in all. Each takes two descriptors (the client's and
/// Jupyter's); the unit allows [`NOFILE`].
pub const MAX_CONNECTIONS: usize = 1024;
/// Open connections from one client address: a browser opens six, and one
/// WebSocket per open notebook or terminal.
pub const MAX_PER_CLIENT: usize = 64;
/// Busy answers being written at once; beyond, the oldest that has not
/// sent its request yet is dropped for the new one.
pub const MAX_BUSY: usize = 64;
/// The most a connection's read buffer holds: a request head larger than
/// this is refused with 431 (nginx's `large_client_header_buffers` is
/// 4 x 8 KiB); 1024 connections hold at most 64 MiB.
pub const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// The open-files limit the unit sets and the agent raises itself to.
pub const NOFILE: u64 = 16384;
/// The first wait after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A warning that clients can cause is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Raises this process's soft open-files limit to its hard limit (at most
/// [`NOFILE`]): without systemd the default soft limit is often 1024.
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let wanted = hard.min(NOFILE).max(soft);
        if wanted > soft {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
                debug!(error = %e, "cannot raise the open-files limit");
            }
        }
    }
}

/// Hands the memory that parked connections let go back to the system:
/// glibc keeps what was freed for the process, so without this the agent's
/// size stays at the peak of its busiest second. Parks are coalesced: one
/// `malloc_trim` half a second after the last, at most two a second.
pub fn parked() {
    static TRIMMER: std::sync::OnceLock<Arc<tokio::sync::Notify>> = std::sync::OnceLock::new();
    let notify = TRIMMER.get_or_init(|| {
        let notify = Arc::new(tokio::sync::Notify::new());
        let wait = notify.clone();
        tokio::spawn(async move {
            loop {
                wait.notified().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        });
        notify
    });
    notify.notify_one();
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and shrinks glibc's own heaps, under their locks.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// A warning logged at most once a minute, with how many were held back.
#[derive(Default)]
pub struct Throttle(Mutex<(Option<Instant>, u64)>);

impl Throttle {
    pub fn warn(&self, what: std::fmt::Arguments<'_>) {
        let mut last = self.0.lock().expect("not poisoned");
        let now = Instant::now();
        if last.0.is_some_and(|at| now < at + WARN_EVERY) {
            last.1 += 1;
            return;
        }
        let held = std::mem::take(&mut last.1);
        last.0 = Some(now);
        drop(last);
        if held > 0 {
            warn!("{what} ({held} more like it in the last minute)");
        } else {
            warn!("{what}");
        }
    }
}

/// What a new connection may do.
pub enum Admission {
    /// Be served.
    Open(Ticket),
    /// Get the busy answer: its address has [`MAX_PER_CLIENT`] open already.
    Busy(Ticket),
    /// Be closed at once.
    Refused(&'static str),
}

/// The open connections.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// The warning of a full registry.
    full: Throttle,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// By age: the first is the oldest.
    open: BTreeMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
    busy: usize,
}

struct Entry {
    client: IpAddr,
    busy: bool,
    /// It has sent a whole request head: no longer dropped to make room.
    requested: bool,
    evict: Option<oneshot::Sender<()>>,
}

impl Inner {
    /// Drops the oldest connection that `quiet` says may go, and tells its
    /// task; `false` when there is none.
    fn evict_oldest(&mut self, quiet: impl Fn(&Entry) -> bool) -> bool {
        let oldest = self.open.iter().find(|(_, e)| quiet(e)).map(|(id, _)| *id);
        match oldest.and_then(|id| self.remove(id)) {
            Some(mut evicted) => {
                if let Some(tx) = evicted.evict.take() {
                    let _ = tx.send(());
                }
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&entry.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&entry.client);
            }
        }
        if entry.busy {
            self.busy -= 1;
        }
        Some(entry)
    }
}

impl Registry {
    /// Admits a connection from `client`. At [`MAX_CONNECTIONS`], the oldest
    /// connection that has not sent a request yet is dropped to make room.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Admission {
        let mut inner = self.inner.lock().expect("not poisoned");
        if inner.open.len() >= MAX_CONNECTIONS {
            match inner.evict_oldest(|e| !e.requested) {
                true => {}
                false => {
                    drop(inner);
                    self.full.warn(format_args!(
                        "{MAX_CONNECTIONS} connections are open and all of them are in use: refusing new ones"
                    ));
                    return Admission::Refused("all connections in use");
                }
            }
        }
        let from_client = inner.per_client.get(&client).copied().unwrap_or(0);
        let busy = from_client >= MAX_PER_CLIENT;
        // The newest gets the busy answer: the oldest quiet one waiting for its own goes.
        if busy && inner.busy >= MAX_BUSY && !inner.evict_oldest(|e| e.busy && !e.requested) {
            return Admission::Refused("too many busy answers at once");
        }
        let id = inner.next;
        inner.next += 1;
        let (tx, rx) = oneshot::channel();
        inner.open.insert(id, Entry { client, busy, requested: false, evict: Some(tx) });
        *inner.per_client.entry(client).or_default() += 1;
        if busy {
            inner.busy += 1;
        }
        let ticket = Ticket { id, registry: self.clone(), evicted: Mutex::new(Some(rx)) };
        if busy {
            Admission::Busy(ticket)
        } else {
            Admission::Open(ticket)
        }
    }

    /// How many connections are open.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.inner.lock().expect("not poisoned").open.len()
    }
}

/// A connection's place in the [`Registry`], given back when dropped.
pub struct Ticket {
    id: u64,
    registry: Arc<Registry>,
    evicted: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Ticket {
    /// The connection sent a whole request head.
    pub fn requested(&self) {
        if let Some(e) = self.registry.inner.lock().expect("not poisoned").open.get_mut(&self.id) {
            e.requested = true;
        }
    }

    /// Resolves when the registry dropped this connection to make room.
    pub async fn evicted(&self) {
        let rx = self.evicted.lock().expect("not poisoned").take();
        if let Some(rx) = rx {
            if rx.await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.inner.lock().expect("not poisoned").remove(self.id);
    }
}

/// When a connection last moved a byte, and whether it sent a request yet.
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    last: AtomicU64,
    requested: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { epoch: Instant::now(), last: AtomicU64::new(0), requested: AtomicBool::new(false) })
    }

    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn requested(&self) {
        self.touch();
        self.requested.store(true, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `quiet`.
    pub async fn quiet_for(&self, quiet: Duration) {
        loop {
            let at = self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed)) + quiet;
            if Instant::now() >= at {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    /// Resolves when the connection is past its deadline: [`PRE_REQUEST`]
    /// after accept while no request came, else [`IDLE`] after the last byte.
    pub async fn expired(&self) -> &'static str {
        loop {
            let (deadline, why) = if self.requested.load(Ordering::Relaxed) {
                (self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed)) + IDLE, "idle")
            } else {
                (self.epoch + PRE_REQUEST, "no request before the deadline")
            };
            if Instant::now() >= deadline {
                return why;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records its traffic in an [`Activity`].
pub struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(io: T, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A stream whose first reads return `prefix`: bytes read from it before
/// (by an HTTP connection that ended, or while it was parked).
pub struct Prefixed<T> {
    prefix: bytes::Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub fn new(io: T) -> Self {
        Prefixed { prefix: bytes::Bytes::new(), io }
    }

    /// Puts `bytes` before what is still to be read. They are copied: a
    /// slice of hyper's read buffer would keep the whole buffer alive.
    pub fn unread(&mut self, bytes: bytes::Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.prefix = [&bytes[..], &self.prefix[..]].concat().into();
    }

    pub fn has_unread(&self) -> bool {
        !self.prefix.is_empty()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = buf.remaining().min(self.prefix.len());
        buf.put_slice(&self.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepts connections for ever, handing each admitted one to `serve`. A
/// failed accept (out of descriptors, most likely) waits 10 ms, doubling up
/// to 1 s, and is logged at most once a minute: it never spins.
pub async fn accept_loop(
    listener: TcpListener,
    registry: Arc<Registry>,
    what: &'static str,
    serve: impl Fn(TcpStream, SocketAddr, Admission) + Send + 'static,
) {
    let failed = Throttle::default();
    let mut backoff = ACCEPT_BACKOFF;
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                backoff = ACCEPT_BACKOFF;
                let admission = registry.admit(peer.ip());
                if let Admission::Refused(why) = &admission {
                    debug!(client = %peer.ip(), why, "closed a new {what} connection at once");
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE).with_interval(TCP_KEEPALIVE / 4);
                let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
                serve(tcp, peer, admission);
            }
            Err(e) => {
                failed.warn(format_args!("accepting a {what} connection failed: {e}; waiting before the next"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_cap_is_busy_and_a_full_registry_drops_the_oldest_quiet_connection() {
        let registry = Arc::new(Registry::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held: Vec<Ticket> = (0..MAX_PER_CLIENT)
            .map(|_| match registry.admit(a) {
                Admission::Open(t) => t,
                _ => panic!("under the cap"),
            })
            .collect();
        assert!(matches!(registry.admit(a), Admission::Busy(_)), "over the address's cap");
        // Quiet busy ones make room for newer ones rather than lock them out.
        let quiet_busy: Vec<Ticket> = (0..MAX_BUSY)
            .map(|_| match registry.admit(a) {
                Admission::Busy(t) => t,
                _ => panic!("busy"),
            })
            .collect();
        let Admission::Busy(newest) = registry.admit(a) else { panic!("the newest gets the busy answer") };
        drop((quiet_busy, newest));
        // Dropped busy tickets give their place back.
        assert_eq!(registry.open(), MAX_PER_CLIENT);
        held[0].requested();
        // Fill the registry from other addresses.
        for i in 0..(MAX_CONNECTIONS - MAX_PER_CLIENT) {
            let client = IpAddr::from([10, 0, (i / 200) as u8, (i % 200) as u8]);
            match registry.admit(client) {
                Admission::Open(t) => held.push(t),
                _ => panic!("room left"),
            }
        }
        assert_eq!(registry.open(), MAX_CONNECTIONS);
        let newcomer: IpAddr = "198.51.100.7".parse().unwrap();
        let Admission::Open(_t) = registry.admit(newcomer) else { panic!("room is made") };
        assert_eq!(registry.open(), MAX_CONNECTIONS);
        // The oldest quiet one (held[1]; held[0] has sent a request) was told to go.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), held[1].evicted()).await.expect("evicted");
            assert!(tokio::time::timeout(Duration::from_millis(50), held[0].evicted()).await.is_err());
        });
    }

    #[tokio::test(start_paused = true)]
    async fn one_deadline_before_the_request_then_an_idle_timeout_that_traffic_resets() {
        let activity = Activity::new();
        let start = Instant::now();
        assert_eq!(activity.expired().await, "no request before the deadline");
        assert_eq!(start.elapsed(), PRE_REQUEST);

        let activity = Activity::new();
        activity.requested();
        let waiting = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.expired().await })
        };
        tokio::time::sleep(IDLE / 2).await;
        activity.touch();
        let start = Instant::now();
        assert_eq!(waiting.await.unwrap(), "idle");
        assert!(start.elapsed() >= IDLE / 2, "the byte at half time moved the deadline");
    }
}
