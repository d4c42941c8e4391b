//! Moving a document between sites in verified blocks (the pure part of
//! job roaming's transfer).
//!
//! The origin describes the document first with a [`Manifest`]: its size,
//! its SHA-256, and the SHA-256 of every block of [`BLOCK_SIZE`] bytes
//! ([`ManifestBuilder`] makes one in a single streaming pass). The receiver
//! ([`Receiver`]) asks for the blocks it lacks, at most `window` at a time
//! (so the sender, and whatever relays between them, never holds more than
//! the window), verifies each block against the manifest before it counts,
//! and after a broken connection or a restart asks only for what is not yet
//! verified: [`verified_blocks`] re-checks a partial file against the
//! manifest, so no separate record of progress is needed. Each block
//! travels behind a fixed 18-byte [`BlockHeader`]; its payload is zstd
//! only when that shrinks it.

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes per block (the last one may be shorter).
pub const BLOCK_SIZE: u32 = 1 << 20;
/// Largest document a manifest may describe (blocks are numbered in u32).
pub const MAX_BLOCKS: u64 = 1 << 24;

/// Why a transfer step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The manifest contradicts itself.
    #[error("manifest unusable: {0}")]
    BadManifest(String),
    /// A block that was not asked for, or is not in the document.
    #[error("block {0} was not asked for")]
    Unexpected(u32),
    /// A block whose bytes do not match the manifest.
    #[error("block {index} does not match the manifest ({why})")]
    Corrupt {
        /// The block.
        index: u32,
        /// Length or hash.
        why: String,
    },
    /// A block header that is not one.
    #[error("block header unusable: {0}")]
    BadHeader(String),
}

/// What the origin says of a document before sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Bytes in the document.
    pub size: u64,
    /// SHA-256 of the whole document, hex.
    pub sha256: String,
    /// Bytes per block.
    pub block_size: u32,
    /// SHA-256 of each block, hex, in order.
    pub blocks: Vec<String>,
}

impl Manifest {
    /// Checks that sizes, block count and hashes agree.
    pub fn check(&self) -> Result<(), TransferError> {
        let bad = |why: String| Err(TransferError::BadManifest(why));
        if self.block_size == 0 {
            return bad("block size 0".into());
        }
        let expected = self.size.div_ceil(u64::from(self.block_size));
        if expected > MAX_BLOCKS {
            return bad(format!(
                "{} bytes is more than {MAX_BLOCKS} blocks",
                self.size
            ));
        }
        if self.blocks.len() as u64 != expected {
            return bad(format!(
                "{} bytes in blocks of {} make {expected} blocks, not {}",
                self.size,
                self.block_size,
                self.blocks.len()
            ));
        }
        let is_hash = |h: &String| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hash(&self.sha256) || !self.blocks.iter().all(is_hash) {
            return bad("a hash is not 64 hex digits".into());
        }
        Ok(())
    }

    /// Blocks in the document.
    pub fn block_count(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// Where block `index` starts in the document.
    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.block_size)
    }

    /// Bytes in block `index` (0 past the end).
    pub fn block_len(&self, index: u32) -> u64 {
        let start = self.offset(index);
        self.size
            .saturating_sub(start)
            .min(u64::from(self.block_size))
    }

    /// Whether `data` is block `index`.
    pub fn verify(&self, index: u32, data: &[u8]) -> Result<(), TransferError> {
        let corrupt = |why: String| TransferError::Corrupt { index, why };
        let Some(expected) = self.blocks.get(index as usize) else {
            return Err(TransferError::Unexpected(index));
        };
        if data.len() as u64 != self.block_len(index) {
            return Err(corrupt(format!(
                "{} bytes instead of {}",
                data.len(),
                self.block_len(index)
            )));
        }
        if hex::encode(Sha256::digest(data)) != *expected {
            return Err(corrupt("hash differs".into()));
        }
        Ok(())
    }
}

/// Builds a [`Manifest`] from a document read once, front to back.
pub struct ManifestBuilder {
    block_size: u32,
    whole: Sha256,
    block: Sha256,
    in_block: u32,
    size: u64,
    blocks: Vec<String>,
}

impl ManifestBuilder {
    /// A builder for blocks of `block_size` bytes.
    pub fn new(block_size: u32) -> ManifestBuilder {
        ManifestBuilder {
            block_size: block_size.max(1),
            whole: Sha256::new(),
            block: Sha256::new(),
            in_block: 0,
            size: 0,
            blocks: Vec::new(),
        }
    }

