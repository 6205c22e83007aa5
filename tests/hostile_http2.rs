//! HTTP/2 abuse, written frame by frame over a real connection to the gateway binary:
//! rapid reset (CVE-2023-44487), a CONTINUATION flood (CVE-2024-27316 style) and a
//! SETTINGS flood from a client that never reads. Each ends in GOAWAY or a closed
//! connection after a bounded number of frames, the gateway's resident memory stays within
//! a fixed band, and other clients are served throughout.
//!
//! Frames are built by hand (9-byte header + payload); header blocks use HPACK literals
//! without indexing, which every decoder must accept and which keep no decoder state.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use common::process::GatewayProcess;
use common::{client, Upstream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); the prefix bits above `n`
/// are zero.
fn hpack_int(out: &mut Vec<u8>, mut v: usize, n: u32) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(v as u8);
        return;
    }
    out.push(max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// One header as a literal without indexing, new name (RFC 7541 §6.2.2), no Huffman.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_int(out, name.len(), 7);
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, value.len(), 7);
    out.extend_from_slice(value.as_bytes());
}

fn request_block(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", "GET");
    literal(&mut b, ":scheme", "http");
    literal(&mut b, ":path", path);
    literal(&mut b, ":authority", "127.0.0.1");
    b
}

/// The client preface and an empty SETTINGS frame.
fn opening() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the gateway sent back on one connection, frame by frame.
#[derive(Default, Debug)]
struct Seen {
    /// GOAWAY's last stream id and error code.
    goaway: Option<(u32, u32)>,
    frames: usize,
    settings_acks: usize,
    /// The connection ended (EOF or reset) after whatever was read.
    closed: bool,
}

