//! Phase 7, the attempt loop: walk the model's fallback chain, skipping
//! targets whose breaker is open or whose in-flight cap is full; call each
//! under its timeouts; retry retryable failures with backoff + jitter while
//! the target's retry budget and the request's deadline allow; fall back on
//! the failure classes the chain names. Streams are retried and fallen back
//! transparently until their first event: only then does the client get a
//! byte.

use std::any::Any;
use std::time::Duration;

use futures::StreamExt;
use keel_config::{Link, ModelConfig, Target, Trigger};
use keel_core::{CallContext, Error, ErrorKind, EventStream, Source};
use keel_protocol::chat::{ChatRequest, ChatResponse, FinishReason, StreamEvent};
use keel_resilience::backoff::{Backoff, wait_before_retry};
use keel_telemetry::trace;
use tokio::time::Instant;

use crate::state::{Gateway, Upstream};

/// One try at one target, for the record, its trace span and the
/// `x-keel-attempts` header.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub provider: String,
    pub model: String,
    /// `ok`, or the failure class (`error`, `timeout`, `rate_limit`, …).
    pub outcome: &'static str,
    pub started: Instant,
    /// Until the whole answer (or, for a stream, its first event) arrived.
    pub latency: Duration,
    /// The back-off slept before this attempt.
    pub waited: Duration,
    pub stream: bool,
    /// The upstream's status when it answered with an error one.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The span this call is traced as, sent upstream in `traceparent`.
    pub span_id: [u8; 8],
}

/// A successful answer, before translation.
pub(crate) enum Answer {
    Full(ChatResponse),
    /// The first event (already received: the attempt is committed) and
    /// the rest, bounded by the idle timeout and the deadline.
    Stream(StreamEvent, EventStream),
}

/// What served the request, and what must live as long as its response
/// body: the target's in-flight permit and load-balancer guard.
pub(crate) struct Served {
    pub provider: String,
    pub model: String,
    /// Which link of the chain served (a function's invalid output falls
    /// back to the links after it).
    pub link: usize,
    pub answer: Answer,
    pub held: Vec<Box<dyn Any + Send>>,
}

/// The shortest retry worth making: with less of the deadline left than
/// this, fall back (or fail) instead of waiting.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// Runs the chain from link `from` on. On failure returns the last error.
/// `attempts` is filled either way.
pub(crate) async fn run(
    gw: &Gateway,
    model: &ModelConfig,
    req: &ChatRequest,
    ctx: &CallContext,
    deadline: Instant,
    from: usize,
    attempts: &mut Vec<Attempt>,
) -> Result<Served, Error> {
    let mut last: Option<Error> = None;
    for (index, link) in model.chain.iter().enumerate().skip(from) {
        let (members, group) = match link {
            Link::Single(t) => (vec![t], None),
            Link::Group { members, .. } => {
                let group = gw.inner.groups.get(&(model.name.clone(), index));
                let order = match group {
                    // The thread-local RNG is not Send: use it and let it go at once.
                    Some(g) => g.order(
                        |i| members.get(i).is_some_and(|t| healthy(gw, t)),
                        &mut rand::rng(),
                    ),
                    None => (0..members.len()).collect(),
                };
                (
                    order.into_iter().filter_map(|i| members.get(i)).collect(),
                    group.map(|g| (g, members)),
                )
            }
        };
        for target in members {
            let Some(up) = gw.inner.upstreams.get(&target.provider) else {
                // Unavailable (its key is not set): skipped, and said why.
                let why = gw
                    .config()
                    .providers
                    .get(&target.provider)
                    .and_then(|p| p.availability.clone().err())
                    .unwrap_or_else(|| "not configured".to_owned());
                last.get_or_insert_with(|| {
                    Error::unavailable(format!(
                        "no provider is available for model `{}`: `{}` is unavailable ({why})",
                        model.name, target.provider
                    ))
                });
                continue;
            };
            let guard = group.and_then(|(g, all)| {
                all.iter()
                    .position(|m| std::ptr::eq(m, target))
                    .map(|i| g.start(i))
            });
            match try_target(up, target, model, req, ctx, deadline, attempts).await {
                Ok(mut served) => {
                    served.link = index;
                    if let Some(guard) = guard {
                        match &served.answer {
                            // A whole answer: the call is over, its latency
                            // teaches the balancer.
                            Answer::Full(_) => {
                                guard.finish(attempts.last().map_or(Duration::ZERO, |a| a.latency))
                            }
                            // A stream counts as in flight until it ends.
                            Answer::Stream(..) => served.held.push(Box::new(guard)),
                        }
                    }
                    return Ok(served);
                }
                Err(Failure::Stop(e)) => return Err(e),
                Err(Failure::FallBack(e)) => last = Some(e),
            }
            if Instant::now() >= deadline {
                return Err(Error::deadline_exceeded(model.timeout, attempts.len()));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::unavailable(format!(
            "no provider is available for model `{}`",
            model.name
        ))
    }))
}

