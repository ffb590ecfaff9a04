//! Compressed once: the encoded variants of a cached text file, made at the highest
//! levels (gzip 9, brotli 11, zstd 19) because the cost is paid once per file version,
//! not per request as in the `compression` layer (gzip 6, brotli 4, zstd 3 by default).
//!
//! They are made on the blocking pool, one file at a time per layer (a scan of many
//! files with `Accept-Encoding: br` cannot take more than one core), while the request
//! that asked goes on uncompressed and the `compression` layer above compresses it as
//! usual. Later requests get the variant from memory.

use std::io::{self, Write};

use crate::compression::Encoding;

/// The brotli window for `len` bytes of input: no larger than needed (10..=22 bits).
fn brotli_window(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1).leading_zeros();
    (bits + 1).clamp(10, 22)
}

/// `data` encoded with `encoding` at its highest level.
pub(crate) fn encode(encoding: Encoding, data: &[u8]) -> io::Result<Vec<u8>> {
    match encoding {
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 3),
                flate2::Compression::best(),
            );
            encoder.write_all(data)?;
            encoder.finish()
        }
        Encoding::Brotli => {
            let mut encoder = brotli::CompressorWriter::new(
                Vec::with_capacity(data.len() / 4),
                4096,
                11,
                brotli_window(data.len()),
            );
            encoder.write_all(data)?;
            encoder.flush()?;
            Ok(encoder.into_inner())
        }
        Encoding::Zstd => zstd::bulk::compress(data, 19),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_encoding_round_trips() {
        let text = "body { color: red; margin: 0 auto }\n".repeat(400);
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            let encoded = encode(encoding, text.as_bytes()).unwrap();
            assert!(encoded.len() < text.len() / 10, "{encoding:?}");
            let mut decoded = Vec::new();
            match encoding {
                Encoding::Gzip => {
                    flate2::read::GzDecoder::new(&encoded[..])
                        .read_to_end(&mut decoded)
                        .unwrap();
                }
                Encoding::Brotli => {
                    brotli::Decompressor::new(&encoded[..], 4096)
                        .read_to_end(&mut decoded)
                        .unwrap();
                }
                Encoding::Zstd => decoded = zstd::decode_all(&encoded[..]).unwrap(),
            }
            assert_eq!(decoded, text.as_bytes(), "{encoding:?}");
        }
        assert_eq!(brotli_window(0), 10);
        assert_eq!(brotli_window(14_000), 15);
        assert_eq!(brotli_window(100 << 20), 22);
    }
}
