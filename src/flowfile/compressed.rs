//! Compressed flow files (gzip, zstd, bzip2, xz): recognised by their magic bytes and decompressed
//! once, at load, into memory that the recording then serves from (bodies stay zero-copy slices
//! of that buffer, as they are of a mapping).
#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Read, Write};

use thiserror::Error;

/// A compression format a flow file may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`mitmdump -w >(gzip > f.gz)`, `gzip f.flows`), one or more members.
    Gzip,
    /// Zstandard, one or more frames.
    Zstd,
    /// bzip2, one or more streams.
    Bzip2,
    /// xz.
    Xz,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        })
    }
}

/// Why a compressed file could not be decompressed.
#[derive(Debug, Error)]
pub enum DecompressError {
    /// It would grow past the bound (the machine's memory).
    #[error(
        "it decompresses to more than {limit} bytes, more than this machine's memory; \
         decompress it to a file and replay that file (it is then memory-mapped)"
    )]
    TooLarge {
        /// The bound, in bytes.
        limit: u64,
    },
    /// The compressed data is damaged or cut off.
    #[error("the compressed data is damaged or cut off: {0}")]
    Corrupt(String),
}

impl Compression {
    /// The compression of a file that starts with `bytes`, if any. Flow files start with an
    /// ASCII digit (a tnetstring length), so no magic below is ever a flow file's start.
    pub fn sniff(bytes: &[u8]) -> Option<Compression> {
        match bytes {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some(Compression::Bzip2),
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(Compression::Xz),
            _ => None,
        }
    }

    /// Decompresses all of `bytes` (every member, frame or stream, concatenated), refusing to
    /// grow past `limit` bytes.
    pub fn decompress(self, bytes: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
        let corrupt = |e: &dyn fmt::Display| DecompressError::Corrupt(e.to_string());
        // A guess that saves most regrowth for typical flow files (text-heavy, 3-6x).
        let guess = bytes.len().saturating_mul(4).min(limit as usize);
        let mut out = Bounded {
            out: Vec::with_capacity(guess),
            limit,
        };
        let result = match self {
            Compression::Gzip => copy(flate2::read::MultiGzDecoder::new(bytes), &mut out),
            Compression::Bzip2 => copy(bzip2::read::MultiBzDecoder::new(bytes), &mut out),
            Compression::Zstd => zstd_frames(bytes, &mut out),
            Compression::Xz => {
                let mut input = bytes;
                lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| match e {
                    lzma_rs::error::Error::IoError(io) => io,
                    other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
                })
            }
        };
        match result {
            Ok(()) => {
                let mut bytes = out.out;
                bytes.shrink_to_fit();
                Ok(bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                Err(DecompressError::TooLarge { limit })
            }
            Err(e) => Err(corrupt(&e)),
        }
    }
}

/// Every frame of a zstd stream (skippable frames skipped), as the `zstd` tool reads it.
fn zstd_frames(bytes: &[u8], out: &mut Bounded) -> io::Result<()> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    let mut input = bytes;
    while !input.is_empty() {
        match ruzstd::decoding::StreamingDecoder::new(&mut input) {
            Ok(mut frame) => copy(&mut frame, out)?,
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = usize::try_from(length)
                    .ok()
                    .and_then(|n| input.get(n..))
                    .ok_or_else(|| invalid("a skippable frame runs past the end"))?;
            }
            Err(e) => return Err(invalid(&e.to_string())),
        }
    }
    Ok(())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn copy(mut from: impl Read, to: &mut Bounded) -> io::Result<()> {
    io::copy(&mut from, to).map(|_| ())
}

/// A growing buffer that fails with `OutOfMemory` instead of growing past `limit`.
struct Bounded {
    out: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() as u64 + buf.len() as u64 > self.limit {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "over the bound"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOWS: &[u8] = b"5:hello,";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn magic_bytes_name_the_format_and_flow_files_have_none() {
        assert_eq!(Compression::sniff(&gzip(FLOWS)), Some(Compression::Gzip));
        assert_eq!(Compression::sniff(b"BZh91AY&SY"), Some(Compression::Bzip2));
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::sniff(b"\xfd7zXZ\x00\x00"),
            Some(Compression::Xz)
        );
        assert_eq!(Compression::sniff(FLOWS), None);
        assert_eq!(Compression::sniff(b""), None);
    }

    #[test]
    fn concatenated_gzip_members_decompress_whole() {
        let mut two = gzip(b"5:hello,");
        two.extend(gzip(b"5:world,"));
        assert_eq!(
            Compression::Gzip.decompress(&two, 1 << 20).unwrap(),
            b"5:hello,5:world,"
        );
    }

    #[test]
    fn growth_past_the_bound_is_refused() {
        let big = gzip(&vec![b'x'; 100_000]);
        let e = Compression::Gzip.decompress(&big, 99_999).unwrap_err();
        assert!(
            matches!(e, DecompressError::TooLarge { limit: 99_999 }),
            "{e}"
        );
        assert_eq!(
            Compression::Gzip.decompress(&big, 100_000).unwrap().len(),
            100_000
        );
    }

    #[test]
    fn a_cut_off_file_is_named_damaged() {
        let g = gzip(&vec![b'y'; 10_000]);
        let e = Compression::Gzip
            .decompress(&g[..g.len() / 2], 1 << 20)
            .unwrap_err();
        assert!(matches!(e, DecompressError::Corrupt(_)), "{e}");
    }
}