/// A target is worth trying first if its breaker lets calls through and it
/// has room; unhealthy members of a group go last.
fn healthy(gw: &Gateway, target: &Target) -> bool {
    gw.inner.upstreams.get(&target.provider).is_some_and(|up| {
        up.breaker
            .as_ref()
            .is_none_or(|b| b.state() != keel_resilience::breaker::State::Open)
            && up
                .limiter
                .as_ref()
                .is_none_or(|l| l.in_flight() < up.settings.max_in_flight.unwrap_or(usize::MAX))
    })
}

enum Failure {
    /// Not worth another target (the client's own error, or a class the
    /// chain does not fall back on).
    Stop(Error),
    FallBack(Error),
}

/// Calls one target, retrying it while that can help.
async fn try_target(
    up: &Upstream,
    target: &Target,
    model: &ModelConfig,
    req: &ChatRequest,
    ctx: &CallContext,
    deadline: Instant,
    attempts: &mut Vec<Attempt>,
) -> Result<Served, Failure> {
    let backoff = Backoff {
        base: up.settings.backoff_base,
        max: up.settings.backoff_max,
    };
    let ttft = model.ttft_timeout.unwrap_or(up.settings.ttft_timeout);
    let mut retries = 0;
    let mut waited = Duration::ZERO;
    up.budget.deposit();
    loop {
        let span_id = trace::new_span_id();
        let record =
            |attempts: &mut Vec<Attempt>, outcome, started: Instant, err: Option<&Error>| {
                attempts.push(Attempt {
                    provider: target.provider.clone(),
                    model: target.model.clone(),
                    outcome,
                    started,
                    latency: started.elapsed(),
                    waited,
                    stream: req.stream,
                    status: err.and_then(|e| match e.kind {
                        ErrorKind::UpstreamStatus(s) => Some(s),
                        _ => None,
                    }),
                    error: err.map(|e| e.message.clone()),
                    span_id,
                });
            };
        let started = Instant::now();
        let remaining = deadline.saturating_duration_since(started);
        if remaining.is_zero() {
            return Err(Failure::Stop(Error::deadline_exceeded(
                model.timeout,
                attempts.len(),
            )));
        }
        // Skipped at once, no timeout wasted: an open breaker or a full target.
        let permit = match up.breaker.as_ref().map(|b| b.try_acquire()) {
            Some(None) => {
                record(attempts, "open_circuit", started, None);
                return Err(fall_back_if(
                    model,
                    Trigger::OpenCircuit,
                    open_circuit(target),
                ));
            }
            Some(Some(p)) => Some(p),
            None => None,
        };
        let slot = match up.limiter.as_ref().map(|l| l.try_acquire()) {
            Some(None) => {
                record(attempts, "target_full", started, None);
                return Err(fall_back_if(
                    model,
                    Trigger::OpenCircuit,
                    open_circuit(target),
                ));
            }
            Some(Some(s)) => Some(s),
            None => None,
        };
        let mut call_ctx = ctx.clone();
        call_ctx.ttft = Some(ttft.min(remaining));
        call_ctx.traceparent = ctx.trace.map(|t| {
            trace::TraceContext {
                trace_id: t.trace_id,
                parent_span_id: None,
                sampled: t.sampled,
            }
            .traceparent(span_id)
        });
        let result =
            tokio::time::timeout_at(deadline, call(up, target, req, &call_ctx, ttft, deadline))
                .await;
        let err = match result {
            Ok(Ok(answer)) => {
                if let Answer::Full(resp) = &answer
                    && resp.finish_reason == FinishReason::ContentFilter
                    && model.fallback_on.contains(&Trigger::ContentFilter)
                {
                    // A refusal is a healthy upstream: no breaker failure.
                    drop(permit);
                    record(attempts, "content_filter", started, None);
                    return Err(Failure::FallBack(Error::upstream_status(
                        &target.provider,
                        400,
                        "content-filter refusal",
                    )));
                }
                if let Some(p) = permit {
                    p.success();
                }
                record(attempts, "ok", started, None);
                let mut held: Vec<Box<dyn Any + Send>> = Vec::new();
                if let Some(s) = slot {
                    held.push(Box::new(s));
                }
                return Ok(Served {
                    provider: target.provider.clone(),
                    model: target.model.clone(),
                    link: 0,
                    answer,
                    held,
                });
            }
            Ok(Err(e)) => e,
            Err(_) => Error::deadline_exceeded(model.timeout, attempts.len() + 1),
        };
        let class = classify(&err);
        if let Some(p) = permit
            && counts_against_upstream(&err)
        {
            p.failure();
        }
        record(
            attempts,
            class.map_or("client_error", trigger_name),
            started,
            Some(&err),
        );
        let Some(class) = class else {
            return Err(Failure::Stop(err));
        };
        if err.kind == ErrorKind::Timeout && Instant::now() >= deadline {
            return Err(Failure::Stop(Error::deadline_exceeded(
                model.timeout,
                attempts.len(),
            )));
        }
        if err.retryable && retries < up.settings.max_retries && up.budget.try_withdraw() {
            let delay = backoff.delay(retries, &mut rand::rng());
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Some(wait) = wait_before_retry(delay, err.retry_after, remaining, MIN_ATTEMPT) {
                tokio::time::sleep(wait).await;
                waited = wait;
                retries += 1;
                continue;
            }
        }
        return Err(fall_back_if(model, class, err));
    }
}

