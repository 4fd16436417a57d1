//! One reading, stage by stage: facts → retrieval → `compose` or `generate` → citations
//! checked. The stages stream [`Event`]s into a channel (`citations`, `delta`…, then `done`
//! with the `{reading, meta}` body, or `error`) so the JSON and the SSE answers share one
//! path. A reading whose channel closes (the client went away) stops at once — dropping the
//! generator's stream cancels it — and is counted in `starpillar_reading_cancelled_total`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::compose::{self, Subject};
use super::facts::{self, Fact, FactOptions, Search};
use super::generate;
use super::metrics::RagMetrics;
use super::prompt::Prompts;
use super::retrieve::{self, Citation, Passage};
use super::{Locale, Mode, RagError, Topic};
use crate::engine::Generate;
use crate::engine::generate::GenEvent;
use crate::retrieval::retriever::Retriever;

/// What a reading runs on.
#[derive(Clone)]
pub struct Engine {
    pub retriever: Arc<Retriever>,
    pub generator: Option<Arc<dyn Generate>>,
    pub metrics: Arc<RagMetrics>,
    pub prompts: &'static Prompts,
}

/// A reading to produce (input already validated, mode already resolved).
#[derive(Debug, Clone)]
pub struct ReadingRequest {
    pub subject: Subject,
    /// The chart JSON (saju or natal) the facts come from.
    pub chart: Option<Value>,
    pub question: Option<String>,
    pub locale: Locale,
    /// `Compose` or `Generate` (see [`resolve_mode`]).
    pub mode: Mode,
    /// The corpus topic for question passages (`None` = any).
    pub topic: Option<Topic>,
    /// Passages for the question.
    pub top_k: usize,
    /// The current year (luck pillar, year pillar).
    pub year: i32,
    pub max_tokens: usize,
    /// Milliseconds the chart took (reported in `timings_ms`).
    pub chart_ms: f64,
}

/// What the pipeline streams.
#[derive(Debug, Clone)]
pub enum Event {
    Citations(Vec<Citation>),
    Delta(String),
    /// `{reading, meta}`.
    Done(Box<Value>),
    Error {
        code: String,
        message: String,
    },
}

/// Why a mode cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModeError {
    #[error("generate mode needs a loaded text generator; none is loaded (use compose or auto)")]
    NoGenerator,
}

/// `auto` → `generate` only when a generator is loaded and writes the locale; an explicit
/// `generate` needs a generator.
pub fn resolve_mode(
    requested: Mode,
    generator: Option<&Arc<dyn Generate>>,
    locale: Locale,
) -> Result<Mode, ModeError> {
    match requested {
        Mode::Compose => Ok(Mode::Compose),
        Mode::Generate => generator
            .map(|_| Mode::Generate)
            .ok_or(ModeError::NoGenerator),
        Mode::Auto => Ok(match generator {
            Some(g) if g.languages().iter().any(|l| l == locale.code()) => Mode::Generate,
            _ => Mode::Compose,
        }),
    }
}

/// Counts a reading that did not finish (dropped future or closed channel).
struct CancelGuard {
    metrics: Arc<RagMetrics>,
    mode: &'static str,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.metrics.cancelled.with_label_values(&[self.mode]).inc();
            self.metrics
                .readings
                .with_label_values(&[self.mode, "cancelled"])
                .inc();
        }
    }
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

fn question_fact(q: &str, topic: Option<Topic>) -> Fact {
    Fact {
        id: "question".into(),
        weight: 0.0,
        ko: q.to_owned(),
        en: q.to_owned(),
        search: Search {
            topic,
            queries_ko: vec![q.to_owned()],
            queries_en: vec![q.to_owned()],
            ..Search::default()
        },
    }
}

/// The facts of a request (the question last).
pub fn facts_for(req: &ReadingRequest) -> Vec<Fact> {
    let q = req
        .question
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty());
    let opts = FactOptions { year: req.year };
    let mut facts = match (req.subject, &req.chart) {
        (Subject::Saju, Some(c)) => facts::for_chart(Topic::Saju, c, q, opts),
        (Subject::Astrology, Some(c)) => facts::for_chart(Topic::Astrology, c, q, opts),
        _ => Vec::new(),
    };
    if let Some(q) = q {
        facts.push(question_fact(q, req.topic));
    }
    facts
}

