//! Just enough of HTTP/2 framing (RFC 9113 §4.1) to close a connection gracefully from below
//! the HTTP/2 server: where the server's frames end, so that a frame of ours never lands inside
//! one of its; which streams the client opened; and the acknowledgement of our own PING, which
//! the server never sent and must not see.
//!
//! Pure and byte-driven: a frame may arrive or leave split anywhere.

/// The client connection preface, before its first frame.
const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_PING: u8 = 0x6;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
/// The largest stream identifier: a first GOAWAY with it refuses nothing yet (§6.8).
pub const ANY_STREAM: u32 = 0x7fff_ffff;

/// A GOAWAY frame, error code NO_ERROR.
pub fn goaway(last_stream: u32) -> [u8; HEADER_LEN + 8] {
    let mut frame = [0; HEADER_LEN + 8];
    frame[..HEADER_LEN].copy_from_slice(&header(8, TYPE_GOAWAY, 0));
    frame[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&(last_stream & ANY_STREAM).to_be_bytes());
    frame
}

/// A PING frame (not an acknowledgement) carrying `payload`.
pub fn ping(payload: [u8; 8]) -> [u8; HEADER_LEN + 8] {
    let mut frame = [0; HEADER_LEN + 8];
    frame[..HEADER_LEN].copy_from_slice(&header(8, TYPE_PING, 0));
    frame[HEADER_LEN..].copy_from_slice(&payload);
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
    u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & ANY_STREAM
}

/// The server's side: where its frames end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outbound {
    header: [u8; HEADER_LEN],
    have: usize,
    payload_left: usize,
    /// Whole frame headers written: the first is the server's SETTINGS, which must precede any
    /// frame of ours (§3.4).
    frames: u64,
}

impl Outbound {
    /// Between two frames, after the server's first.
    pub fn may_insert(&self) -> bool {
        self.frames > 0 && self.have == 0 && self.payload_left == 0
    }

    /// Takes note of bytes the server wrote.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = self.step(bytes);
        }
    }

    /// How many of `bytes` end the frame under way (or the next one, between frames): what
    /// may be written before a frame of ours goes in.
    pub fn until_frame_end(&self, bytes: &[u8]) -> usize {
        let mut probe = *self;
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = probe.step(rest);
            if probe.have == 0 && probe.payload_left == 0 {
                break;
            }
        }
        bytes.len() - rest.len()
    }

    /// Consumes the bytes of one piece (header or payload) and returns the rest.
    fn step<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if self.payload_left > 0 {
            let n = self.payload_left.min(bytes.len());
            self.payload_left -= n;
            return &bytes[n..];
        }
        let n = (HEADER_LEN - self.have).min(bytes.len());
        self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
        self.have += n;
        if self.have == HEADER_LEN {
            self.have = 0;
            self.frames += 1;
            self.payload_left = payload_length(&self.header);
        }
        &bytes[n..]
    }
}

/// The client's side: the streams it opened, and the acknowledgement of our PING, which is
/// taken out of the bytes the server reads.
#[derive(Debug)]
pub struct Inbound {
    preface_left: usize,
    header: [u8; HEADER_LEN],
    have: usize,
    payload_left: usize,
    /// A PING acknowledgement being read, held back until its payload shows whose it is.
    held: Vec<u8>,
    awaited: Option<[u8; 8]>,
    acknowledged: bool,
    last_stream: u32,
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; HEADER_LEN],
            have: 0,
            payload_left: 0,
            held: Vec::new(),
            awaited: None,
            acknowledged: false,
            last_stream: 0,
        }
    }
}

impl Inbound {
    /// From now on, the acknowledgement of a PING with this payload is ours.
    pub fn await_ack(&mut self, payload: [u8; 8]) {
        self.awaited = Some(payload);
    }

