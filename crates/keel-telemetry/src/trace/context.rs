//! W3C Trace Context: the `traceparent` header in and out, and random ids.

/// W3C trace context of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of the request belongs to.
    pub trace_id: [u8; 16],
    /// The caller's span when the request came with a `traceparent`: the (remote) parent of
    /// keel's root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the request's spans are exported: the caller's sampled flag, or true for a
    /// fresh root.
    pub sampled: bool,
}

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;
/// The only trace flag of level 1.
const FLAG_SAMPLED: u8 = 0x01;

impl TraceContext {
    /// From an incoming `traceparent` header value (W3C Trace Context level 1: version 00, reject
    /// all-zero ids, reject malformed; accept future versions per spec rules). None when
    /// absent/invalid.
    ///
    /// Hex must be lowercase. A version after 00 may carry more fields after a `-`; they are
    /// ignored, as the spec asks of a version-00 parser. Version `ff` is invalid.
    pub fn from_traceparent(value: &str) -> Option<TraceContext> {
        // A header value may carry optional whitespace around it.
        let bytes = value.trim_matches([' ', '\t']).as_bytes();
        if bytes.len() < TRACEPARENT_LEN {
            return None;
        }
        let [version] = parse_hex::<1>(&bytes[0..2])?;
        let longer = bytes.len() > TRACEPARENT_LEN;
        if version == 0xff || (version == 0 && longer) || (longer && bytes[TRACEPARENT_LEN] != b'-')
        {
            return None;
        }
        if [bytes[2], bytes[35], bytes[52]] != [b'-'; 3] {
            return None;
        }
        let trace_id = parse_hex::<16>(&bytes[3..35])?;
        let parent_span_id = parse_hex::<8>(&bytes[36..52])?;
        let [flags] = parse_hex::<1>(&bytes[53..55])?;
        if trace_id == [0; 16] || parent_span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            parent_span_id: Some(parent_span_id),
            sampled: flags & FLAG_SAMPLED != 0,
        })
    }

    /// A fresh root context (random trace id, sampled = true).
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: random_nonzero(),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// The trace id as 32 lowercase hex digits (as it appears in `traceparent` and in tracing
    /// backends).
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The `traceparent` to send upstream with `span_id` as the parent.
    pub fn traceparent(&self, span_id: [u8; 8]) -> String {
        let flags = if self.sampled { FLAG_SAMPLED } else { 0 };
        format!(
            "00-{}-{}-{}",
            to_hex(&self.trace_id),
            to_hex(&span_id),
            to_hex(&[flags])
        )
    }
}

/// A random span id, never all-zero (the invalid id).
pub fn new_span_id() -> [u8; 8] {
    random_nonzero()
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id != [0; N] {
            return id;
        }
    }
}

/// Decodes exactly `2 * N` lowercase hex digits.
fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}