fn open_circuit(target: &Target) -> Error {
    Error::unavailable(format!(
        "target `{}/{}` is not accepting calls (circuit open or at its in-flight limit)",
        target.provider, target.model
    ))
    .with_provider(&target.provider)
}

fn fall_back_if(model: &ModelConfig, class: Trigger, err: Error) -> Failure {
    if model.fallback_on.contains(&class) {
        Failure::FallBack(err)
    } else {
        Failure::Stop(err)
    }
}

/// One call with the target's model and defaults. For streams, waits for
/// the first event under `ttft` so that a failure before it can still be
/// retried or fallen back.
async fn call(
    up: &Upstream,
    target: &Target,
    req: &ChatRequest,
    ctx: &CallContext,
    ttft: Duration,
    deadline: Instant,
) -> Result<Answer, Error> {
    let mut req = req.clone();
    req.model.clone_from(&target.model);
    let p = &target.params;
    req.max_tokens = req.max_tokens.or(p.max_tokens);
    req.temperature = req.temperature.or(p.temperature);
    req.top_p = req.top_p.or(p.top_p);
    if !req.stream {
        return up.provider.chat(req, ctx).await.map(Answer::Full);
    }
    let mut events = up.provider.chat_stream(req, ctx).await?;
    let first = tokio::time::timeout(ttft, events.next())
        .await
        .map_err(|_| Error::upstream_timeout(&target.provider, ttft))?;
    match first {
        Some(Ok(ev)) => {
            let rest = bounded(events, &target.provider, up.settings.idle_timeout, deadline);
            Ok(Answer::Stream(ev, rest))
        }
        Some(Err(e)) => Err(e),
        None => Err(Error::upstream_protocol(
            &target.provider,
            "the stream ended before its first event",
        )),
    }
}

