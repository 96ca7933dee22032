//! S3's additional checksums: CRC64NVME (the AWS SDKs' default), sent with
//! every object write and every part so that the server verifies what it
//! stores (and buckets with Object Lock, which refuse writes without one,
//! take them).

use base64::Engine as _;
use crc_fast::{CrcAlgorithm, Digest};

/// The header a CRC64NVME value travels in.
pub(crate) const HEADER: &str = "x-amz-checksum-crc64nvme";
/// The algorithm's name in S3's headers and XML.
pub(crate) const ALGORITHM: &str = "CRC64NVME";

/// The CRC64NVME of `data`, as S3 writes it: base64 of the 8 big-endian bytes.
pub(crate) fn of(data: &[u8]) -> String {
    encode(crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data))
}

fn encode(crc: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// A running CRC64NVME of a whole object, fed in order.
pub(crate) struct Running(Digest);

impl Running {
    pub(crate) fn new() -> Self {
        Running(Digest::new(CrcAlgorithm::Crc64Nvme))
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The value so far, as S3 writes it.
    pub(crate) fn value(&self) -> String {
        encode(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_a_running_sum() {
        // CRC-64/NVME's check value ("123456789") is 0xAE8B14860A799888.
        assert_eq!(
            crc_fast::checksum(CrcAlgorithm::Crc64Nvme, b"123456789"),
            0xAE8B_1486_0A79_9888
        );
        assert_eq!(of(b""), "AAAAAAAAAAA=");
        let mut r = Running::new();
        r.update(b"12345");
        r.update(b"6789");
        assert_eq!(r.value(), of(b"123456789"));
    }
}
