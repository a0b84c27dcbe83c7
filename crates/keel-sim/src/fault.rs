//! The fault spec: the `x-keel-sim-fault` header value, a script rule's
//! `fault`, or a config rule's `fault`, parsed into timings, an [`Outcome`]
//! and modifiers. The syntax table is in the crate docs.

use std::time::Duration;

/// Longest delay a spec may ask for: long enough for any timeout test,
/// short enough that a typo cannot park a connection for days.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// How a planned request ends. Timings and modifiers live beside it in
/// [`Fault`] and [`crate::Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// The normal answer.
    #[default]
    Reply,
    /// An error status with the protocol's error body; `retry_after` in
    /// seconds becomes a `Retry-After` header.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// The connection is dropped with no response at all.
    Reset,
    /// No answer, ever (until the client gives up).
    Hang,
    /// A 200 whose body (or one stream chunk) is not JSON.
    Malformed,
    /// The stream ends after this many events with no terminal event; a
    /// non-stream body is cut short.
    Cut(usize),
    /// After this many events, a protocol error event; a non-stream request
    /// gets a 500.
    StreamError(usize),
}

impl Outcome {
    /// A short name for logs and the fault counters.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Reply => "none",
            Outcome::Status { .. } => "status",
            Outcome::Reset => "reset",
            Outcome::Hang => "hang",
            Outcome::Malformed => "malformed",
            Outcome::Cut(_) => "cut",
            Outcome::StreamError(_) => "stream-error",
        }
    }
}

/// A parsed fault spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    /// Before anything, even response headers (`latency=`).
    pub latency: Duration,
    /// Before the first stream event or the non-stream body (`ttft=`).
    pub ttft: Duration,
    /// Between stream events (`gap=`).
    pub gap: Duration,
    /// Answer JSON that breaks the requested schema (`schema-violation`).
    pub schema_violation: bool,
    pub outcome: Outcome,
}

/// One bad item of a fault spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{item}`: {reason}")]
pub struct FaultError {
    pub item: String,
    pub reason: String,
}

impl Fault {
    /// How long to wait before stream step `index`: `ttft` before the first
    /// (and before a non-stream body), `gap` before the others.
    pub fn pause_before(&self, index: usize) -> Duration {
        if index == 0 { self.ttft } else { self.gap }
    }

    /// Parses a comma-separated spec such as `latency=200ms,status=503,retry-after=2`.
    /// Empty items are ignored, so an empty spec is "no fault".
    pub fn parse(spec: &str) -> Result<Fault, FaultError> {
        let mut fault = Fault::default();
        let mut retry_after = None;
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let err = |reason: &str| FaultError {
                item: item.to_owned(),
                reason: reason.to_owned(),
            };
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let outcome = match (key, value) {
                ("latency", Some(v)) => {
                    fault.latency = duration(v).map_err(err)?;
                    None
                }
                ("ttft", Some(v)) => {
                    fault.ttft = duration(v).map_err(err)?;
                    None
                }
                ("gap", Some(v)) => {
                    fault.gap = duration(v).map_err(err)?;
                    None
                }
                ("retry-after", Some(v)) => {
                    retry_after = Some(number::<u64>(v).map_err(err)?);
                    None
                }
                ("schema-violation", None) => {
                    fault.schema_violation = true;
                    None
                }
                ("status", Some(v)) => {
                    let status = number::<u16>(v).map_err(err)?;
                    if !(400..=599).contains(&status) {
                        return Err(err("status must be an error status, 400 to 599"));
                    }
                    Some(Outcome::Status {
                        status,
                        retry_after: None,
                    })
                }
                ("reset", None) => Some(Outcome::Reset),
                ("hang", None) => Some(Outcome::Hang),
                ("malformed", None) => Some(Outcome::Malformed),
                ("cut", Some(v)) => Some(Outcome::Cut(number(v).map_err(err)?)),
                ("stream-error", Some(v)) => Some(Outcome::StreamError(number(v).map_err(err)?)),
                (
                    "latency" | "ttft" | "gap" | "retry-after" | "status" | "cut" | "stream-error",
                    None,
                ) => return Err(err("needs a value (`key=value`)")),
                ("schema-violation" | "reset" | "hang" | "malformed", Some(_)) => {
                    return Err(err("takes no value"));
                }
                _ => return Err(err("unknown fault")),
            };
            if let Some(outcome) = outcome {
                if fault.outcome != Outcome::Reply {
                    return Err(err(&format!(
                        "conflicts with `{}`: one ending per request",
                        fault.outcome.name()
                    )));
                }
                fault.outcome = outcome;
            }
        }
        if let Some(secs) = retry_after {
            match &mut fault.outcome {
                Outcome::Status { retry_after, .. } => *retry_after = Some(secs),
                _ => {
                    return Err(FaultError {
                        item: format!("retry-after={secs}"),
                        reason: "only applies with `status=`".to_owned(),
                    });
                }
            }
        }
        Ok(fault)
    }
}