/// Reads frames until GOAWAY, EOF, a read error or `within` passes.
async fn read_until_goaway<R: AsyncRead + Unpin>(r: &mut R, within: Duration) -> Seen {
    let mut seen = Seen::default();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if r.read_exact(&mut head).await.is_err() {
                seen.closed = true;
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if r.read_exact(&mut payload).await.is_err() {
                seen.closed = true;
                return;
            }
            seen.frames += 1;
            match head[3] {
                GOAWAY if len >= 8 => {
                    let last = u32::from_be_bytes(payload[0..4].try_into().unwrap()) & 0x7fff_ffff;
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    seen.goaway = Some((last, code));
                    return;
                }
                SETTINGS if head[4] & ACK != 0 => seen.settings_acks += 1,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    seen
}

struct Gateway {
    process: GatewayProcess,
    up: Upstream,
    _dir: tempfile::TempDir,
    _pki: Option<(common::pki::Ca, tempfile::TempDir)>,
}

impl Gateway {
    async fn start(tls: bool) -> Gateway {
        let up = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut listen = "listen:\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n".to_string();
        let mut pki = None;
        if tls {
            let ca = common::pki::Ca::new("hostile-h2-ca");
            let certs = tempfile::tempdir().unwrap();
            let (cert, key) = ca.server().write(certs.path(), "server");
            listen.push_str(&format!(
                "  https: 127.0.0.1:0\ntls:\n  cert: {}\n  key: {}\n",
                cert.display(),
                key.display()
            ));
            pki = Some((ca, certs));
        }
        let path = dir.path().join("tollgate.yaml");
        std::fs::write(
            &path,
            format!(
                "{listen}store:\n  url: sqlite://{}/t.db\nlimits:\n  idle_timeout: 1s\n  header_read_timeout: 5s\nroutes:\n  - name: all\n    path: /\n    upstream: {}\n",
                dir.path().display(),
                up.url()
            ),
        )
        .unwrap();
        let process = GatewayProcess::start(&path, &[]);
        Gateway {
            process,
            up,
            _dir: dir,
            _pki: pki,
        }
    }

    fn http_addr(&self) -> String {
        self.process.http.trim_start_matches("http://").to_string()
    }

    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A plain h2c connection by prior knowledge, preface and SETTINGS already written.
    async fn h2c(&self) -> Pin<Box<dyn Io>> {
        let mut s = TcpStream::connect(self.http_addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&opening()).await.unwrap();
        Box::pin(s)
    }

    /// A TLS connection that negotiated `h2` by ALPN, preface and SETTINGS written.
    async fn h2_tls(&self) -> Pin<Box<dyn Io>> {
        let (ca, _) = self._pki.as_ref().expect("started with TLS");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(self.process.https.as_str())
            .await
            .unwrap();
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        s.write_all(&opening()).await.unwrap();
        Box::pin(s)
    }

    /// Other clients are served: an HTTP/1.1 request and an h2c request both answer 200.
    async fn still_serves(&self) {
        let r = client()
            .get(format!("{}/after", self.process.http))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let r = h2
            .get(format!("{}/after-h2", self.process.http))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert_eq!(r.status(), 200);
    }

    fn upstream_saw(&self, prefix: &str) -> usize {
        self.up
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }
}

/// Resident memory may grow by this much over a whole test (allocator arenas, pools),
/// never by the size of what an attacker sent.
const RSS_BAND_KIB: u64 = 48 * 1024;

/// Writes `frames` in batches while another task reads; stops at the first write error or
/// once the reader saw the connection end. Returns what was read and how many batches
/// were written in full.
async fn flood(
    io: Pin<Box<dyn Io>>,
    batches: usize,
    batch: impl Fn(usize) -> Vec<u8> + Send + 'static,
) -> (Seen, usize) {
    let (mut r, mut w) = tokio::io::split(io);
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let (written2, done2) = (written.clone(), done.clone());
    let writer = tokio::spawn(async move {
        for i in 0..batches {
            let bytes = batch(i);
            tokio::select! {
                r = w.write_all(&bytes) => if r.is_err() { return },
                _ = done2.notified() => return,
            }
            written2.fetch_add(1, Ordering::SeqCst);
        }
        let _ = w.flush().await;
        // Keep the write half open so the reader sees the gateway's answer, not ours.
        done2.notified().await;
    });
    let seen = read_until_goaway(&mut r, Duration::from_secs(30)).await;
    done.notify_waiters();
    done.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    (seen, written.load(Ordering::SeqCst))
}

/// Rapid reset: each stream is opened and cancelled at once, so it never counts against
/// `max_concurrent_streams`. The gateway answers GOAWAY (ENHANCE_YOUR_CALM) after a
/// bounded number of them, and only a bounded number ever reach the upstream.
async fn rapid_reset_is_stopped(gw: &Gateway, io: Pin<Box<dyn Io>>, prefix: &'static str) {
    // 200,000 streams, some 15 MB: far more than socket buffers hold, so a gateway that
    // never refused would have to read all of it.
    const PAIRS_PER_BATCH: usize = 100;
    const BATCHES: usize = 2_000;
    let (seen, batches) = flood(io, BATCHES, move |b| {
        let mut out = Vec::new();
        for i in 0..PAIRS_PER_BATCH {
            let id = 1 + 2 * (b * PAIRS_PER_BATCH + i) as u32;
            out.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                id,
                &request_block(&format!("{prefix}/{id}")),
            ));
            out.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        }
        out
    })
    .await;
    // The GOAWAY may be lost to the reset that follows it when the gateway closes with
    // our unread frames still queued; then the close is the answer.
    match seen.goaway {
        Some((last, code)) => {
            assert_eq!(code, ENHANCE_YOUR_CALM, "{seen:?}");
            // The last stream the gateway took up: a small share of what was sent.
            assert!(last / 2 < 1_000, "last stream {last}");
        }
        None => assert!(seen.closed, "neither GOAWAY nor a close: {seen:?}"),
    }
    assert!(
        batches < BATCHES,
        "the flood was never refused: {batches} batches of {PAIRS_PER_BATCH} written"
    );
    let upstream = gw.upstream_saw(prefix);
    assert!(
        upstream <= 1000,
        "{upstream} cancelled streams reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_in_goaway_and_memory_stays_flat() {
    let gw = Gateway::start(false).await;
    gw.still_serves().await;
    let before = gw.rss_kib();
    for round in 0..3 {
        let io = gw.h2c().await;
        rapid_reset_is_stopped(&gw, io, "/rr").await;
        gw.still_serves().await;
        let rss = gw.rss_kib();
        assert!(
            rss < before + RSS_BAND_KIB,
            "round {round}: RSS grew from {before} KiB to {rss} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_over_tls_alpn_h2_ends_in_goaway() {
    let gw = Gateway::start(true).await;
    let io = gw.h2_tls().await;
    rapid_reset_is_stopped(&gw, io, "/rr-tls").await;
    gw.still_serves().await;
}

/// A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames
/// forever, either full of headers (memory) or empty (CPU). The gateway stops it after a
/// handful of frames, never buffering what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_ends_in_goaway_after_a_few_frames() {
    let gw = Gateway::start(false).await;
    let before = gw.rss_kib();
    for full in [true, false] {
        let io = gw.h2c().await;
        const BATCHES: usize = 2_000;
        let (seen, batches) = flood(io, BATCHES, move |b| {
            let mut out = Vec::new();
            if b == 0 {
                out.extend(frame(HEADERS, END_STREAM, 1, &request_block("/cont")));
            }
            let mut payload = Vec::new();
            if full {
                // Just under the default 16 KiB frame size, in 100-byte headers.
                while payload.len() < 16_000 {
                    literal(&mut payload, "x-fill", &"a".repeat(90));
                }
            }
            // 128 KB of headers or 9 KB of empty frames per batch; either way the flood is
            // far larger than the socket buffers.
            for _ in 0..if full { 8 } else { 1_000 } {
                out.extend(frame(CONTINUATION, 0, 1, &payload));
            }
            out
        })
        .await;
        assert!(
            seen.goaway.is_some() || seen.closed,
            "full={full}: the flood was neither refused nor closed: {seen:?}"
        );
        if let Some((_, code)) = seen.goaway {
            assert_ne!(code, 0, "full={full}: GOAWAY carries an error: {seen:?}");
        }
        // The limit is a handful of frames, so the gateway must have stopped reading long
        // before the client finished writing.
        assert!(
            batches < BATCHES,
            "full={full}: all {BATCHES} batches were accepted"
        );
        assert_eq!(gw.upstream_saw("/cont"), 0);
        gw.still_serves().await;
    }
    let rss = gw.rss_kib();
    assert!(
        rss < before + RSS_BAND_KIB,
        "RSS grew from {before} KiB to {rss} KiB"
    );
}

/// SETTINGS frames sent without ever reading the ACKs. The gateway acknowledges each
/// before it reads the next frame, so once its writes back up it stops reading: what it
/// holds is bounded by the socket buffers. A connection that stays stuck like that is
/// closed by the idle timeout, and the gateway never queues an ACK per frame received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_without_reading_acks_is_bounded_and_closed() {
    let gw = Gateway::start(false).await;
    let before = gw.rss_kib();
    // A small receive buffer, so the gateway's ACKs back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket
        .connect(gw.http_addr().parse().unwrap())
        .await
        .unwrap();
    s.write_all(&opening()).await.unwrap();
    // SETTINGS_ENABLE_PUSH = 0: valid, harmless, and each one needs an ACK.
    let mut one = Vec::new();
    one.extend_from_slice(&0x2u16.to_be_bytes());
    one.extend_from_slice(&0u32.to_be_bytes());
    let settings = frame(SETTINGS, 0, 0, &one);
    let batch: Vec<u8> = settings.repeat(1000);
    const BATCHES: usize = 4_000;
    // Never read: write until the gateway closes the connection (the write fails) or the
    // bounded flood is all out.
    let mut written = 0usize;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        for _ in 0..BATCHES {
            if s.write_all(&batch).await.is_err() {
                return true;
            }
            written += 1;
        }
        false
    })
    .await;
    assert!(
        matches!(outcome, Ok(true)),
        "the gateway neither closed the stuck connection nor stopped reading: \
         {written} of {BATCHES} batches of 1000 SETTINGS written ({outcome:?})"
    );
    assert!(written < BATCHES);
    // What reached us before the close: ACKs, never more than were sent.
    let mut acks = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut acks)).await;
    gw.still_serves().await;
    let rss = gw.rss_kib();
    assert!(
        rss < before + RSS_BAND_KIB,
        "RSS grew from {before} KiB to {rss} KiB"
    );
}

