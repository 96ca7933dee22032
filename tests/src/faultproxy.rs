//! A loopback HTTP/1.1 proxy that injects faults into chosen requests.
//!
//! Each accepted connection carries one request: the proxy reads its head, picks the first
//! [`Rule`] that matches and still has uses left, and applies its [`Fault`] (or forwards the
//! request untouched). Upstream requests get `Connection: close`, so the response is relayed
//! until the server closes, and the proxy answers with `Connection: close` too; the client
//! then opens one connection per request, which keeps faults scoped to one request.
//!
//! [`FaultProxy::start_serialised`] also makes each write of a key atomic, as S3's are:
//! s3s-fs 0.14.1 checks `If-Match` / `If-None-Match` before it streams the body, without a
//! lock, so two racing conditional PUTs can both pass there; and a GET racing a write can
//! answer one version's bytes with another's ETag. The serialising proxy holds a per-key
//! lock from the arrival of a request until its answer is relayed: exclusive for a write
//! (object PUT or copy, CompleteMultipartUpload, DELETE), shared for a GET or HEAD. A
//! condition is then checked against the object as the previous write left it, exactly one
//! of racing writers wins, and a read sees one version whole.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Reset the connection (RST) right after reading the request head.
    Reset,
    /// Answer this status with an S3 XML error body of this code, without forwarding.
    Error {
        /// HTTP status.
        status: u16,
        /// S3 error code, e.g. `SlowDown`, `InternalError`.
        code: String,
    },
    /// Forward, then answer `200 OK` whose body is an S3 `<Error>` of this code instead of the
    /// server's answer (as S3 may do for CompleteMultipartUpload).
    OkWithError {
        /// S3 error code.
        code: String,
    },
    /// Don't forward; answer 200 with an `<Error>` body (the request never reaches the server).
    OkWithErrorNotForwarded {
        /// S3 error code.
        code: String,
    },
    /// Forward, relay the response head and `after` body bytes, then close the connection.
    CutBody {
        /// Body bytes relayed before closing.
        after: usize,
    },
    /// Forward, relay the head and `after` body bytes, then stall for `stall` before closing.
    StallBody {
        /// Body bytes relayed before stalling.
        after: usize,
        /// How long to stall.
        stall: Duration,
    },
    /// Stall for this long before forwarding anything (no response at all), then close.
    StallBeforeResponse(Duration),
    /// Forward, wait for the server's whole answer, then reset the connection instead of
    /// relaying it: the request took effect, but its answer was lost.
    LoseAnswer,
    /// Forward, and relay the answer with the body byte at this offset flipped (bits
    /// inverted): corruption in transit that no length check sees.
    FlipByte {
        /// Offset in the response body.
        at: usize,
    },
    /// Forward the request head at once, but its body only once the gate is opened: the
    /// server has begun the request and waits for its body.
    HoldBody(Gate),
}

/// What a [`Fault::HoldBody`] waits on; opened once, by any of its clones.
#[derive(Clone)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Opens it: held bodies flow, and later ones are not held.
    pub fn open(&self) {
        self.0.close();
    }

    async fn passed(&self) {
        // A closed semaphore is an open gate: acquiring fails at once.
        let _ = self.0.acquire().await;
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = if self.0.is_closed() { "open" } else { "closed" };
        write!(f, "Gate({open})")
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// A fault for requests that match `method` and whose target (path + query) contains
/// `target_contains`; applied `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    /// HTTP method to match (`None`: any).
    pub method: Option<String>,
    /// Substring of the request target to match (`None`: any).
    pub target_contains: Option<String>,
    /// Substring of the lower-cased request head to match, e.g. `range: bytes=0-` (`None`: any).
    pub head_contains: Option<String>,
    /// The fault.
    pub fault: Fault,
    /// Uses left.
    pub times: usize,
}

impl Rule {
    /// A rule for any request, `times` times.
    pub fn any(fault: Fault, times: usize) -> Rule {
        Rule {
            method: None,
            target_contains: None,
            head_contains: None,
            fault,
            times,
        }
    }

    /// A rule for `method` requests whose target contains `target` (`""` for any target).
    pub fn on(method: &str, target: &str, fault: Fault, times: usize) -> Rule {
        Rule {
            method: Some(method.to_string()),
            target_contains: (!target.is_empty()).then(|| target.to_string()),
            head_contains: None,
            fault,
            times,
        }
    }
}

