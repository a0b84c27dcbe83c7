//! Phase 9 for streams: upstream events → the client's SSE, one event at a
//! time, nothing buffered. Guarantees the stream ends with a terminal event
//! in the client's protocol (done or error), and that usage is never zero.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use keel_core::{Error, EventStream};

use keel_protocol::chat::{Assembler, FinishReason, StreamEvent, Usage};

use crate::cache::{self, Caching};
use crate::front::{Encoder, Front};
use crate::held::Held;
use crate::pipeline::unix_now;
use crate::record::Record;
use crate::state::Gateway;

struct State {
    events: EventStream,
    /// Permits and guards: released when the stream ends, not before.
    _held: Held,
    encoder: Encoder,
    /// Taken when the stream ends; dropping it early records a disconnect.
    record: Option<Record>,
    usage: Option<Usage>,
    input_estimate: u32,
    /// Bytes of streamed text and tool arguments, for the output estimate.
    output_bytes: usize,
    /// The upstream said why it stopped; if it did not, keel says it before
    /// `Done` so every client sees a finish reason.
    finished: bool,
    saw_tool_call: bool,
    /// The streamed text, for the record's captured output (up to
    /// `capture_limit` bytes; nothing when bodies are not captured).
    text: String,
    capture_limit: usize,
    fill: Option<CacheFill>,
}

/// How the stream is answered besides its events.
pub(crate) struct Options {
    /// The client asked for a final usage chunk (OpenAI).
    pub include_usage: bool,
    /// keel's count of the input, for an upstream that reports none.
    pub input_estimate: u32,
    /// Where the whole answer goes once the stream ends well.
    pub fill: Option<CacheFill>,
}

/// A streamed answer being assembled for the response cache; stored only
/// when the stream ends with `Done` (a cut or failed stream never is).
pub(crate) struct CacheFill {
    pub gw: Gateway,
    pub caching: Caching,
    pub answer: Assembler,
}

pub(crate) fn respond(
    front: Front,
    events: EventStream,
    record: Record,
    options: Options,
    held: Held,
) -> Response {
    let Options {
        include_usage,
        input_estimate,
        fill,
    } = options;
    let capture_limit = if record.wants_bodies() {
        record.capture_limit()
    } else {
        0
    };
    let state = State {
        events,
        _held: held,
        encoder: front.encoder(include_usage),
        record: Some(record),
        usage: None,
        input_estimate,
        output_bytes: 0,
        finished: false,
        saw_tool_call: false,
        text: String::new(),
        capture_limit,
        fill,
    };
    let body = futures::stream::unfold(state, |mut s| async move {
        let bytes = s.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(bytes), s))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// A client that goes away mid-stream still leaves a record with what it
/// was sent: the usage so far (never zero) and the text.
impl Drop for State {
    fn drop(&mut self) {
        let usage = self.final_usage();
        let text = std::mem::take(&mut self.text);
        if let Some(r) = self.record.as_mut() {
            r.usage = usage;
            r.output(text);
        }
    }
}

impl State {
    /// The next non-empty chunk of SSE bytes, or `None` once a terminal
    /// event has been written.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        while out.is_empty() {
            self.record.as_mut()?.first_byte();
            match self.events.next().await {
                Some(Ok(StreamEvent::Done)) => {
                    if !self.finished {
                        let reason = if self.saw_tool_call {
                            FinishReason::ToolCalls
                        } else {
                            FinishReason::Stop
                        };
                        self.encoder.event(&StreamEvent::Finish(reason), &mut out);
                    }
                    let usage = self.final_usage();
                    self.encoder.event(&StreamEvent::Usage(usage), &mut out);
                    self.encoder.event(&StreamEvent::Done, &mut out);
                    if let Some(mut fill) = self.fill.take() {
                        fill.answer.push(&StreamEvent::Usage(usage));
                        cache::store(&fill.gw, &fill.caching, fill.answer.finish());
                    }
                    if let Some(mut r) = self.record.take() {
                        r.usage = usage;
                        r.output(std::mem::take(&mut self.text));
                        r.ok();
                    }
                }
                Some(Ok(StreamEvent::Usage(u))) => self.usage = Some(u),
                Some(Ok(mut ev)) => {
                    if let Some(fill) = &mut self.fill {
                        fill.answer.push(&ev);
                    }
                    match &mut ev {
                        StreamEvent::Start {
                            created,
                            input_tokens,
                            ..
                        } => {
                            if *created == 0 {
                                *created = unix_now();
                            }
                            // Upstreams that count input only at the end
                            // (OpenAI) start with keel's estimate instead of 0.
                            if input_tokens.is_none_or(|n| n == 0) {
                                *input_tokens = Some(self.input_estimate);
                            }
                        }
                        StreamEvent::Finish(_) => self.finished = true,
                        StreamEvent::ToolCallStart { .. } => self.saw_tool_call = true,
                        StreamEvent::TextDelta(t) => {
                            self.output_bytes += t.len();
                            self.collect(t);
                        }
                        StreamEvent::ToolCallDelta { arguments, .. } => {
                            self.output_bytes += arguments.len();
                            self.collect(arguments);
                        }
                        _ => {}
                    }
                    self.encoder.event(&ev, &mut out);
                }
                Some(Err(e)) => self.fail(&e, &mut out),
                None => self.fail(
                    &Error::internal("the upstream event stream ended without a terminal event"),
                    &mut out,
                ),
            }
        }
        Some(Bytes::from(out))
    }

    fn fail(&mut self, err: &Error, out: &mut Vec<u8>) {
        self.encoder.error(err, out);
        if let Some(mut r) = self.record.take() {
            r.usage = self.final_usage();
            r.output(std::mem::take(&mut self.text));
            r.fail(err);
        }
    }

    fn collect(&mut self, piece: &str) {
        let room = self.capture_limit.saturating_sub(self.text.len());
        if room >= piece.len() {
            self.text.push_str(piece);
        } else if room > 0 {
            let mut end = room;
            while !piece.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&piece[..end]);
        }
    }

    /// The upstream's usage, with estimates where it reported zero or none.
    fn final_usage(&self) -> Usage {
        let mut usage = self.usage.unwrap_or_default();
        if usage.input_tokens == 0 {
            usage.input_tokens = self.input_estimate;
        }
        if usage.output_tokens == 0 {
            usage.output_tokens = u32::try_from(self.output_bytes.div_ceil(4)).unwrap_or(u32::MAX);
        }
        usage
    }
}