/// `200ms`, `2s` or `1.5s`.
fn duration(v: &str) -> Result<Duration, &'static str> {
    const UNIT: &str = "expected a duration such as 200ms or 1.5s";
    let d = if let Some(ms) = v.strip_suffix("ms") {
        Duration::from_millis(ms.trim().parse().map_err(|_| UNIT)?)
    } else if let Some(s) = v.strip_suffix('s') {
        let secs: f64 = s.trim().parse().map_err(|_| UNIT)?;
        Duration::try_from_secs_f64(secs).map_err(|_| UNIT)?
    } else {
        return Err(UNIT);
    };
    if d > MAX_DELAY {
        return Err("longer than the 1h limit");
    }
    Ok(d)
}

fn number<T: std::str::FromStr>(v: &str) -> Result<T, &'static str> {
    v.parse().map_err(|_| "expected a non-negative integer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_combined_items() {
        let f =
            Fault::parse(" latency=200ms, ttft=1.5s ,gap=50ms,status=503,retry-after=2,").unwrap();
        assert_eq!(f.latency, ms(200));
        assert_eq!(f.ttft, ms(1500));
        assert_eq!(f.gap, ms(50));
        assert_eq!((f.pause_before(0), f.pause_before(3)), (ms(1500), ms(50)));
        assert_eq!(
            f.outcome,
            Outcome::Status {
                status: 503,
                retry_after: Some(2)
            }
        );
        assert!(!f.schema_violation);
    }

    #[test]
    fn parses_each_outcome() {
        let cases = [
            ("", Outcome::Reply),
            ("reset", Outcome::Reset),
            ("hang", Outcome::Hang),
            ("malformed", Outcome::Malformed),
            ("cut=3", Outcome::Cut(3)),
            ("stream-error=0", Outcome::StreamError(0)),
            (
                "status=429",
                Outcome::Status {
                    status: 429,
                    retry_after: None,
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(Fault::parse(spec).unwrap().outcome, want, "{spec}");
        }
        assert!(
            Fault::parse("schema-violation,gap=2s")
                .unwrap()
                .schema_violation
        );
    }

    #[test]
    fn errors_name_the_item() {
        let cases = [
            ("latency=200ms,explode", "`explode`: unknown fault"),
            (
                "latency=200",
                "`latency=200`: expected a duration such as 200ms or 1.5s",
            ),
            (
                "ttft=-1s",
                "`ttft=-1s`: expected a duration such as 200ms or 1.5s",
            ),
            (
                "gap=2h",
                "`gap=2h`: expected a duration such as 200ms or 1.5s",
            ),
            ("latency=5000s", "`latency=5000s`: longer than the 1h limit"),
            (
                "status=200",
                "`status=200`: status must be an error status, 400 to 599",
            ),
            ("status", "`status`: needs a value (`key=value`)"),
            ("reset=1", "`reset=1`: takes no value"),
            ("cut=x", "`cut=x`: expected a non-negative integer"),
            (
                "reset,hang",
                "`hang`: conflicts with `reset`: one ending per request",
            ),
            (
                "retry-after=2",
                "`retry-after=2`: only applies with `status=`",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(Fault::parse(spec).unwrap_err().to_string(), want, "{spec}");
        }
    }
}