    /// The next bytes of the document.
    pub fn update(&mut self, mut data: &[u8]) {
        self.whole.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            let room = (self.block_size - self.in_block) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.block.update(now);
            self.in_block += now.len() as u32;
            if self.in_block == self.block_size {
                let done = std::mem::replace(&mut self.block, Sha256::new());
                self.blocks.push(hex::encode(done.finalize()));
                self.in_block = 0;
            }
            data = rest;
        }
    }

    /// The manifest of everything given.
    pub fn finish(mut self) -> Manifest {
        if self.in_block > 0 {
            self.blocks.push(hex::encode(self.block.finalize()));
        }
        Manifest {
            size: self.size,
            sha256: hex::encode(self.whole.finalize()),
            block_size: self.block_size,
            blocks: self.blocks,
        }
    }

    /// The manifest of a whole reader, read in one pass.
    pub fn of_reader(block_size: u32, mut reader: impl Read) -> std::io::Result<Manifest> {
        let mut builder = ManifestBuilder::new(block_size);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(builder.finish());
            }
            builder.update(&buf[..n]);
        }
    }
}

/// The blocks of a partial copy (`reader`, the document's bytes so far,
/// with holes where blocks never arrived) that match the manifest: what a
/// receiver need not ask for again after a restart.
pub fn verified_blocks(manifest: &Manifest, mut reader: impl Read) -> std::io::Result<Vec<u32>> {
    let mut verified = Vec::new();
    let mut buf = vec![0u8; manifest.block_size as usize];
    for index in 0..manifest.block_count() {
        let want = manifest.block_len(index) as usize;
        let mut got = 0;
        while got < want {
            match reader.read(&mut buf[got..want])? {
                0 => return Ok(verified),
                n => got += n,
            }
        }
        if manifest.verify(index, &buf[..want]).is_ok() {
            verified.push(index);
        }
    }
    Ok(verified)
}

/// The receiving side of one transfer.
#[derive(Debug, Clone)]
pub struct Receiver {
    manifest: Manifest,
    verified: Vec<bool>,
    verified_count: u32,
    in_flight: BTreeSet<u32>,
    window: usize,
}

