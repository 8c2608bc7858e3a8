//! A bounded-memory fountain decoder for BC-UR multi-part messages.
//!
//! The `ur` crate supplies the part format and the choice of fragments mixed into each part
//! (`ur::fountain::Part::indexes`, its Xoshiro256** sampler); this decoder does the
//! peeling itself so that it can (a) refuse headers that claim too much before allocating,
//! (b) keep the store of mixed parts that cannot be reduced yet under a fixed budget, and
//! (c) assemble the message in linear time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::ur_frames::PartFrame;
use super::{QrError, MAX_MESSAGE_LEN, MAX_PENDING_BYTES, MAX_UR_PARTS};

/// A fragment count and message and fragment lengths that agree with each other and with
/// the limits; checked on every part before anything is stored for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartHeader {
    pub(crate) count: usize,
    pub(crate) message_len: usize,
    pub(crate) checksum: u32,
    pub(crate) fragment_len: usize,
}

impl PartHeader {
    /// Checks the header fields of one part against the limits and each other.
    pub(crate) fn check(
        seq: u32,
        count: u32,
        message_len: u32,
        checksum: u32,
        fragment_len: usize,
    ) -> Result<Self, QrError> {
        if seq == 0 {
            return Err(QrError::InconsistentPart {
                reason: "sequence number 0 (sequence numbers start at 1)".into(),
            });
        }
        let count = count as usize;
        let message_len = message_len as usize;
        if count == 0 {
            return Err(QrError::InconsistentPart {
                reason: "fragment count 0".into(),
            });
        }
        if count > MAX_UR_PARTS {
            return Err(QrError::TooManyParts {
                count: count as u64,
                max: MAX_UR_PARTS,
            });
        }
        if message_len > MAX_MESSAGE_LEN {
            return Err(QrError::MessageTooLarge {
                size: message_len as u64,
                max: MAX_MESSAGE_LEN,
            });
        }
        if message_len == 0 || fragment_len == 0 {
            return Err(QrError::InconsistentPart {
                reason: "empty message or fragment".into(),
            });
        }
        // Every encoder (the reference one, the `ur` crate, Hummingbird) uses
        // fragment_len = ceil(message_len / count) <= message_len and splits the message into
        // ceil(message_len / fragment_len) fragments; anything else is not a real message.
        if fragment_len > message_len || message_len.div_ceil(fragment_len) != count {
            return Err(QrError::InconsistentPart {
                reason: format!(
                    "{count} fragments of {fragment_len} bytes cannot carry a {message_len}-byte message"
                ),
            });
        }
        Ok(Self {
            count,
            message_len,
            checksum,
            fragment_len,
        })
    }
}

/// A mixed part still waiting for enough of its fragments to be known.
struct Pending {
    /// Unknown fragments mixed into `data`, sorted.
    indexes: Vec<usize>,
    data: Vec<u8>,
}

impl Pending {
    fn cost(&self) -> usize {
        self.indexes.len() * std::mem::size_of::<usize>() + self.data.len() + 64
    }
}

/// What a part contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receive {
    /// A frame not seen before.
    New,
    /// A frame already received (same sequence number).
    Duplicate,
}

/// Fountain decoder state for one message.
pub(crate) struct FountainDecoder {
    header: PartHeader,
    /// Fragments known so far, by index.
    fragments: BTreeMap<usize, Vec<u8>>,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    /// Sequence numbers above `count` already received (those at or below it are simple
    /// parts: the fragment map says whether they are known).
    seen_mixed: BTreeSet<u32>,
    /// Distinct frames received.
    frames: usize,
}

impl FountainDecoder {
    pub(crate) fn new(header: PartHeader) -> Self {
        Self {
            header,
            fragments: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            seen_mixed: BTreeSet::new(),
            frames: 0,
        }
    }

    pub(crate) fn header(&self) -> &PartHeader {
        &self.header
    }

    /// Distinct frames this decoder has accepted.
    pub(crate) fn frames(&self) -> usize {
        self.frames
    }

    /// Fragments known (received or solved).
    pub(crate) fn resolved(&self) -> usize {
        self.fragments.len()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.fragments.len() == self.header.count
    }

