//! Server-sent events, as the WHATWG spec defines them, push-based: feed
//! bytes as they arrive in any chunking, get whole events out. Written here
//! rather than taken from a crate because the protocol crate stays free of
//! async runtimes and streams, and the parser is small enough to test at
//! every chunk boundary.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser. Handles `\n`, `\r\n` and `\r` line ends (also split
/// across chunks), comments, multi-line data and a leading BOM.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended on `\r`: a `\n` starting the next is its pair.
    after_cr: bool,
    /// The first line has been seen (a leading BOM is stripped from it).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        // An empty chunk must not consume the pending `\r`'s pair.
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..end]);
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut out);
            if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => chunk = &chunk[end + 2..],
                    Some(_) => chunk = &chunk[end + 1..],
                    None => {
                        self.after_cr = true;
                        chunk = &[];
                    }
                }
            } else {
                chunk = &chunk[end + 1..];
            }
        }
        self.line.extend_from_slice(chunk);
        out
    }

    fn line_done(&mut self, mut line: &[u8], out: &mut Vec<SseEvent>) {
        // The BOM is stripped from the first whole line, so a BOM split
        // across chunks is recognised too.
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event = None;
            self.data.clear();
            self.has_data = false;
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(0) => return, // comment
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields carry nothing keel uses
        }
    }
}

/// Appends one event in wire form.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    const WIRE: &str = "\u{feff}: keep-alive\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\n\
        data: line one\ndata: line two\n\nid: 7\nretry: 10\ndata:no-space\rdata: é ü 日本\r\r\
        event: ping\n\ndata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev(Some("message_start"), "{\"a\":1}"),
            ev(None, "line one\nline two"),
            ev(None, "no-space\né ü 日本"),
            ev(None, "[DONE]"),
        ]
    }

    #[test]
    fn parses_whole_input() {
        let mut p = SseParser::new();
        assert_eq!(p.push(WIRE.as_bytes()), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = WIRE.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut p = SseParser::new();
                let mut got = p.push(&bytes[..i]);
                got.extend(p.push(&bytes[i..j]));
                got.extend(p.push(&bytes[j..]));
                assert_eq!(got, expected(), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let mut p = SseParser::new();
        let got: Vec<SseEvent> = WIRE.as_bytes().iter().flat_map(|b| p.push(&[*b])).collect();
        assert_eq!(got, expected());
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: partial").is_empty());
        assert!(p.push(b"\n").is_empty());
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let mut out = Vec::new();
        write_event(&mut out, Some("content_block_delta"), "{\"x\":\"a\nb\"}");
        write_event(&mut out, None, "multi\nline");
        let mut p = SseParser::new();
        assert_eq!(
            p.push(&out),
            vec![
                ev(Some("content_block_delta"), "{\"x\":\"a\nb\"}"),
                ev(None, "multi\nline"),
            ]
        );
    }
}