impl Rule {
    /// Also requires the lower-cased request head to contain `needle`.
    pub fn with_head(mut self, needle: &str) -> Rule {
        self.head_contains = Some(needle.to_ascii_lowercase());
        self
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target (path and query, as sent).
    pub target: String,
    /// Fault applied, if any.
    pub fault: Option<Fault>,
    /// The request head as received (test-only: it holds the request's signature).
    pub head: String,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    /// Per-key locks; `None`: requests are not serialised.
    writes: Option<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

/// A key's lock, held (never read) for one request.
#[allow(dead_code)]
enum Held {
    Read(tokio::sync::OwnedRwLockReadGuard<()>),
    Write(tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// Whether `method` on `target` writes the object `target` names (not a part, which is
/// written under its upload, nor a bucket operation).
fn writes_key(method: &str, target: &str) -> bool {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let has = |param: &str| {
        query
            .split('&')
            .any(|kv| kv == param || kv.starts_with(&format!("{param}=")))
    };
    match method {
        "PUT" => !has("partNumber") && !has("uploadId"),
        "POST" => has("uploadId"),
        "DELETE" => !has("uploadId") && !has("delete"),
        _ => false,
    }
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        Self::start_with(upstream, State::default()).await
    }

    /// As [`FaultProxy::start`], with each key's writes made atomic (see the module docs).
    pub async fn start_serialised(upstream: SocketAddr) -> FaultProxy {
        let state = State {
            writes: Some(HashMap::new()),
            ..State::default()
        };
        Self::start_with(upstream, state).await
    }

    async fn start_with(upstream: SocketAddr, state: State) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(state));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = handle(conn, upstream, st).await;
                });
            }
        });
        FaultProxy { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule (rules are tried in the order added).
    pub fn push(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Uses left over all rules (0 = every scripted fault fired).
    pub fn remaining(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.times)
            .sum()
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Number of requests that got a fault.
    pub fn faults_applied(&self) -> usize {
        self.seen().iter().filter(|s| s.fault.is_some()).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads until the end of the head; returns (head, extra bytes already read past it).
async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = find_head_end(&buf) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok(Some((head, buf[end..].to_vec())));
        }
        let n = conn.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > 1 << 20 {
            return Ok(None);
        }
    }
}

fn error_response(status: u16, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by faultproxy</Message><RequestId>FAULTPROXY</RequestId></Error>"
    );
    let reason = match status {
        200 => "OK",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n{body}",
        body.len(),
        httpdate_now()
    )
    .into_bytes()
}

fn httpdate_now() -> String {
    // RFC 7231 IMF-fixdate, computed without extra dependencies.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} GMT")
}

