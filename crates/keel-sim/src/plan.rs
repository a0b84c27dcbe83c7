//! A [`Plan`]: what the simulator decided for one request, in transport-neutral
//! terms. The HTTP server and the in-process provider both execute it: wait
//! `latency`, then act on the outcome; a reply waits
//! [`Fault::pause_before`] each stream step (or the non-stream body).

use keel_protocol::WireError;
use keel_protocol::chat::{ChatResponse, StreamEvent};

use crate::fault::{Fault, Outcome};
use crate::words;

/// What a `malformed` fault sends instead of JSON: the body of a non-stream
/// answer, or the data of one stream event. Cut-off JSON, the kind of garbage
/// a broken proxy or upstream really produces.
pub const MALFORMED: &str = "{\"keel-sim\": \"malformed";

/// The decision for one request: the faults to act out and the answer they
/// apply to (already changed by `schema-violation`, if asked).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<R = ChatResponse> {
    pub fault: Fault,
    pub response: R,
}

/// One step of a streamed answer as the transport writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamStep {
    Event(StreamEvent),
    /// A `data:` line holding [`MALFORMED`].
    Malformed,
    /// The protocol's error event; the stream ends after it.
    Error(WireError),
}

impl<R> Plan<R> {
    /// The error to send for a `status=` fault, or for `stream-error=`
    /// (a 500; mid-stream it becomes the protocol's error event).
    pub fn error(&self) -> Option<WireError> {
        let (status, message) = match self.fault.outcome {
            Outcome::Status { status, .. } => (
                status,
                format!("simulated upstream error (status={status})"),
            ),
            Outcome::StreamError(n) => {
                (500, format!("simulated upstream error (stream-error={n})"))
            }
            _ => return None,
        };
        Some(WireError {
            status,
            message,
            param: None,
            code: Some("sim_fault".to_owned()),
        })
    }
}

impl Plan<ChatResponse> {
    /// The complete, well-formed stream of the answer: `Start`, text deltas
    /// (word-ish chunks), per tool call a `ToolCallStart` and its arguments
    /// in two deltas, `Finish`, `Usage`, `Done`. The deltas concatenate to
    /// the non-stream answer exactly.
    pub fn events(&self) -> Vec<StreamEvent> {
        self.response
            .to_events()
            .into_iter()
            .flat_map(|ev| match ev {
                StreamEvent::TextDelta(text) => words::chunks(&text)
                    .map(|c| StreamEvent::TextDelta(c.to_owned()))
                    .collect(),
                StreamEvent::ToolCallDelta { index, arguments } => {
                    let mid = (0..=arguments.len() / 2)
                        .rev()
                        .find(|i| arguments.is_char_boundary(*i))
                        .unwrap_or(0);
                    [&arguments[..mid], &arguments[mid..]]
                        .into_iter()
                        .filter(|part| !part.is_empty())
                        .map(|part| StreamEvent::ToolCallDelta {
                            index,
                            arguments: part.to_owned(),
                        })
                        .collect()
                }
                other => vec![other],
            })
            .collect()
    }

    /// The stream as the outcome shapes it: whole for `Reply`; `cut=N` keeps
    /// the first N events and never the terminal `Done`; `stream-error=N`
    /// follows the first N with an error; `malformed` slips a non-JSON event
    /// in after the first. Other outcomes never start a stream.
    pub fn stream_steps(&self) -> Vec<StreamStep> {
        let mut events = self.events();
        let ended = |events: &mut Vec<StreamEvent>, n: usize| {
            events.pop(); // `Done`: a cut or failed stream never ends properly
            events.truncate(n);
            events.drain(..).map(StreamStep::Event).collect::<Vec<_>>()
        };
        match self.fault.outcome {
            Outcome::Cut(n) => ended(&mut events, n),
            Outcome::StreamError(n) => {
                let mut steps = ended(&mut events, n);
                steps.extend(self.error().map(StreamStep::Error));
                steps
            }
            Outcome::Malformed => {
                let mut steps: Vec<StreamStep> =
                    events.into_iter().map(StreamStep::Event).collect();
                steps.insert(1.min(steps.len()), StreamStep::Malformed);
                steps
            }
            _ => events.into_iter().map(StreamStep::Event).collect(),
        }
    }
}

/// The part of a non-stream body a `cut` fault sends before dropping the
/// connection: the first half.
pub fn cut_body(body: &[u8]) -> &[u8] {
    &body[..body.len() / 2]
}

#[cfg(test)]
mod tests {
    use keel_protocol::chat::{FinishReason, ToolCall, Usage};

    use std::time::Duration;

    use super::*;

    fn plan(outcome: Outcome) -> Plan {
        Plan {
            fault: Fault {
                outcome,
                ttft: Duration::from_millis(30),
                gap: Duration::from_millis(5),
                ..Fault::default()
            },
            response: ChatResponse {
                id: "sim-1".into(),
                model: "m".into(),
                created: 0,
                text: "one two three".into(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                }],
                finish_reason: FinishReason::ToolCalls,
                usage: Usage::default(),
            },
        }
    }

    fn events(steps: &[StreamStep]) -> usize {
        steps
            .iter()
            .filter(|s| matches!(s, StreamStep::Event(_)))
            .count()
    }

    #[test]
    fn outcomes_shape_the_stream() {
        let full = plan(Outcome::Reply).stream_steps();
        // Start, 3 text deltas, call start, 2 argument deltas, finish, usage, done.
        assert_eq!(full.len(), 10);
        assert_eq!(full.last(), Some(&StreamStep::Event(StreamEvent::Done)));

        let cut = plan(Outcome::Cut(3)).stream_steps();
        assert_eq!(cut, full[..3]);
        let cut_all = plan(Outcome::Cut(100)).stream_steps();
        assert_eq!(cut_all, full[..9], "a cut stream never ends with Done");

        let failed = plan(Outcome::StreamError(2)).stream_steps();
        assert_eq!(failed[..2], full[..2]);
        assert!(matches!(&failed[2], StreamStep::Error(e) if e.status == 500));
        assert_eq!(failed.len(), 3);

        let garbled = plan(Outcome::Malformed).stream_steps();
        assert_eq!(garbled[1], StreamStep::Malformed);
        assert_eq!(events(&garbled), 10);
    }

    #[test]
    fn errors_and_cut_bodies() {
        let p = plan(Outcome::Status {
            status: 429,
            retry_after: Some(2),
        });
        let e = p.error().unwrap();
        assert_eq!(
            (e.status, e.message.as_str()),
            (429, "simulated upstream error (status=429)")
        );
        assert_eq!(plan(Outcome::Reset).error(), None);
        assert_eq!(cut_body(b"abcdef"), b"abc");
    }
}