    /// Most distinct frames accepted for one message before giving up: ten times the
    /// fragment count (a 90% loss rate) plus a margin.
    fn frame_limit(&self) -> usize {
        self.header.count.saturating_mul(10).saturating_add(100)
    }

    /// Whether a frame with this sequence number would be a duplicate.
    pub(crate) fn is_duplicate(&self, seq: u32) -> bool {
        let seq_usize = seq as usize;
        if seq_usize <= self.header.count {
            self.fragments.contains_key(&(seq_usize - 1))
        } else {
            self.seen_mixed.contains(&seq)
        }
    }

    /// Feeds one part whose header has been checked to equal this decoder's.
    pub(crate) fn receive(&mut self, part: &PartFrame) -> Result<Receive, QrError> {
        debug_assert_eq!(part.header, self.header);
        if self.is_duplicate(part.seq) || self.is_complete() {
            return Ok(Receive::Duplicate);
        }
        if self.frames >= self.frame_limit() {
            return Err(QrError::FrameLimit {
                frames: self.frames,
            });
        }
        let mut indexes = part.fragment_indexes()?;
        if indexes.iter().any(|&i| i >= self.header.count) {
            return Err(QrError::InconsistentPart {
                reason: "fragment index out of range".into(),
            });
        }
        indexes.sort_unstable();
        indexes.dedup();
        self.frames += 1;
        if part.seq as usize > self.header.count {
            self.seen_mixed.insert(part.seq);
        }

        let mut data = part.data.clone();
        indexes.retain(|i| match self.fragments.get(i) {
            Some(known) => {
                xor_into(&mut data, known);
                false
            }
            None => true,
        });
        match indexes.len() {
            0 => {}
            1 => self.resolve(indexes[0], data),
            _ => self.store_pending(Pending { indexes, data }),
        }
        Ok(Receive::New)
    }

    fn store_pending(&mut self, pending: Pending) {
        self.pending_bytes += pending.cost();
        self.pending.push_back(pending);
        while self.pending_bytes > MAX_PENDING_BYTES {
            match self.pending.pop_front() {
                Some(old) => self.pending_bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// Records a fragment and peels every pending part it reduces, transitively.
    fn resolve(&mut self, index: usize, data: Vec<u8>) {
        let mut queue = vec![(index, data)];
        while let Some((index, data)) = queue.pop() {
            if self.fragments.contains_key(&index) {
                continue;
            }
            let mut i = 0;
            while i < self.pending.len() {
                let entry = &mut self.pending[i];
                if let Ok(pos) = entry.indexes.binary_search(&index) {
                    entry.indexes.remove(pos);
                    xor_into(&mut entry.data, &data);
                    self.pending_bytes -= std::mem::size_of::<usize>();
                    if entry.indexes.len() <= 1 {
                        if let Some(done) = self.pending.remove(i) {
                            self.pending_bytes -= done.cost();
                            if let Some(&last) = done.indexes.first() {
                                queue.push((last, done.data));
                            }
                        }
                        continue;
                    }
                }
                i += 1;
            }
            self.fragments.insert(index, data);
        }
    }

    /// Joins the fragments, checks the padding and the CRC32, and returns the message.
    ///
    /// Call only when [`FountainDecoder::is_complete`].
    pub(crate) fn message(&self) -> Result<Vec<u8>, QrError> {
        let h = &self.header;
        let mut joined = Vec::with_capacity(h.count * h.fragment_len);
        for data in self.fragments.values() {
            joined.extend_from_slice(data);
        }
        if joined.len() < h.message_len {
            return Err(QrError::InconsistentPart {
                reason: "fragments shorter than the message".into(),
            });
        }
        if joined[h.message_len..].iter().any(|&b| b != 0) {
            return Err(QrError::InvalidPadding);
        }
        joined.truncate(h.message_len);
        let found = crc32(&joined);
        if found != h.checksum {
            return Err(QrError::MessageChecksum {
                expected: h.checksum,
                found,
            });
        }
        Ok(joined)
    }
}

/// CRC-32/ISO-HDLC, the checksum BC-UR uses for messages and bytewords.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

fn xor_into(target: &mut [u8], other: &[u8]) {
    for (t, o) in target.iter_mut().zip(other) {
        *t ^= o;
    }
}
