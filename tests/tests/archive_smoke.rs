use ccws::archive::{PackOptions, UnpackOptions};
use ccws_tests::{archiver, tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_round_trip() {
    let a = archiver();
    let src = tempfile::tempdir().unwrap();
    tree::write(src.path(), "a/b.txt", b"hello");
    tree::write(src.path(), "run.sh", b"#!/bin/sh\necho hi\n");
    tree::make_executable(src.path(), "run.sh");
    let (report, bytes) = a
        .pack(src.path(), Vec::new(), &PackOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(report.files, 2);
    let dest = tempfile::tempdir().unwrap();
    let r2 = a
        .unpack(
            std::io::Cursor::new(bytes),
            dest.path(),
            &UnpackOptions::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r2.files, 2);
    assert_eq!(tree::snapshot(src.path()), tree::snapshot(dest.path()));
}
