//! `sse::SseParser` on arbitrary bytes in arbitrary chunkings.
//!
//! Input layout: byte 0 gives the number of cuts (0–7), then 2 bytes per cut
//! (little-endian, taken modulo the payload length + 1, so empty chunks and
//! repeated cuts happen); the rest is the SSE payload.
//!
//! Invariants:
//! - the events are the same whatever the chunking: whole, at the derived
//!   cuts, and byte by byte (with an empty push between bytes, which must
//!   not disturb a pending `\r`);
//! - no event name or data holds a line break other than the `\n` joining
//!   data lines, and no `\r` at all;
//! - `write_event` then parsing gives back exactly the events parsed.

#![no_main]

use keel_protocol::sse::{SseEvent, SseParser, write_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < 2 * n {
        return;
    }
    let (header, payload) = rest.split_at(2 * n);
    let mut cuts: Vec<usize> = header
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (payload.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = SseParser::new().push(payload);

    let mut parser = SseParser::new();
    let mut chunked = Vec::new();
    let mut prev = 0;
    for &c in &cuts {
        chunked.extend(parser.push(&payload[prev..c]));
        prev = c;
    }
    chunked.extend(parser.push(&payload[prev..]));
    assert_eq!(whole, chunked, "chunking at {cuts:?} changed the events");

    let mut parser = SseParser::new();
    let mut bytewise = Vec::new();
    for b in payload {
        bytewise.extend(parser.push(std::slice::from_ref(b)));
        bytewise.extend(parser.push(&[]));
    }
    assert_eq!(whole, bytewise, "byte-by-byte parsing changed the events");

    for e in &whole {
        assert!(!e.data.contains('\r'), "data holds a \\r: {e:?}");
        if let Some(name) = &e.event {
            assert!(
                !name.contains(['\r', '\n']),
                "event name holds a line break: {e:?}"
            );
        }
    }

    let mut wire = Vec::new();
    for e in &whole {
        write_event(&mut wire, e.event.as_deref(), &e.data);
    }
    let again: Vec<SseEvent> = SseParser::new().push(&wire);
    assert_eq!(
        whole, again,
        "write_event → parse does not give the events back"
    );
});
