//! `moto_server` (pip `moto[server]`) on a loopback port: the second S3
//! implementation the integration tests run against (it also serves STS).
//! It checks no signatures unless told to; s3s-fs is the one that does.
//!
//! Where `moto_server` is not installed a test skips itself with a note,
//! unless `CCWS_REQUIRE_MOTO` is set (CI sets it), when that is a failure.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccws::s3::{S3Client, S3Config, S3ConfigBuilder};
use ccws::store::Store;

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// Starts one, or `None` (with a note on stderr) when `moto_server` is
    /// not installed and `CCWS_REQUIRE_MOTO` is unset.
    pub fn start() -> Option<Moto> {
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let why = "moto_server is not installed (pip install 'moto[server]')";
                    if std::env::var_os("CCWS_REQUIRE_MOTO").is_some() {
                        panic!("{why}, and CCWS_REQUIRE_MOTO is set");
                    }
                    eprintln!("{why}; skipped");
                    return None;
                }
                Err(e) => panic!("spawning moto_server: {e}"),
            };
            let addr = (Ipv4Addr::LOCALHOST, port).into();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Moto {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (S3 and STS alike).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A path-style config for `bucket` on this server, with fast test retries.
    pub fn config(&self, bucket: &str) -> S3ConfigBuilder {
        self.config_for(bucket, &self.endpoint)
    }

    /// As [`Moto::config`], against another endpoint (e.g. a fault proxy in front).
    pub fn config_for(&self, bucket: &str, endpoint: &str) -> S3ConfigBuilder {
        S3Config::builder(endpoint, "us-east-1", bucket, "AK", "SK")
            .path_style(true)
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(5))
            .retry(crate::s3s::test_retry())
    }

    /// An S3 store on a new bucket of this server.
    pub async fn store(&self, bucket: &str) -> Store {
        let client = S3Client::new(self.config(bucket).build().unwrap()).unwrap();
        client.create_bucket().await.unwrap();
        Store::S3(client)
    }

    /// The ids of `bucket`'s multipart uploads in progress (`ListMultipartUploads`, unsigned:
    /// moto does not check signatures).
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            conn,
            "GET /{bucket}?uploads HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
            .split("<UploadId>")
            .skip(1)
            .filter_map(|s| s.split_once("</UploadId>").map(|(id, _)| id.to_owned()))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