/// Run a reading, streaming its events into `tx`. Returns the `{reading, meta}` body when it
/// finished.
pub async fn run(engine: Engine, req: ReadingRequest, tx: mpsc::Sender<Event>) -> Option<Value> {
    let mode = req.mode.name();
    let mut guard = CancelGuard {
        metrics: Arc::clone(&engine.metrics),
        mode,
        armed: true,
    };
    match produce(&engine, &req, &tx).await {
        Ok(body) => {
            guard.armed = false;
            engine
                .metrics
                .readings
                .with_label_values(&[mode, "ok"])
                .inc();
            if tx.send(Event::Done(Box::new(body.clone()))).await.is_err() {
                // Finished but nobody is listening: still a finished reading.
                return Some(body);
            }
            Some(body)
        }
        Err(RagError::Cancelled) => None,
        Err(err) => {
            guard.armed = false;
            engine
                .metrics
                .readings
                .with_label_values(&[mode, "error"])
                .inc();
            tracing::warn!(error = %err, "reading failed");
            let code = match &err {
                RagError::Retrieval(e) if e.is_unavailable() => "retrieval_unavailable",
                RagError::Retrieval(_) => "retrieval_failed",
                _ => "generation_failed",
            };
            let _ = tx
                .send(Event::Error {
                    code: code.into(),
                    message: err.to_string(),
                })
                .await;
            None
        }
    }
}

async fn send(tx: &mpsc::Sender<Event>, e: Event) -> Result<(), RagError> {
    tx.send(e).await.map_err(|_| RagError::Cancelled)
}

async fn produce(
    engine: &Engine,
    req: &ReadingRequest,
    tx: &mpsc::Sender<Event>,
) -> Result<Value, RagError> {
    let total = Instant::now();
    let m = &engine.metrics;
    let mut timings = serde_json::Map::new();
    timings.insert("chart".into(), json!(req.chart_ms));

    let t = Instant::now();
    let facts = facts_for(req);
    m.stage("facts", t.elapsed().as_secs_f64());
    timings.insert("facts".into(), json!(ms(t)));

    let t = Instant::now();
    let top_k = req.top_k.max(1);
    let subject = req.subject;
    let per_fact = move |f: &Fact| -> usize {
        if f.id == "question" {
            if subject == Subject::Question {
                top_k
            } else {
                2
            }
        } else if f.weight >= 0.85 {
            2
        } else {
            1
        }
    };
    let passages = retrieve::for_facts(
        &engine.retriever,
        &facts,
        req.locale,
        req.topic,
        &per_fact,
        m,
    )
    .await?;
    m.stage("retrieval", t.elapsed().as_secs_f64());
    timings.insert("retrieval".into(), json!(ms(t)));

    let q = req
        .question
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty());
    let fact_ids: Vec<&str> = facts
        .iter()
        .filter(|f| f.id != "question")
        .map(|f| f.id.as_str())
        .collect();
    let (text, citations, trace, usage, model) = match req.mode {
        Mode::Generate => {
            let Some(generator) = engine.generator.clone() else {
                return Err(RagError::Generation("no generator is loaded".into()));
            };
            let out = run_generate(
                engine,
                generator.as_ref(),
                req,
                &facts,
                &passages,
                q,
                tx,
                &mut timings,
            )
            .await?;
            (out.0, out.1, Value::Null, out.2, json!(generator.model()))
        }
        _ => {
            let t = Instant::now();
            let composed =
                compose::compose(engine.prompts, req.locale, subject, &facts, &passages, q);
            m.stage("compose", t.elapsed().as_secs_f64());
            timings.insert("compose".into(), json!(ms(t)));
            let citations: Vec<Citation> = passages
                .iter()
                .filter(|p| composed.cited.contains(&p.n))
                .map(Passage::citation)
                .collect();
            send(tx, Event::Citations(citations.clone())).await?;
            let last = composed.paragraphs.len().saturating_sub(1);
            for (pi, para) in composed.paragraphs.iter().enumerate() {
                for (si, s) in para.iter().enumerate() {
                    let sep = if si + 1 < para.len() {
                        " "
                    } else if pi < last {
                        "\n\n"
                    } else {
                        ""
                    };
                    send(tx, Event::Delta(format!("{s}{sep}"))).await?;
                }
            }
            let trace = serde_json::to_value(&composed.trace).unwrap_or(Value::Null);
            (
                composed.text(),
                citations,
                trace,
                json!({"prompt_tokens": 0, "completion_tokens": 0}),
                Value::Null,
            )
        }
    };
    m.stage("total", total.elapsed().as_secs_f64() + req.chart_ms / 1e3);
    timings.insert("total".into(), json!(ms(total) + req.chart_ms));
    let mut reading = json!({
        "text": text,
        "citations": citations,
        "facts": fact_ids,
    });
    if !trace.is_null()
        && let Some(obj) = reading.as_object_mut()
    {
        obj.insert("trace".into(), trace);
    }
    Ok(json!({
        "reading": reading,
        "meta": {
            "cached": false,
            "mode": req.mode.name(),
            "locale": req.locale.code(),
            "model": model,
            "prompt_version": engine.prompts.version,
            "corpus_version": engine.retriever.corpus_version,
            "retrieval": engine.retriever.mode().name(),
            "usage": usage,
            "timings_ms": Value::Object(timings),
        }
    }))
}