/// The rest of a committed stream, each event within `idle` of the last and
/// all of it before the deadline.
fn bounded(events: EventStream, provider: &str, idle: Duration, deadline: Instant) -> EventStream {
    let provider = provider.to_owned();
    futures::stream::unfold(Some(events), move |state| {
        let provider = provider.clone();
        async move {
            let mut events = state?;
            let limit = Instant::now() + idle;
            let item = match tokio::time::timeout_at(limit.min(deadline), events.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => return None,
                Err(_) if Instant::now() >= deadline => {
                    let err = Error::upstream_timeout(&provider, idle)
                        .with_message("the request's deadline passed mid-stream");
                    return Some((Err(err), None));
                }
                Err(_) => return Some((Err(Error::upstream_timeout(&provider, idle)), None)),
            };
            Some((item, Some(events)))
        }
    })
    .boxed()
}

/// The failure class of an error, or `None` for the client's own errors
/// (never retried, never fallen back: another target would refuse too).
fn classify(err: &Error) -> Option<Trigger> {
    if err.source == Source::Client {
        return None;
    }
    match err.kind {
        ErrorKind::Timeout => Some(Trigger::Timeout),
        ErrorKind::RateLimited => Some(Trigger::RateLimit),
        ErrorKind::UpstreamStatus(400 | 413 | 422) if is_context_length(&err.message) => {
            Some(Trigger::ContextLength)
        }
        // The request is wrong for any upstream.
        ErrorKind::UpstreamStatus(400 | 413 | 422) => None,
        _ => Some(Trigger::Error),
    }
}

/// How providers say the input is too long (OpenAI, Anthropic, vLLM, …).
fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context length",
        "context_length",
        "maximum context",
        "context window",
        "prompt is too long",
        "too many tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Whether a failure says something about the upstream's health (and so
/// counts toward its breaker): not a refusal of this particular request.
fn counts_against_upstream(err: &Error) -> bool {
    !matches!(
        err.kind,
        ErrorKind::UpstreamStatus(400 | 401 | 403 | 404 | 413 | 422)
    ) && err.source == Source::Upstream
}

pub(crate) fn trigger_name(t: Trigger) -> &'static str {
    match t {
        Trigger::Error => "error",
        Trigger::Timeout => "timeout",
        Trigger::OpenCircuit => "open_circuit",
        Trigger::RateLimit => "rate_limit",
        Trigger::ContextLength => "context_length",
        Trigger::ContentFilter => "content_filter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_for_retry_and_fallback() {
        assert_eq!(
            classify(&Error::upstream_status("p", 503, "x")),
            Some(Trigger::Error)
        );
        assert_eq!(
            classify(&Error::upstream_status("p", 429, "x")),
            Some(Trigger::RateLimit)
        );
        assert_eq!(
            classify(&Error::upstream_timeout("p", Duration::from_secs(1))),
            Some(Trigger::Timeout)
        );
        assert_eq!(
            classify(&Error::upstream_status(
                "p",
                400,
                "This model's maximum context length is 8192 tokens"
            )),
            Some(Trigger::ContextLength)
        );
        assert_eq!(
            classify(&Error::upstream_status("p", 400, "invalid temperature")),
            None
        );
        assert_eq!(classify(&Error::invalid_request("bad")), None);
        // keel's key or model name is wrong for this target: another may work.
        assert_eq!(
            classify(&Error::upstream_status("p", 401, "bad key")),
            Some(Trigger::Error)
        );
        assert!(!counts_against_upstream(&Error::upstream_status(
            "p", 401, "x"
        )));
        assert!(counts_against_upstream(&Error::upstream_status(
            "p", 500, "x"
        )));
    }
}
