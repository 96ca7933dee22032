//! A small real HTTP/1.1 server on loopback for the AWS endpoints that hand
//! out credentials (EC2 instance metadata, the ECS / EKS container endpoint,
//! STS): each request is read whole (head and `Content-Length` body) and
//! answered by the test's handler, one request per connection. Stopped on
//! drop.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: String,
}

/// An answer: status, content type, body.
pub type Answer = (u16, &'static str, String);

type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

/// A running fake.
pub struct AwsFake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl AwsFake {
    /// Serve `handler` on a free loopback port.
    pub async fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> AwsFake {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut conn).await else {
                        return;
                    };
                    let (status, ctype, body) = handler(&req);
                    log.lock().unwrap().push(req);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        AwsFake { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request served so far.
    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests had a target starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .count()
    }
}

impl Drop for AwsFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An instance-metadata service (IMDSv2 only: a GET without the session
/// token gets 401) for the role `role`, handing out `keys` (access key,
/// secret) that expire `ttl` from each request.
pub fn imds(
    role: &'static str,
    keys: (String, String),
    ttl: time::Duration,
) -> impl Fn(&Request) -> Answer {
    move |r: &Request| {
        const TOKEN: &str = "imds-session-token";
        match (r.method.as_str(), r.target.as_str()) {
            ("PUT", "/latest/api/token")
                if r.headers
                    .contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
            {
                (200, "text/plain", TOKEN.into())
            }
            _ if r
                .headers
                .get("x-aws-ec2-metadata-token")
                .map(String::as_str)
                != Some(TOKEN) =>
            {
                (401, "text/plain", "token required".into())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                (200, "text/plain", role.into())
            }
            ("GET", t) if t == format!("/latest/meta-data/iam/security-credentials/{role}") => {
                (200, "application/json", credentials_json(&keys, ttl, true))
            }
            _ => (404, "text/plain", "not found".into()),
        }
    }
}

/// The JSON the metadata and container endpoints answer with.
pub fn credentials_json(keys: &(String, String), ttl: time::Duration, with_code: bool) -> String {
    let expiry = (time::OffsetDateTime::now_utc() + ttl)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let code = if with_code {
        r#""Code": "Success", "Type": "AWS-HMAC", "#
    } else {
        ""
    };
    format!(
        r#"{{{code}"AccessKeyId": "{}", "SecretAccessKey": "{}", "Token": "session-token-value", "Expiration": "{expiry}"}}"#,
        keys.0, keys.1
    )
}