impl Receiver {
    /// A receiver of `manifest`'s document that has `verified` already and
    /// keeps at most `window` blocks asked for at once.
    pub fn new(
        manifest: Manifest,
        verified: impl IntoIterator<Item = u32>,
        window: usize,
    ) -> Result<Receiver, TransferError> {
        manifest.check()?;
        let mut marks = vec![false; manifest.block_count() as usize];
        let mut count = 0;
        for index in verified {
            if let Some(mark) = marks.get_mut(index as usize)
                && !*mark
            {
                *mark = true;
                count += 1;
            }
        }
        Ok(Receiver {
            manifest,
            verified: marks,
            verified_count: count,
            in_flight: BTreeSet::new(),
            window: window.max(1),
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Blocks to ask for now, lowest first: those neither verified nor
    /// asked for, as many as the window has room for. They count as asked
    /// for from here on.
    pub fn next_requests(&mut self) -> Vec<u32> {
        let room = self.window.saturating_sub(self.in_flight.len());
        let wanted: Vec<u32> = (0..self.manifest.block_count())
            .filter(|i| !self.verified[*i as usize] && !self.in_flight.contains(i))
            .take(room)
            .collect();
        self.in_flight.extend(&wanted);
        wanted
    }

    /// Block `index` arrived as `data` (decompressed). It counts once it
    /// matches the manifest; a corrupt block is asked for again.
    pub fn received(&mut self, index: u32, data: &[u8]) -> Result<(), TransferError> {
        if !self.in_flight.remove(&index) {
            return Err(TransferError::Unexpected(index));
        }
        self.manifest.verify(index, data)?;
        if let Some(mark) = self.verified.get_mut(index as usize)
            && !*mark
        {
            *mark = true;
            self.verified_count += 1;
        }
        Ok(())
    }

    /// Whether block `index` is verified.
    pub fn is_verified(&self, index: u32) -> bool {
        self.verified.get(index as usize).copied().unwrap_or(false)
    }

    /// The connection broke: nothing asked for will arrive; ask again.
    pub fn lost(&mut self) {
        self.in_flight.clear();
    }

    /// Whether every block is verified (then check the whole document's
    /// hash before printing).
    pub fn is_complete(&self) -> bool {
        self.verified_count == self.manifest.block_count()
    }

    /// Bytes verified so far.
    pub fn verified_bytes(&self) -> u64 {
        (0..self.manifest.block_count())
            .filter(|i| self.verified[*i as usize])
            .map(|i| self.manifest.block_len(i))
            .sum()
    }
}

/// What precedes a block's payload on its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// The transfer it belongs to.
    pub transfer: u64,
    /// The block.
    pub index: u32,
    /// The payload is zstd.
    pub compressed: bool,
    /// Payload bytes that follow.
    pub len: u32,
}

impl BlockHeader {
    /// Encoded size.
    pub const LEN: usize = 18;

    /// The stream priority a block travels with: earlier blocks first, so
    /// a window of blocks in flight arrives in order instead of all at the
    /// end together (QUIC would otherwise share the link among them).
    pub fn priority(&self) -> i32 {
        -(self.index.min(i32::MAX as u32) as i32)
    }
    const MAGIC: u8 = 0xB1;

    /// The header's bytes: magic, flags, transfer, index, length (big-endian).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = Self::MAGIC;
        out[1] = u8::from(self.compressed);
        out[2..10].copy_from_slice(&self.transfer.to_be_bytes());
        out[10..14].copy_from_slice(&self.index.to_be_bytes());
        out[14..18].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Reads a header; a payload longer than `max_len` is refused.
    pub fn decode(bytes: &[u8; Self::LEN], max_len: u32) -> Result<BlockHeader, TransferError> {
        let bad = |why: &str| Err(TransferError::BadHeader(why.into()));
        if bytes[0] != Self::MAGIC {
            return bad("not a block");
        }
        if bytes[1] > 1 {
            return bad("unknown flags");
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut transfer = [0u8; 8];
        transfer.copy_from_slice(&bytes[2..10]);
        let header = BlockHeader {
            transfer: u64::from_be_bytes(transfer),
            index: u32_at(10),
            compressed: bytes[1] == 1,
            len: u32_at(14),
        };
        if header.len > max_len {
            return bad("payload longer than a block");
        }
        Ok(header)
    }
}

/// Bytes of a block tried first: a block whose sample does not shrink is
/// sent as it is without compressing the rest (most print documents are
/// already compressed: PDF streams, JPEG, compressed rasters).
const PACK_SAMPLE: usize = 64 * 1024;

/// A block's payload: zstd when it saves an eighth, else the bytes as they are.
pub fn pack_block(data: &[u8]) -> (bool, Vec<u8>) {
    let saves =
        |original: &[u8], packed: &[u8]| packed.len() <= original.len() - original.len() / 8;
    if data.len() > 2 * PACK_SAMPLE {
        let sample = &data[..PACK_SAMPLE];
        match zstd::bulk::compress(sample, 1) {
            Ok(c) if saves(sample, &c) => {}
            _ => return (false, data.to_vec()),
        }
    }
    match zstd::bulk::compress(data, 1) {
        Ok(c) if saves(data, &c) => (true, c),
        _ => (false, data.to_vec()),
    }
}

/// Block `header.index`'s bytes from its payload; a compressed payload may
/// not expand past `block_size`.
pub fn unpack_block(
    header: &BlockHeader,
    payload: Vec<u8>,
    block_size: u32,
) -> Result<Vec<u8>, TransferError> {
    if !header.compressed {
        return Ok(payload);
    }
    zstd::bulk::decompress(&payload, block_size as usize).map_err(|e| TransferError::Corrupt {
        index: header.index,
        why: format!("zstd: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document of `len` bytes: compressible halves and random halves.
    fn document(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|i| {
                if (i / 1000) % 2 == 0 {
                    b'a' + (i % 7) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    /// `len` bytes that do not compress.
    fn doc_random(len: usize) -> Vec<u8> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn manifest(doc: &[u8], block: u32) -> Manifest {
        ManifestBuilder::of_reader(block, doc).unwrap()
    }

    #[test]
    fn a_manifest_built_in_any_pieces_is_the_same_and_checks() {
        let doc = document(10_500);
        let whole = manifest(&doc, 1000);
        assert_eq!((whole.size, whole.block_count()), (10_500, 11));
        assert_eq!(whole.block_len(10), 500);
        assert_eq!(whole.sha256, hex::encode(Sha256::digest(&doc)));
        whole.check().unwrap();
        let mut builder = ManifestBuilder::new(1000);
        for piece in doc.chunks(333) {
            builder.update(piece);
        }
        assert_eq!(builder.finish(), whole);
        // Exactly a multiple of the block size, and empty.
        assert_eq!(manifest(&doc[..3000], 1000).block_count(), 3);
        assert_eq!(manifest(&[], 1000).block_count(), 0);
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let good = manifest(&document(2500), 1000);
        let mut short = good.clone();
        short.blocks.pop();
        assert!(short.check().is_err());
        let mut zero = good.clone();
        zero.block_size = 0;
        assert!(zero.check().is_err());
        let mut junk = good.clone();
        junk.blocks[1] = "zz".into();
        assert!(junk.check().is_err());
        let huge = Manifest {
            size: u64::MAX,
            ..good
        };
        assert!(huge.check().is_err());
    }

    #[test]
    fn the_receiver_asks_within_its_window_and_counts_only_verified_blocks() {
        let doc = document(5000);
        let m = manifest(&doc, 1000);
        let mut r = Receiver::new(m.clone(), [], 2).unwrap();
        assert_eq!(r.next_requests(), [0, 1]);
        assert_eq!(r.next_requests(), Vec::<u32>::new());
        // A corrupt block is refused and asked for again.
        let mut bad = doc[1000..2000].to_vec();
        bad[5] ^= 1;
        assert!(matches!(
            r.received(1, &bad),
            Err(TransferError::Corrupt { index: 1, .. })
        ));
        assert!(matches!(
            r.received(3, &doc[3000..4000]),
            Err(TransferError::Unexpected(3))
        ));
        r.received(0, &doc[..1000]).unwrap();
        assert_eq!(r.next_requests(), [1, 2]);
        r.received(1, &doc[1000..2000]).unwrap();
        r.received(2, &doc[2000..3000]).unwrap();
        assert_eq!(r.verified_bytes(), 3000);
        assert_eq!(r.next_requests(), [3, 4]);
        // The connection breaks: what was asked for is asked for again.
        r.lost();
        assert_eq!(r.next_requests(), [3, 4]);
        r.received(4, &doc[4000..]).unwrap();
        r.received(3, &doc[3000..4000]).unwrap();
        assert!(r.is_complete());
        assert_eq!(r.next_requests(), Vec::<u32>::new());
    }

    #[test]
    fn a_partial_file_resumes_from_its_verified_blocks() {
        let doc = document(4500);
        let m = manifest(&doc, 1000);
        // Blocks 0 and 2 arrived; block 1 is a hole of zeros; block 3 is
        // half written; block 4 never came.
        let mut partial = doc[..3500].to_vec();
        partial[1000..2000].fill(0);
        let verified = verified_blocks(&m, &partial[..]).unwrap();
        assert_eq!(verified, [0, 2]);
        let mut r = Receiver::new(m, verified, 8).unwrap();
        assert_eq!(r.next_requests(), [1, 3, 4]);
        assert_eq!(r.verified_bytes(), 2000);
    }

    #[test]
    fn headers_round_trip_and_junk_is_refused() {
        let h = BlockHeader {
            transfer: 0x0102_0304_0506_0708,
            index: 77,
            compressed: true,
            len: 4096,
        };
        assert_eq!(BlockHeader::decode(&h.encode(), BLOCK_SIZE).unwrap(), h);
        let mut junk = h.encode();
        junk[0] = 0;
        assert!(BlockHeader::decode(&junk, BLOCK_SIZE).is_err());
        let mut flags = h.encode();
        flags[1] = 9;
        assert!(BlockHeader::decode(&flags, BLOCK_SIZE).is_err());
        assert!(BlockHeader::decode(&h.encode(), 100).is_err());
    }

    #[test]
    fn blocks_are_compressed_only_when_it_pays_and_never_expand_past_a_block() {
        let doc = document(2000);
        let header = |compressed| BlockHeader {
            transfer: 1,
            index: 3,
            compressed,
            len: 0,
        };
        let (squeezed, packed) = pack_block(&doc[..1000]);
        assert!(squeezed && packed.len() < 500);
        assert_eq!(
            unpack_block(&header(true), packed, 1000).unwrap(),
            doc[..1000]
        );
        let (squeezed, packed) = pack_block(&doc[1000..2000]);
        assert!(!squeezed);
        assert_eq!(packed, doc[1000..2000]);
        // A large block whose first part does not shrink is not tried whole.
        let mut mixed = document(4 * PACK_SAMPLE);
        mixed[..PACK_SAMPLE].copy_from_slice(&doc_random(PACK_SAMPLE));
        mixed[PACK_SAMPLE..].fill(b'a');
        assert!(!pack_block(&mixed).0);
        mixed[..PACK_SAMPLE].fill(b'a');
        assert!(pack_block(&mixed).0);
        // A bomb: a small payload claiming more than a block.
        let bomb = zstd::bulk::compress(&vec![0u8; 5000], 19).unwrap();
        assert!(matches!(
            unpack_block(&header(true), bomb, 1000),
            Err(TransferError::Corrupt { index: 3, .. })
        ));
    }
}