#[allow(clippy::too_many_arguments)]
async fn run_generate(
    engine: &Engine,
    generator: &dyn Generate,
    req: &ReadingRequest,
    facts: &[Fact],
    passages: &[Passage],
    question: Option<&str>,
    tx: &mpsc::Sender<Event>,
    timings: &mut serde_json::Map<String, Value>,
) -> Result<(String, Vec<Citation>, Value), RagError> {
    let m = &engine.metrics;
    let t = Instant::now();
    let topic = match req.subject {
        Subject::Saju => "saju (Four Pillars)",
        Subject::Astrology => "astrology",
        Subject::Question => req.topic.map_or("saju and astrology", Topic::name),
    };
    let request = generate::request(
        engine.prompts,
        req.locale,
        topic,
        facts,
        passages,
        question,
        req.max_tokens,
    );
    m.stage("prompt", t.elapsed().as_secs_f64());
    timings.insert("prompt".into(), json!(ms(t)));
    send(
        tx,
        Event::Citations(passages.iter().map(Passage::citation).collect()),
    )
    .await?;

    let t = Instant::now();
    let mut stream = generator
        .submit(request)
        .map_err(|e| RagError::Generation(e.to_string()))?;
    // The opening that names the core of the chart is templated from the facts (as in
    // `compose`), so a generated reading always states the day master / Sun, Moon, ascendant.
    let mut text = String::new();
    if req.subject != Subject::Question {
        let composed = compose::compose(
            engine.prompts,
            req.locale,
            req.subject,
            facts,
            &[],
            question,
        );
        if let Some(opening) = composed.paragraphs.first() {
            text = format!("{}\n\n", opening.join(" "));
            send(tx, Event::Delta(text.clone())).await?;
        }
    }
    let mut first = true;
    let summary = loop {
        match stream.events.recv().await {
            Some(GenEvent::Delta(d)) => {
                if first {
                    first = false;
                    m.stage("first_token", t.elapsed().as_secs_f64());
                    timings.insert("first_token".into(), json!(ms(t)));
                }
                text.push_str(&d);
                // A failed send drops `stream` on return: the engine stops this request.
                send(tx, Event::Delta(d)).await?;
            }
            Some(GenEvent::Done(summary)) => break summary,
            Some(GenEvent::Error(e)) => return Err(RagError::Generation(e)),
            None => {
                return Err(RagError::Generation(
                    "the generator stopped without finishing".into(),
                ));
            }
        }
    };
    m.stage("generate", t.elapsed().as_secs_f64());
    timings.insert("generate".into(), json!(ms(t)));
    let (clean, valid, invalid) = generate::validate(&text, passages.len());
    m.citations_invalid.inc_by(invalid as u64);
    let citations = passages
        .iter()
        .filter(|p| valid.contains(&p.n))
        .map(Passage::citation)
        .collect();
    let usage = json!({
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "citations_invalid": invalid,
    });
    Ok((clean, citations, usage))
}
