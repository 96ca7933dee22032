//! S3's additional checksums: CRC64NVME (the AWS SDKs' default), sent with
//! every object write and every part so that the server verifies what it
//! stores (and buckets with Object Lock, which refuse writes without one,
//! take them); and checked on reads, a ranged download's ranges combined
//! into the object's CRC.

use base64::Engine as _;
use crc_fast::{CrcAlgorithm, Digest};

/// The header a CRC64NVME value travels in.
pub(crate) const HEADER: &str = "x-amz-checksum-crc64nvme";
/// The algorithm's name in S3's headers and XML.
pub(crate) const ALGORITHM: &str = "CRC64NVME";

/// The CRC64NVME of `data`, as S3 writes it: base64 of the 8 big-endian bytes.
pub(crate) fn of(data: &[u8]) -> String {
    encode(crc(data))
}

/// The CRC64NVME of `data` as a number.
pub(crate) fn crc(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data)
}

/// The CRC64NVME of `A || B` from that of `A`, that of `B` and the length of `B`.
pub(crate) fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc64Nvme, crc_a, crc_b, len_b)
}

/// A CRC64NVME as S3 writes it: base64 of the 8 big-endian bytes.
pub(crate) fn encode(crc: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// The object's own CRC64NVME from an answer's headers, if it has a
/// full-object one. A `COMPOSITE` checksum (the checksum of the parts'
/// checksums, written `...-N`) is no CRC of the bytes and cannot be
/// combined from ranges: it is left unchecked. So is a value that is not
/// 8 bytes of base64 (moto 5.2.1 answers a multipart object's with 4): no
/// CRC64NVME at all, so no evidence of corruption.
pub(crate) fn full_object(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let value = headers.get(HEADER)?.to_str().ok()?;
    let composite = headers
        .get("x-amz-checksum-type")
        .is_some_and(|t| t.as_bytes().eq_ignore_ascii_case(b"COMPOSITE"));
    let crc64 = base64::engine::general_purpose::STANDARD
        .decode(value)
        .is_ok_and(|b| b.len() == 8);
    if !crc64 && !composite && !value.contains('-') {
        tracing::debug!(
            value,
            "the server's {HEADER} is not a CRC64NVME; not checked"
        );
    }
    (!composite && crc64).then(|| value.to_owned())
}

/// The CRC64NVMEs of an object's ranges, gathered in any order and
/// combined into the whole's.
#[derive(Debug, Default)]
pub(crate) struct Ranges(Vec<(u64, u64, u64)>);

impl Ranges {
    /// Adds the CRC of the `len` bytes at `offset`.
    pub(crate) fn add(&mut self, offset: u64, len: u64, crc: u64) {
        self.0.push((offset, len, crc));
    }

    /// The bytes the ranges hold together.
    pub(crate) fn len(&self) -> u64 {
        self.0.iter().map(|&(_, len, _)| len).sum()
    }

    /// The CRC of `0..total`, or `None` when the ranges do not tile it
    /// exactly (a gap or an overlap).
    pub(crate) fn whole(mut self, total: u64) -> Option<u64> {
        self.0
            .sort_unstable_by_key(|&(offset, len, _)| (offset, len));
        let mut end = 0;
        let mut sum = crc(b"");
        for (offset, len, c) in self.0 {
            if offset != end {
                return None;
            }
            sum = combine(sum, c, len);
            end += len;
        }
        (end == total).then_some(sum)
    }
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

    #[test]
    fn ranges_combine_into_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut r = Ranges::default();
        // Out of order, one of them empty.
        for (a, b) in [
            (4096, 9000),
            (0, 1),
            (9000, 9000),
            (1, 4096),
            (9000, 10_000),
        ] {
            r.add(a as u64, (b - a) as u64, crc(&data[a..b]));
        }
        assert_eq!(r.whole(10_000), Some(crc(&data)));
        assert_eq!(encode(crc(&data)), of(&data));
        assert_eq!(
            combine(crc(b"12345"), crc(b"6789"), 4),
            0xAE8B_1486_0A79_9888
        );
        assert_eq!(Ranges::default().whole(0), Some(crc(b"")));
    }

    #[test]
    fn ranges_that_do_not_tile_the_object_have_no_whole() {
        let data = [7u8; 100];
        let piece = |a: usize, b: usize| (a as u64, (b - a) as u64, crc(&data[a..b]));
        let cases: [&[(u64, u64, u64)]; 3] = [
            &[piece(0, 40), piece(50, 100)], // a gap
            &[piece(0, 60), piece(50, 100)], // an overlap
            &[piece(0, 40), piece(40, 90)],  // short of the end
        ];
        for pieces in cases {
            let mut r = Ranges::default();
            for &(o, l, c) in pieces {
                r.add(o, l, c);
            }
            assert_eq!(r.whole(100), None, "{pieces:?}");
        }
    }

    #[test]
    fn only_full_object_checksums_are_taken() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert_eq!(full_object(&h), None);
        h.insert(HEADER, HeaderValue::from_static("rosYbCxVqtw="));
        assert_eq!(full_object(&h).as_deref(), Some("rosYbCxVqtw="));
        h.insert(
            "x-amz-checksum-type",
            HeaderValue::from_static("FULL_OBJECT"),
        );
        assert_eq!(full_object(&h).as_deref(), Some("rosYbCxVqtw="));
        h.insert("x-amz-checksum-type", HeaderValue::from_static("COMPOSITE"));
        assert_eq!(full_object(&h), None);
        h.remove("x-amz-checksum-type");
        h.insert(HEADER, HeaderValue::from_static("rosYbCxVqtw=-3"));
        assert_eq!(full_object(&h), None);
        // Not 8 bytes: no CRC64NVME, whatever the server calls it.
        h.insert(HEADER, HeaderValue::from_static("arfwqQ=="));
        assert_eq!(full_object(&h), None);
        h.insert(HEADER, HeaderValue::from_static("not base64!"));
        assert_eq!(full_object(&h), None);
    }

    proptest::proptest! {
        #[test]
        fn combining_any_split_is_the_whole_crc(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
            cuts in proptest::collection::vec(0usize..4096, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.extend([0, data.len()]);
            cuts.sort_unstable();
            let mut r = Ranges::default();
            for w in cuts.windows(2).rev() {
                r.add(w[0] as u64, (w[1] - w[0]) as u64, crc(&data[w[0]..w[1]]));
            }
            proptest::prop_assert_eq!(r.whole(data.len() as u64), Some(crc(&data)));
        }
    }
}