    /// Whether our PING has been acknowledged: every stream the client opened before it saw
    /// our GOAWAY has been read by now.
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// The highest stream the client opened.
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// Reads `input` and appends to `out` what the server should read: all of it, except our
    /// PING's acknowledgement. Frame headers are passed on once whole.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.preface_left -= n;
                input = &input[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(input.len());
                let (piece, rest) = input.split_at(n);
                input = rest;
                self.payload_left -= n;
                if self.held.is_empty() {
                    out.extend_from_slice(piece);
                    continue;
                }
                self.held.extend_from_slice(piece);
                if self.payload_left == 0 {
                    if Some(&self.held[HEADER_LEN..]) == self.awaited.as_ref().map(|p| &p[..]) {
                        self.awaited = None;
                        self.acknowledged = true;
                    } else {
                        out.extend_from_slice(&self.held);
                    }
                    self.held.clear();
                }
            } else {
                let n = (HEADER_LEN - self.have).min(input.len());
                self.header[self.have..self.have + n].copy_from_slice(&input[..n]);
                self.have += n;
                input = &input[n..];
                if self.have == HEADER_LEN {
                    self.have = 0;
                    self.header_read();
                    if self.held.is_empty() {
                        out.extend_from_slice(&self.header);
                    }
                }
            }
        }
    }

    fn header_read(&mut self) {
        let length = payload_length(&self.header);
        let kind = self.header[3];
        let stream = stream_id(&self.header);
        // Client-initiated streams are odd (§5.1.1).
        if kind == TYPE_HEADERS && stream % 2 == 1 {
            self.last_stream = self.last_stream.max(stream);
        }
        let our_ack = self.awaited.is_some()
            && kind == TYPE_PING
            && self.header[4] & FLAG_ACK != 0
            && length == 8
            && stream == 0;
        if our_ack {
            self.held.extend_from_slice(&self.header);
        }
        self.payload_left = length;
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

    /// Feeds `input` to a fresh reader in pieces of `size` bytes.
    fn read_in_pieces(inbound: &mut Inbound, input: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.chunks(size) {
            inbound.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn goaway_and_ping_frames_are_laid_out_as_rfc_9113_says() {
        assert_eq!(
            goaway(7).to_vec(),
            frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 0])
        );
        assert_eq!(goaway(ANY_STREAM)[9..13], [0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(
            ping([1, 2, 3, 4, 5, 6, 7, 8]).to_vec(),
            frame(TYPE_PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])
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
            partial.advance(&settings[..written]);
            assert_eq!(partial.may_insert(), may, "after {written} bytes");
        }
        outbound.advance(&settings);
        assert!(outbound.may_insert());
    }

    #[test]
    fn the_frame_end_is_found_across_headers_and_payloads_split_anywhere() {
        let data = frame(0x0, 0x1, 1, &[9; 20]);
        let empty = frame(0x4, FLAG_ACK, 0, &[]);
        let stream: Vec<u8> = [data.clone(), empty.clone(), data.clone()].concat();
        for split in 0..stream.len() {
            let mut outbound = Outbound::default();
            outbound.advance(&stream[..split]);
            let end = split + outbound.until_frame_end(&stream[split..]);
            let boundaries = [data.len(), data.len() + empty.len(), stream.len()];
            let expected = *boundaries.iter().find(|b| **b > split).unwrap();
            assert_eq!(end, expected, "from byte {split}");
            outbound.advance(&stream[split..end]);
            assert!(outbound.may_insert(), "at byte {end}");
        }
    }

    #[test]
    fn the_highest_client_stream_is_that_of_the_last_headers_frame() {
        let input = [
            PREFACE.to_vec(),
            frame(0x4, 0, 0, &[]),
            frame(TYPE_HEADERS, 0x4, 1, &[0x82]),
            frame(TYPE_HEADERS, 0x4, 5, &[0x82]),
            // Stream 9 only named by a PRIORITY frame, stream 2 even: neither was opened.
            frame(0x2, 0, 9, &[0, 0, 0, 0, 16]),
            frame(TYPE_HEADERS, 0x4, 2, &[0x82]),
            frame(0x0, 0x1, 5, b"body"),
        ]
        .concat();
        for size in [1, 2, 5, 9, 64] {
            let mut inbound = Inbound::default();
            let out = read_in_pieces(&mut inbound, &input, size);
            assert_eq!(
                out, input,
                "everything reaches the server, in pieces of {size}"
            );
            assert_eq!(inbound.last_stream(), 5, "in pieces of {size}");
        }
    }

    #[test]
    fn the_ack_of_our_ping_is_taken_out_and_any_other_ping_passes() {
        let ours = [0xd1, 0x5b, 0, 1, 2, 3, 4, 5];
        let before = [PREFACE.to_vec(), frame(TYPE_HEADERS, 0x4, 3, &[0x82])].concat();
        let theirs_ack = frame(TYPE_PING, FLAG_ACK, 0, &[7; 8]);
        let client_ping = frame(TYPE_PING, 0, 0, &ours);
        let our_ack = frame(TYPE_PING, FLAG_ACK, 0, &ours);
        let after = frame(0x0, 0x1, 3, b"rest");
        let input = [
            before.clone(),
            theirs_ack.clone(),
            client_ping.clone(),
            our_ack,
            after.clone(),
        ]
        .concat();
        for size in [1, 3, 8, 17, 100] {
            let mut inbound = Inbound::default();
            inbound.await_ack(ours);
            let out = read_in_pieces(&mut inbound, &input, size);
            let expected = [
                before.clone(),
                theirs_ack.clone(),
                client_ping.clone(),
                after.clone(),
            ]
            .concat();
            assert_eq!(out, expected, "in pieces of {size}");
            assert!(inbound.acknowledged(), "in pieces of {size}");
        }
    }

    #[test]
    fn an_ack_is_not_taken_while_no_ping_of_ours_is_out() {
        let ours = [1; 8];
        let input = [PREFACE.to_vec(), frame(TYPE_PING, FLAG_ACK, 0, &ours)].concat();
        let mut inbound = Inbound::default();
        let out = read_in_pieces(&mut inbound, &input, 4);
        assert_eq!(out, input);
        assert!(!inbound.acknowledged());
    }
}
