//! Just enough of HTTP/2 framing (RFC 9113 §4.1) to close a connection gracefully from below
//! the HTTP/2 server: where the server's frames end, so that a frame of ours never lands inside
//! one of its; which streams the client opened; and which of them are still in flight.
//!
//! Pure and byte-driven: a frame may arrive or leave split anywhere.

/// The client connection preface, before its first frame.
const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;
const TYPE_DATA: u8 = 0x0;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_RST_STREAM: u8 = 0x3;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const STREAM_MASK: u32 = 0x7fff_ffff;

/// A GOAWAY frame, error code NO_ERROR.
pub fn goaway(last_stream: u32) -> [u8; HEADER_LEN + 8] {
    let mut frame = [0; HEADER_LEN + 8];
    frame[..HEADER_LEN].copy_from_slice(&header(8, TYPE_GOAWAY, 0));
    frame[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&(last_stream & STREAM_MASK).to_be_bytes());
    frame
}

/// A frame header on stream 0.
fn header(length: u32, kind: u8, flags: u8) -> [u8; HEADER_LEN] {
    let length = length.to_be_bytes();
    [length[1], length[2], length[3], kind, flags, 0, 0, 0, 0]
}

fn payload_length(header: &[u8; HEADER_LEN]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

fn stream_id(header: &[u8; HEADER_LEN]) -> u32 {
    u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & STREAM_MASK
}

/// Frame headers out of a byte stream split anywhere: the reading both sides share.
#[derive(Debug, Clone, Copy, Default)]
struct Reader {
    header: [u8; HEADER_LEN],
    have: usize,
    payload_left: usize,
}

impl Reader {
    /// Between two frames.
    fn between(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// Consumes one piece (of a header, or of a payload); returns the header it completes, if
    /// any, and the rest of `bytes`.
    fn step<'a>(&mut self, bytes: &'a [u8]) -> (Option<[u8; HEADER_LEN]>, &'a [u8]) {
        if self.payload_left > 0 {
            let n = self.payload_left.min(bytes.len());
            self.payload_left -= n;
            return (None, &bytes[n..]);
        }
        let n = (HEADER_LEN - self.have).min(bytes.len());
        self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
        self.have += n;
        if self.have < HEADER_LEN {
            return (None, &bytes[n..]);
        }
        self.have = 0;
        self.payload_left = payload_length(&self.header);
        (Some(self.header), &bytes[n..])
    }
}

/// The server's side: where its frames end, and which streams they end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outbound {
    reader: Reader,
    /// Whether the server's first frame (its SETTINGS, which must precede any frame of ours,
    /// §3.4) has been written.
    started: bool,
}

impl Outbound {
    /// Between two frames, after the server's first.
    pub fn may_insert(&self) -> bool {
        self.started && self.reader.between()
    }

    /// Takes note of bytes the server wrote; the streams they end (the server's last frame of
    /// a stream, or its reset) are added to `ended`.
    pub fn advance(&mut self, mut bytes: &[u8], ended: &mut Vec<u32>) {
        while !bytes.is_empty() {
            let (header, rest) = self.reader.step(bytes);
            bytes = rest;
            let Some(header) = header else { continue };
            self.started = true;
            let ends = match header[3] {
                TYPE_DATA | TYPE_HEADERS => header[4] & FLAG_END_STREAM != 0,
                TYPE_RST_STREAM => true,
                _ => false,
            };
            if ends {
                ended.push(stream_id(&header));
            }
        }
    }

    /// How many of `bytes` end the frame under way (or the next one, between frames): what
    /// may be written before a frame of ours goes in.
    pub fn until_frame_end(&self, bytes: &[u8]) -> usize {
        let mut probe = self.reader;
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = probe.step(rest).1;
            if probe.between() {
                break;
            }
        }
        bytes.len() - rest.len()
    }
}

/// The client's side: the streams it opened and which of them are still in flight.
#[derive(Debug)]
pub struct Inbound {
    preface_left: usize,
    reader: Reader,
    last_stream: u32,
    open: std::collections::HashSet<u32>,
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            reader: Reader::default(),
            last_stream: 0,
            open: std::collections::HashSet::new(),
        }
    }
}

impl Inbound {
    /// The highest stream the client opened.
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// Whether every stream the client opened has ended.
    pub fn idle(&self) -> bool {
        self.open.is_empty()
    }

    /// The server ended `stream`.
    pub fn ended(&mut self, stream: u32) {
        self.open.remove(&stream);
    }

    /// Takes note of bytes the client sent.
    pub fn observe(&mut self, mut input: &[u8]) {
        let preface = self.preface_left.min(input.len());
        self.preface_left -= preface;
        input = &input[preface..];
        while !input.is_empty() {
            let (header, rest) = self.reader.step(input);
            input = rest;
            if let Some(header) = header {
                self.header_read(&header);
            }
        }
    }

