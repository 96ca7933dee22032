//! A real, SigV4-verifying S3 server for tests: `s3s-fs` on a loopback port, in a temp dir.
//!
//! The binary is found via `S3S_FS_BIN`, then `PATH`, then `~/.cargo/bin`. Install it with
//! `cargo install s3s-fs@0.14.1 --features binary --locked`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccws::s3::{RetryConfig, S3Client, S3Config, S3ConfigBuilder};
use rand::distr::{Alphanumeric, SampleString};

/// Locates the `s3s-fs` binary or panics with installation instructions.
pub fn s3s_fs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "S3S_FS_BIN={} is not a file", p.display());
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("s3s-fs");
            if p.is_file() {
                return p;
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cargo/bin/s3s-fs");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "s3s-fs not found (looked at $S3S_FS_BIN, $PATH and ~/.cargo/bin). Install it with: \
         cargo install s3s-fs@0.14.1 --features binary --locked"
    );
}

/// Options for [`S3sServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct S3sOptions {
    /// Domain for virtual-hosted-style requests, e.g. `localhost` (passed as
    /// `--domain localhost:PORT`, since s3s matches the Host header with its port).
    pub domain: Option<String>,
}

/// A running `s3s-fs` with one bucket; killed and its directory removed on drop.
pub struct S3sServer {
    child: Child,
    dir: tempfile::TempDir,
    /// Loopback address the server listens on.
    pub addr: SocketAddr,
    /// Access key id the server accepts.
    pub access_key: String,
    /// Secret the server accepts.
    pub secret_key: String,
    /// The bucket created at start.
    pub bucket: String,
    /// The virtual-host domain, if enabled.
    pub domain: Option<String>,
}

impl S3sServer {
    /// Starts a path-style server with a fresh bucket.
    pub async fn start() -> S3sServer {
        Self::start_with(S3sOptions::default()).await
    }

    /// Starts a server with options and creates its bucket.
    pub async fn start_with(opts: S3sOptions) -> S3sServer {
        let bin = s3s_fs_bin();
        let mut rng = rand::rng();
        let access_key = format!("AK{}", Alphanumeric.sample_string(&mut rng, 16)).to_uppercase();
        let secret_key = Alphanumeric.sample_string(&mut rng, 32);
        let bucket = format!(
            "ccws-test-{}",
            Alphanumeric.sample_string(&mut rng, 8).to_lowercase()
        );
        let mut last_err = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("ccws-s3s-")
                .tempdir()
                .expect("temp dir");
            let data = dir.path().join("data");
            std::fs::create_dir(&data).unwrap();
            let port = {
                let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                l.local_addr().unwrap().port()
            };
            let mut cmd = Command::new(&bin);
            cmd.arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string())
                .arg("--access-key")
                .arg(&access_key)
                .arg("--secret-key")
                .arg(&secret_key);
            if let Some(d) = &opts.domain {
                // s3s compares the whole Host header, port included.
                cmd.arg("--domain").arg(format!("{d}:{port}"));
            }
            let log = std::fs::File::create(dir.path().join("s3s-fs.log")).unwrap();
            cmd.arg(&data)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .env("RUST_LOG", "warn");
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut up = false;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    last_err = format!(
                        "s3s-fs exited with {status}: {}",
                        std::fs::read_to_string(dir.path().join("s3s-fs.log")).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                if last_err.is_empty() {
                    last_err = "s3s-fs did not answer within 15 s".into();
                }
                continue;
            }
            let server = S3sServer {
                child,
                dir,
                addr,
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
                bucket: bucket.clone(),
                domain: opts.domain.clone(),
            };
            server
                .client()
                .create_bucket()
                .await
                .expect("creating the test bucket");
            return server;
        }
        panic!("could not start s3s-fs: {last_err}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A path-style config for this server with short test timeouts and fast retries.
    pub fn config(&self) -> S3ConfigBuilder {
        self.config_for(&self.endpoint())
    }

    /// As [`S3sServer::config`], against another endpoint (e.g. a fault proxy in front).
    pub fn config_for(&self, endpoint: &str) -> S3ConfigBuilder {
        S3Config::builder(
            endpoint,
            "us-east-1",
            &self.bucket,
            &self.access_key,
            &self.secret_key,
        )
        .path_style(true)
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(5))
        .retry(test_retry())
    }

    /// A client with [`S3sServer::config`].
    pub fn client(&self) -> S3Client {
        S3Client::new(self.config().build().unwrap()).unwrap()
    }

    /// The server's data root (one directory per bucket, plus its upload bookkeeping).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The bucket's directory: objects are plain files under it.
    pub fn bucket_dir(&self) -> PathBuf {
        self.data_dir().join(&self.bucket)
    }

    /// Leftovers of multipart uploads (`.upload-*`, `.upload_id-*` files, per-upload metadata).
    /// Empty when no upload is in progress or orphaned.
    pub fn multipart_leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.data_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload") || n.contains(".upload-"))
            .collect();
        out.sort();
        out
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }
}

/// Fast retries for tests: 4 attempts, 10 ms .. 100 ms backoff.
pub fn test_retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
