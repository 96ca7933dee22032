//! Why a transport failed, in words: an error and its sources, and whether
//! it is the TLS stack refusing the server's certificate. Shared by the S3
//! client and the credential providers' HTTP calls.

/// `e` and its sources, `: `-separated (reqwest's own message is often just "builder error").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    message
}

/// Whether `e` is the TLS stack refusing the server's certificate. (rustls's
/// error sits inside nested `io::Error`s, whose `source()` skips them.)
pub(crate) fn refused_certificate(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}