/// The same flood from a client that reads: every SETTINGS is acknowledged, nothing piles
/// up, and a well-formed request on the same connection is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_acks_are_sent_one_per_frame_and_the_connection_still_works() {
    let gw = Gateway::start(false).await;
    let io = gw.h2c().await;
    let (mut r, mut w) = tokio::io::split(io);
    let mut one = Vec::new();
    one.extend_from_slice(&0x2u16.to_be_bytes());
    one.extend_from_slice(&0u32.to_be_bytes());
    let n = 2_000;
    let mut out = frame(SETTINGS, 0, 0, &one).repeat(n);
    out.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("/after-settings"),
    ));
    let writer = tokio::spawn(async move {
        w.write_all(&out).await.unwrap();
        w
    });
    let mut acks = 0usize;
    let mut answered = false;
    let read = async {
        loop {
            let mut head = [0u8; 9];
            r.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            r.read_exact(&mut payload).await.unwrap();
            match head[3] {
                SETTINGS if head[4] & ACK != 0 => acks += 1,
                HEADERS if u32::from_be_bytes(head[5..9].try_into().unwrap()) == 1 => {
                    answered = true;
                }
                DATA if head[4] & END_STREAM != 0 => return,
                GOAWAY => panic!("GOAWAY for a well-behaved client"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the request on the flooded connection was answered");
    let _w = writer.await.unwrap();
    assert!(answered);
    // One ACK for the opening SETTINGS and one for each of the flood's.
    assert_eq!(acks, n + 1);
    assert_eq!(gw.upstream_saw("/after-settings"), 1);
}