    fn header_read(&mut self, header: &[u8; HEADER_LEN]) {
        let stream = stream_id(header);
        match header[3] {
            // A new client-initiated stream is odd and higher than any before (§5.1.1); a
            // HEADERS frame on an older one is its trailers.
            TYPE_HEADERS if stream % 2 == 1 && stream > self.last_stream => {
                self.last_stream = stream;
                self.open.insert(stream);
            }
            TYPE_RST_STREAM => {
                self.open.remove(&stream);
            }
            _ => {}
        }
    }
}

/// The client's connection preface, and a frame as bytes: for the tests of this module and of
/// `draining`.
#[cfg(test)]
pub(super) mod testing {
    pub const PREFACE: &[u8; super::PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut bytes = vec![length[1], length[2], length[3], kind, flags];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{PREFACE, frame};
    use super::*;

    #[test]
    fn a_goaway_frame_is_laid_out_as_rfc_9113_says() {
        assert_eq!(
            goaway(7).to_vec(),
            frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0])
        );
    }

    #[test]
    fn nothing_may_go_in_before_the_servers_first_frame_or_inside_a_frame() {
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let mut outbound = Outbound::default();
        assert!(!outbound.may_insert(), "before the server's SETTINGS");
        assert_eq!(outbound.until_frame_end(&settings), settings.len());
        for (written, may) in [(4, false), (9, false), (14, false), (15, true)] {
            let mut partial = Outbound::default();
            partial.advance(&settings[..written], &mut Vec::new());
            assert_eq!(partial.may_insert(), may, "after {written} bytes");
        }
        outbound.advance(&settings, &mut Vec::new());
        assert!(outbound.may_insert());
    }

    #[test]
    fn the_frame_end_is_found_across_headers_and_payloads_split_anywhere() {
        let data = frame(TYPE_DATA, 0x1, 1, &[9; 20]);
        let empty = frame(0x4, 0x1, 0, &[]);
        let stream: Vec<u8> = [data.clone(), empty.clone(), data.clone()].concat();
        for split in 0..stream.len() {
            let mut outbound = Outbound::default();
            outbound.advance(&stream[..split], &mut Vec::new());
            let end = split + outbound.until_frame_end(&stream[split..]);
            let boundaries = [data.len(), data.len() + empty.len(), stream.len()];
            let expected = *boundaries.iter().find(|b| **b > split).unwrap();
            assert_eq!(end, expected, "from byte {split}");
            outbound.advance(&stream[split..end], &mut Vec::new());
            assert!(outbound.may_insert(), "at byte {end}");
        }
    }

    #[test]
    fn the_server_ends_a_stream_with_end_stream_or_a_reset_and_nothing_else() {
        let written = [
            frame(TYPE_HEADERS, 0x4, 1, &[0x88]),
            frame(TYPE_DATA, 0x0, 1, b"part"),
            frame(TYPE_DATA, FLAG_END_STREAM, 1, b"end"),
            frame(TYPE_HEADERS, 0x4 | FLAG_END_STREAM, 3, &[0x88]),
            frame(TYPE_RST_STREAM, 0, 5, &[0, 0, 0, 8]),
            // END_STREAM's bit on a frame type that has no such flag ends nothing.
            frame(0x8, FLAG_END_STREAM, 7, &[0, 0, 1, 0]),
        ]
        .concat();
        for size in [1, 4, 9, 100] {
            let mut outbound = Outbound::default();
            let mut ended = Vec::new();
            for piece in written.chunks(size) {
                outbound.advance(piece, &mut ended);
            }
            assert_eq!(ended, [1, 3, 5], "in pieces of {size}");
        }
    }

    #[test]
    fn a_stream_is_in_flight_from_the_clients_headers_until_it_ends() {
        let input = [
            PREFACE.to_vec(),
            frame(0x4, 0, 0, &[]),
            frame(TYPE_HEADERS, 0x4, 1, &[0x82]),
            frame(TYPE_HEADERS, 0x4, 5, &[0x82]),
            // Stream 9 only named by a PRIORITY frame, stream 2 even: neither was opened.
            frame(0x2, 0, 9, &[0, 0, 0, 0, 16]),
            frame(TYPE_HEADERS, 0x4, 2, &[0x82]),
            frame(TYPE_DATA, 0x1, 5, b"body"),
            // Trailers on stream 1: not a new stream.
            frame(TYPE_HEADERS, 0x5, 1, &[0x82]),
        ]
        .concat();
        for size in [1, 2, 5, 9, 64] {
            let mut inbound = Inbound::default();
            for piece in input.chunks(size) {
                inbound.observe(piece);
            }
            assert_eq!(inbound.last_stream(), 5, "in pieces of {size}");
            assert!(!inbound.idle());
            inbound.ended(1);
            assert!(!inbound.idle(), "stream 5 is still in flight");
            inbound.ended(5);
            assert!(inbound.idle());
        }
        let mut reset = Inbound::default();
        reset.observe(&[PREFACE.to_vec(), frame(TYPE_HEADERS, 0x4, 3, &[0x82])].concat());
        assert!(!reset.idle());
        reset.observe(&frame(TYPE_RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        assert!(reset.idle(), "the client's reset ends it too");
    }
}
