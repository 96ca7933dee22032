//! One S3 server on loopback, of either implementation, for the tests that run against
//! both: `s3s-fs` (which verifies SigV4) and `moto` (a second implementation, which does
//! not). What only one of them can show (the files s3s-fs stores objects in) is an
//! `Option`.

use std::net::SocketAddr;
use std::path::PathBuf;

use ccws::s3::{S3Client, S3ConfigBuilder};

use crate::moto::Moto;
use crate::s3s::S3sServer;

/// The bucket the tests use on moto.
const MOTO_BUCKET: &str = "ccws-test";

/// A running server with one bucket; stopped when dropped.
pub enum TestServer {
    /// `s3s-fs`.
    S3s(S3sServer),
    /// `moto_server`.
    Moto(Moto),
}

impl TestServer {
    /// s3s-fs.
    pub async fn s3s() -> TestServer {
        TestServer::S3s(S3sServer::start().await)
    }

    /// moto, with its bucket made; `None` where it is not installed (see [`Moto::start`]).
    pub async fn moto() -> Option<TestServer> {
        let server = TestServer::Moto(Moto::start()?);
        server.client().create_bucket().await.unwrap();
        Some(server)
    }

    /// Which server this is.
    pub fn name(&self) -> &'static str {
        match self {
            TestServer::S3s(_) => "s3s-fs",
            TestServer::Moto(_) => "moto",
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        match self {
            TestServer::S3s(s) => s.addr,
            TestServer::Moto(m) => m.endpoint().trim_start_matches("http://").parse().unwrap(),
        }
    }

    /// A path-style config with short test timeouts and fast retries.
    pub fn config(&self) -> S3ConfigBuilder {
        match self {
            TestServer::S3s(s) => s.config(),
            TestServer::Moto(m) => m.config(MOTO_BUCKET),
        }
    }

    /// As [`TestServer::config`], against another endpoint (e.g. a fault proxy in front).
    pub fn config_for(&self, endpoint: &str) -> S3ConfigBuilder {
        match self {
            TestServer::S3s(s) => s.config_for(endpoint),
            TestServer::Moto(m) => m.config_for(MOTO_BUCKET, endpoint),
        }
    }

    /// A client with [`TestServer::config`].
    pub fn client(&self) -> S3Client {
        S3Client::new(self.config().build().unwrap()).unwrap()
    }

    /// The directory s3s-fs keeps the bucket's objects in, as plain files.
    pub fn bucket_dir(&self) -> Option<PathBuf> {
        match self {
            TestServer::S3s(s) => Some(s.bucket_dir()),
            TestServer::Moto(_) => None,
        }
    }

    /// Multipart uploads in progress or orphaned (empty when none is).
    pub fn multipart_leftovers(&self) -> Vec<String> {
        match self {
            TestServer::S3s(s) => s.multipart_leftovers(),
            TestServer::Moto(m) => m.multipart_uploads(MOTO_BUCKET),
        }
    }
}

/// For each `test`, a module of that name with one `#[tokio::test]` per server (`s3s_fs`,
/// `moto`), each calling `test(&server)`. Where moto is not installed its variant skips,
/// unless `CCWS_REQUIRE_MOTO` is set.
#[macro_export]
macro_rules! on_each_server {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use $crate::server::TestServer;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3s_fs() {
                super::$test(&TestServer::s3s().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn moto() {
                if let Some(server) = TestServer::moto().await {
                    super::$test(&server).await
                }
            }
        }
    )*};
}
