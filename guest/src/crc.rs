//! CRC-32, the gzip checksum. Built natively it is `crc32fast`'s
//! carry-less-multiply kernel. In the ccws component (the `archiver` world)
//! the host computes it through the `checksum` import, with that same
//! kernel: wasm has no carry-less multiply, and zlib-rs's table loop compiled
//! by Cranelift is far slower (BENCHMARKS.md has the figures). The
//! `archiver-plain` component, which imports nothing but WASI, computes it
//! itself with zlib-rs.

/// A running CRC-32 and the length it covers (mod 2^32): what a gzip
/// trailer holds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Crc32 {
    sum: u32,
    amount: u32,
}

impl Crc32 {
    /// Add `data`.
    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.sum = crc32(self.sum, data);
        self.amount = self.amount.wrapping_add(data.len() as u32);
    }

    /// The CRC-32 of everything added.
    pub fn sum(&self) -> u32 {
        self.sum
    }

    /// How many bytes were added, mod 2^32 (gzip's ISIZE).
    pub fn amount(&self) -> u32 {
        self.amount
    }
}

/// The CRC-32 of `data`, continuing from `crc` (0 to start).
#[cfg(not(target_arch = "wasm32"))]
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(crc);
    h.update(data);
    h.finalize()
}

/// The CRC-32 of `data`, continuing from `crc` (0 to start).
#[cfg(all(target_arch = "wasm32", feature = "host-imports"))]
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    crate::component::host_crc32(crc, data)
}

/// The CRC-32 of `data`, continuing from `crc` (0 to start).
#[cfg(all(target_arch = "wasm32", not(feature = "host-imports")))]
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    zlib_rs::crc32::crc32(crc, data)
}