/// Copies exactly `n` bytes (minus what was already read) of the request body.
async fn forward_body(
    client: &mut TcpStream,
    upstream: Option<&mut TcpStream>,
    already: &[u8],
    mut n: usize,
) -> std::io::Result<()> {
    let mut upstream = upstream;
    let first = already.len().min(n);
    if let Some(u) = upstream.as_deref_mut() {
        u.write_all(&already[..first]).await?;
    }
    n -= first;
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = n.min(buf.len());
        let got = client.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(u) = upstream.as_deref_mut() {
            u.write_all(&buf[..got]).await?;
        }
        n -= got;
    }
    Ok(())
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let Some((head, extra)) = read_head(&mut client).await? else {
        return Ok(());
    };
    let first_line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = first_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    assert!(
        header_value(&head, "transfer-encoding").is_none(),
        "faultproxy: chunked requests are not supported"
    );
    let body_len: usize = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);

    let head_lower = head.to_ascii_lowercase();
    // Held until this function returns: the answer has been relayed.
    let key_lock = {
        let mut st = state.lock().unwrap();
        let key = target.split('?').next().unwrap_or_default().to_owned();
        st.writes
            .as_mut()
            .map(|locks| locks.entry(key).or_default().clone())
    };
    let _held = match key_lock {
        Some(l) if writes_key(&method, &target) => Some(Held::Write(l.write_owned().await)),
        Some(l) if matches!(method.as_str(), "GET" | "HEAD") => {
            Some(Held::Read(l.read_owned().await))
        }
        _ => None,
    };
    let fault = {
        let mut st = state.lock().unwrap();
        let fault = st
            .rules
            .iter_mut()
            .find(|r| {
                r.times > 0
                    && r.method.as_ref().is_none_or(|m| *m == method)
                    && r.target_contains
                        .as_ref()
                        .is_none_or(|t| target.contains(t.as_str()))
                    && r.head_contains
                        .as_ref()
                        .is_none_or(|h| head_lower.contains(h.as_str()))
            })
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            });
        st.seen.push(Seen {
            method: method.clone(),
            target: target.clone(),
            fault: fault.clone(),
            head: head.clone(),
        });
        fault
    };

    match &fault {
        Some(Fault::Reset) => {
            client.set_zero_linger()?;
            drop(client);
            return Ok(());
        }
        Some(Fault::Error { status, code }) => {
            forward_body(&mut client, None, &extra, body_len).await?;
            client.write_all(&error_response(*status, code)).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Some(Fault::OkWithErrorNotForwarded { code }) => {
            forward_body(&mut client, None, &extra, body_len).await?;
            client.write_all(&error_response(200, code)).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Some(Fault::StallBeforeResponse(d)) => {
            forward_body(&mut client, None, &extra, body_len).await?;
            tokio::time::sleep(*d).await;
            return Ok(());
        }
        _ => {}
    }

    // Forward with Connection: close.
    let mut up = TcpStream::connect(upstream).await?;
    let mut new_head = String::new();
    for (i, line) in head.trim_end_matches("\r\n").split("\r\n").enumerate() {
        if i > 0 {
            let name = line.split(':').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
        }
        new_head.push_str(line);
        new_head.push_str("\r\n");
    }
    new_head.push_str("connection: close\r\n\r\n");
    up.write_all(new_head.as_bytes()).await?;
    if let Some(Fault::HoldBody(gate)) = &fault {
        up.flush().await?;
        gate.passed().await;
    }
    forward_body(&mut client, Some(&mut up), &extra, body_len).await?;

    // Relay the response.
    let mut buf = vec![0u8; 64 * 1024];
    let mut resp_head: Vec<u8> = Vec::new();
    let mut body_sent = 0usize;
    let mut head_done = false;
    let limit = match &fault {
        Some(Fault::CutBody { after }) | Some(Fault::StallBody { after, .. }) => Some(*after),
        _ => None,
    };
    loop {
        let n = up.read(&mut buf).await?;
        if n == 0 {
            if !head_done && !resp_head.is_empty() {
                client.write_all(&resp_head).await?;
            }
            break;
        }
        let chunk: Vec<u8> = if !head_done {
            resp_head.extend_from_slice(&buf[..n]);
            let Some(end) = find_head_end(&resp_head) else {
                continue;
            };
            head_done = true;
            let rest = resp_head.split_off(end);
            if fault == Some(Fault::LoseAnswer) {
                // Read the server's answer to its end (the request took effect), then reset.
                while up.read(&mut buf).await? > 0 {}
                client.set_zero_linger()?;
                drop(client);
                return Ok(());
            }
            if let Some(Fault::OkWithError { code }) = &fault {
                // Replace the server's answer (the request did reach it).
                client.write_all(&error_response(200, code)).await?;
                client.shutdown().await?;
                return Ok(());
            }
            // Upstream got `Connection: close`, so its head already says `connection: close`.
            client.write_all(&resp_head).await?;
            rest
        } else {
            buf[..n].to_vec()
        };
        let chunk = &chunk[..];
        if let Some(max) = limit {
            let room = max.saturating_sub(body_sent);
            let take = room.min(chunk.len());
            client.write_all(&chunk[..take]).await?;
            body_sent += take;
            if body_sent >= max {
                client.flush().await?;
                if let Some(Fault::StallBody { stall, .. }) = &fault {
                    tokio::time::sleep(*stall).await;
                }
                return Ok(());
            }
        } else if let Some(Fault::FlipByte { at }) = &fault {
            let mut chunk = chunk.to_vec();
            if (body_sent..body_sent + chunk.len()).contains(at) {
                chunk[at - body_sent] ^= 0xff;
            }
            client.write_all(&chunk).await?;
            body_sent += chunk.len();
        } else {
            client.write_all(chunk).await?;
            body_sent += chunk.len();
        }
    }
    client.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_of_a_key_are_told_from_other_requests() {
        use super::writes_key;
        for (method, target, writes) in [
            ("PUT", "/b/k", true),
            ("PUT", "/b/k?x-id=PutObject", true),
            ("PUT", "/b/k?partNumber=1&uploadId=u", false),
            ("POST", "/b/k?uploadId=u", true),
            ("POST", "/b/k?uploads", false),
            ("POST", "/b?delete", false),
            ("DELETE", "/b/k", true),
            ("DELETE", "/b/k?uploadId=u", false),
            ("GET", "/b/k", false),
            ("HEAD", "/b/k", false),
        ] {
            assert_eq!(writes_key(method, target), writes, "{method} {target}");
        }
    }

    #[test]
    fn http_date_format() {
        let d = super::httpdate_now();
        assert!(d.ends_with(" GMT") && d.len() == 29, "{d}");
    }
}
