//! `starpillar eval readings`: reading quality over a fixed set of births (ko and en, saju and
//! astrology) in each available mode — the fraction of readings that state the chart's day
//! master / Sun sign (checked against the engine's chart), the fraction of citations that are
//! valid (the id exists in the store and the text's `[n]` markers point at a citation), the
//! fraction written in the requested language (Hangul ratio), the repeated-sentence rate and
//! the mean length; compared with (or recorded as) `corpus/eval/readings-baseline.json`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::compose::Subject;
use super::facts::{states_day_master, states_sun_sign};
use super::generate::cited_numbers;
use super::metrics::RagMetrics;
use super::pipeline::{self, Engine, ReadingRequest};
use super::text::{in_language, repeats};
use super::{Locale, Mode, Topic, prompt};
use crate::domain::{astro, saju};
use crate::engine::{Embed, Generate};
use crate::retrieval::RetrievalError;
use crate::retrieval::corpus::{self, ApproxTokens, ChunkConfig};
use crate::retrieval::retriever::Retriever;
use crate::retrieval::sparse::SparseConfig;
use crate::retrieval::store::StoreSpec;

/// The fixed seed of the birth set.
pub const SEED: u64 = 20_261_125;
/// The year the readings are dated (luck and year pillars), fixed so figures reproduce.
pub const EVAL_YEAR: i32 = 2026;
/// Largest drop (or rise, for the repeated rate) the baseline comparison accepts.
pub const TOLERANCE: f64 = 0.02;

/// A keyword-only retriever over a corpus folder (chunked with the approximate token count,
/// kept in memory): the fast, model-free index of the eval, the tests and `starpillar ask`.
pub async fn sparse_retriever(corpus_dir: &Path) -> Result<Retriever, RetrievalError> {
    let corpus = corpus::load_dir(corpus_dir)?;
    let chunks = corpus::chunk_corpus(&corpus, ChunkConfig::default(), &ApproxTokens);
    let sparse = SparseConfig::default();
    let version = chunks
        .first()
        .map(|c| c.payload.corpus_version.clone())
        .unwrap_or_default();
    let store = crate::retrieval::eval::build_store(
        &chunks,
        None,
        None,
        &sparse,
        &indicatif::ProgressBar::hidden(),
    )
    .await?;
    Ok(Retriever {
        store: Arc::new(store),
        sparse,
        embedder: None,
        corpus_version: version,
    })
}

/// The retriever `ask`, `eval readings` and `bench readings` search through, and how it was
/// chosen (printed as a notice).
pub struct Opened {
    pub retriever: Retriever,
    /// `hybrid …` or `keyword …`, with the reason when it fell back to keywords.
    pub description: String,
}

impl Opened {
    /// True when queries are embedded (hybrid dense + keyword search).
    pub fn is_hybrid(&self) -> bool {
        self.retriever.embedder.is_some()
    }
}

/// Hybrid search over the store `spec` (queries embedded by `--embed-model`) when that store
/// exists, holds this model's vectors and was built from this very corpus (same corpus
/// version); otherwise the keyword index of `corpus_dir` built in memory, with the reason.
/// `spec: None` asks for the keyword index directly. The embedder is loaded only when the
/// store exists.
pub async fn open_retriever(
    corpus_dir: &Path,
    spec: Option<&StoreSpec>,
    engine: &crate::engine::EngineArgs,
    data_dir: &Path,
) -> Result<Opened, RetrievalError> {
    let embedder = match spec {
        None => Err("keyword index requested".to_owned()),
        Some(spec) => load_embedder_for(spec, engine, data_dir),
    };
    open_retriever_with(corpus_dir, spec, embedder).await
}

/// The embedder of `engine`, when `spec` exists and the model needs no download.
fn load_embedder_for(
    spec: &StoreSpec,
    engine: &crate::engine::EngineArgs,
    data_dir: &Path,
) -> Result<Arc<dyn Embed>, String> {
    if spec.is_local_and_missing() {
        return Err(format!(
            "{spec} does not exist: `starpillar index` builds it"
        ));
    }
    if engine.embed_model.eq_ignore_ascii_case("none") {
        return Err("--embed-model none".to_owned());
    }
    if !crate::retrieval::embedding::available_offline(&engine.embed_model, data_dir) {
        return Err(format!(
            "the embedder {} is not fetched: `starpillar models fetch {}`",
            engine.embed_model, engine.embed_model
        ));
    }
    crate::retrieval::embedding::load(engine, data_dir)
        .map(|l| l.embedder)
        .map_err(|e| format!("the embedder did not load: {e}"))
}

/// [`open_retriever`] with the embedder given (or why there is none).
pub async fn open_retriever_with(
    corpus_dir: &Path,
    spec: Option<&StoreSpec>,
    embedder: Result<Arc<dyn Embed>, String>,
) -> Result<Opened, RetrievalError> {
    let reason = match (spec, embedder) {
        (Some(spec), Ok(embedder)) => match dense_retriever(corpus_dir, spec, embedder).await {
            Ok(opened) => return Ok(opened),
            Err(reason) => reason,
        },
        (_, Err(reason)) => reason,
        (None, Ok(_)) => "keyword index requested".to_owned(),
    };
    let retriever = sparse_retriever(corpus_dir).await?;
    Ok(Opened {
        description: format!(
            "keyword search over {} indexed in memory ({reason})",
            corpus_dir.display()
        ),
        retriever,
    })
}

/// The store's hybrid retriever, or why not.
async fn dense_retriever(
    corpus_dir: &Path,
    spec: &StoreSpec,
    embedder: Arc<dyn Embed>,
) -> Result<Opened, String> {
    use crate::retrieval::store::Filter;
    if spec.is_local_and_missing() {
        return Err(format!(
            "{spec} does not exist: `starpillar index` builds it"
        ));
    }
    let s = spec.clone();
    let store = tokio::task::spawn_blocking(move || s.open())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open {spec}: {e}"))?;
    let meta = store
        .meta()
        .await
        .map_err(|e| format!("{spec}: {e}"))?
        .ok_or_else(|| format!("{spec} has not been indexed"))?;
    let count = store
        .count(&Filter::default())
        .await
        .map_err(|e| format!("{spec}: {e}"))?;
    if count == 0 {
        return Err(format!("{spec} is empty"));
    }
    let model = embedder.model().to_owned();
    if meta.model != model || meta.dim != embedder.dim() {
        return Err(format!(
            "{spec} holds {}'s vectors, the embedder is {model}",
            meta.model
        ));
    }
    let corpus = corpus::load_dir(corpus_dir).map_err(|e| e.to_string())?;
    let counter: &dyn corpus::TokenCounter = match embedder.tokenizer() {
        Some(t) => t,
        None => &ApproxTokens,
    };
    let chunks = corpus::chunk_corpus(&corpus, ChunkConfig::default(), counter);
    let version = corpus::corpus_version(chunks.iter().map(|c| c.id));
    if version != meta.corpus_version {
        return Err(format!(
            "{spec} was built from corpus {}, {} is corpus {version}: `starpillar index {}` \
             updates it",
            meta.corpus_version,
            corpus_dir.display(),
            corpus_dir.display()
        ));
    }
    Ok(Opened {
        description: format!(
            "hybrid search ({model} dense + keyword) over {spec}: {count} chunks, corpus \
             {version}"
        ),
        retriever: Retriever {
            store,
            sparse: meta.sparse.unwrap_or_default(),
            embedder: Some(embedder),
            corpus_version: meta.corpus_version,
        },
    })
}

/// One birth of the eval set.
#[derive(Debug, Clone, Serialize)]
pub struct EvalBirth {
    pub date: String,
    pub time: String,
    pub sex: &'static str,
    pub city: String,
    pub timezone: String,
    pub latitude: f64,
    pub longitude: f64,
    pub locale: Locale,
    pub question: Option<String>,
}

const CITIES: [(&str, &str, f64, f64); 5] = [
    ("Seoul", "Asia/Seoul", 37.5665, 126.978),
    ("Busan", "Asia/Seoul", 35.1796, 129.0756),
    ("New York", "America/New_York", 40.7128, -74.006),
    ("London", "Europe/London", 51.5074, -0.1278),
    ("Sydney", "Australia/Sydney", -33.8688, 151.2093),
];
const QUESTIONS_KO: [Option<&str>; 4] = [
    Some("올해 직업운은 어떤가요?"),
    Some("연애와 결혼은 어떨까요?"),
    None,
    Some("재물운이 궁금합니다."),
];
const QUESTIONS_EN: [Option<&str>; 4] = [
    Some("How is my career looking this year?"),
    None,
    Some("What should I know about love and relationships?"),
    Some("How can I take care of my health?"),
];

/// `n` births from the fixed seed: dates 1950–2009, times 06:00–21:59, five cities,
/// alternating ko and en.
pub fn births(n: usize) -> Vec<EvalBirth> {
    let mut x = SEED;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    (0..n)
        .map(|i| {
            let (city, tz, lat, lon) = CITIES[i % CITIES.len()];
            let locale = if i % 2 == 0 { Locale::Ko } else { Locale::En };
            let q = if locale == Locale::Ko {
                QUESTIONS_KO[(i / 2) % 4]
            } else {
                QUESTIONS_EN[(i / 2) % 4]
            };
            EvalBirth {
                date: format!(
                    "{}-{:02}-{:02}",
                    1950 + next(60),
                    1 + next(12),
                    1 + next(28)
                ),
                time: format!("{:02}:{:02}", 6 + next(16), next(60)),
                sex: if next(2) == 0 { "female" } else { "male" },
                city: city.to_owned(),
                timezone: tz.to_owned(),
                latitude: lat,
                longitude: lon,
                locale,
                question: q.map(str::to_owned),
            }
        })
        .collect()
}

/// The saju chart JSON of a birth.
pub fn saju_chart(b: &EvalBirth) -> Option<Value> {
    let input = saju::BirthInput {
        date: b.date.clone(),
        time: Some(b.time.clone()),
        calendar: saju::Calendar::Solar,
        leap_month: false,
        timezone: b.timezone.clone(),
        longitude: b.longitude,
    };
    let sex = if b.sex == "male" {
        saju::Sex::Male
    } else {
        saju::Sex::Female
    };
    let chart = saju::compute(&input, sex, saju::ChartOptions::default()).ok()?;
    serde_json::to_value(chart).ok()
}

/// The natal chart JSON of a birth.
pub fn astro_chart(b: &EvalBirth) -> Option<Value> {
    let birth = astro::Birth {
        datetime: format!("{}T{}", b.date, b.time),
        timezone: b.timezone.clone(),
        latitude: b.latitude,
        longitude: b.longitude,
    };
    let chart = astro::compute(&birth, &astro::ChartOptions::default()).ok()?;
    serde_json::to_value(chart).ok()
}

/// Run one reading to its `{reading, meta}` body.
pub async fn read(engine: &Engine, req: ReadingRequest) -> Option<Value> {
    let (tx, mut rx) = mpsc::channel(256);
    let drain = async move { while rx.recv().await.is_some() {} };
    let (body, ()) = tokio::join!(pipeline::run(engine.clone(), req, tx), drain);
    body
}

/// Figures of one (topic, locale, mode) group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub readings: usize,
    /// States the day master (saju) or the Sun sign (astrology).
    pub key_fact: f64,
    pub citations_valid: f64,
    pub language: f64,
    pub repeated: f64,
    pub mean_chars: f64,
    /// Readings that failed (no body).
    pub failed: usize,
}

#[derive(Default)]
struct Acc {
    n: usize,
    key: usize,
    cites: usize,
    cites_ok: usize,
    lang: usize,
    rep: usize,
    sentences: usize,
    chars: usize,
    failed: usize,
}

impl Acc {
    fn row(&self) -> Row {
        let f = |a: usize, b: usize| {
            if b == 0 {
                0.0
            } else {
                round4(a as f64 / b as f64)
            }
        };
        Row {
            readings: self.n,
            key_fact: f(self.key, self.n),
            citations_valid: if self.cites == 0 {
                0.0
            } else {
                f(self.cites_ok, self.cites)
            },
            language: f(self.lang, self.n),
            repeated: f(self.rep, self.sentences),
            mean_chars: if self.n == 0 {
                0.0
            } else {
                (self.chars as f64 / self.n as f64).round()
            },
            failed: self.failed,
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The report: rows keyed `topic/locale/mode`.
pub type Report = BTreeMap<String, Row>;

/// Readings for every birth, topic and mode.
/// How readings are produced in the eval.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Tokens per generated reading.
    pub max_tokens: usize,
    /// Print readings that miss their key fact or repeat a sentence.
    pub verbose: bool,
}

/// Readings for every birth, topic and mode (384 tokens per generated reading).
pub async fn evaluate(
    engine: &Engine,
    births: &[EvalBirth],
    modes: &[Mode],
    verbose: bool,
) -> Result<Report, RetrievalError> {
    let options = EvalOptions {
        max_tokens: 384,
        verbose,
    };
    evaluate_with(engine, births, modes, options).await
}

/// [`evaluate`] with explicit options.
pub async fn evaluate_with(
    engine: &Engine,
    births: &[EvalBirth],
    modes: &[Mode],
    options: EvalOptions,
) -> Result<Report, RetrievalError> {
    let verbose = options.verbose;
    let known: HashSet<String> = engine
        .retriever
        .store
        .list_ids(None)
        .await?
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    for b in births {
        for topic in [Topic::Saju, Topic::Astrology] {
            let chart = match topic {
                Topic::Saju => saju_chart(b),
                Topic::Astrology => astro_chart(b),
            };
            let Some(chart) = chart else { continue };
            for &mode in modes {
                let key = format!("{}/{}/{}", topic.name(), b.locale.code(), mode.name());
                let a = acc.entry(key).or_default();
                let req = ReadingRequest {
                    subject: match topic {
                        Topic::Saju => Subject::Saju,
                        Topic::Astrology => Subject::Astrology,
                    },
                    chart: Some(chart.clone()),
                    question: b.question.clone(),
                    locale: b.locale,
                    mode,
                    topic: Some(topic),
                    top_k: 2,
                    year: EVAL_YEAR,
                    max_tokens: options.max_tokens,
                    chart_ms: 0.0,
                };
                let Some(body) = read(engine, req).await else {
                    a.failed += 1;
                    continue;
                };
                let text = body
                    .pointer("/reading/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let citations = body
                    .pointer("/reading/citations")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let numbers: HashSet<u64> = citations
                    .iter()
                    .filter_map(|c| c.get("n").and_then(Value::as_u64))
                    .collect();
                a.n += 1;
                let key_ok = match topic {
                    Topic::Saju => states_day_master(text, &chart, b.locale),
                    Topic::Astrology => states_sun_sign(text, &chart, b.locale),
                };
                a.key += usize::from(key_ok);
                for c in &citations {
                    a.cites += 1;
                    let id_ok = c
                        .get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| known.contains(id));
                    a.cites_ok += usize::from(id_ok);
                }
                // A marker that names no citation counts as an invalid citation.
                for n in cited_numbers(text) {
                    if !numbers.contains(&(n as u64)) {
                        a.cites += 1;
                    }
                }
                a.lang += usize::from(in_language(text, b.locale.code()));
                let (rep, total) = repeats(text);
                if verbose && (rep > 0 || !key_ok) {
                    eprintln!(
                        "--- {} {} {} (repeats {rep}, key fact {key_ok})\n{text}\n",
                        b.date,
                        b.time,
                        topic.name()
                    );
                }
                a.rep += rep;
                a.sentences += total;
                a.chars += text.chars().count();
            }
        }
    }
    Ok(acc.into_iter().map(|(k, a)| (k, a.row())).collect())
}

/// The report as a table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<28} {:>4} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6}\n",
        "topic/locale/mode", "n", "key_fact", "cites_ok", "language", "repeated", "chars", "failed"
    );
    for (k, r) in report {
        out.push_str(&format!(
            "{:<28} {:>4} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.0} {:>6}\n",
            k,
            r.readings,
            r.key_fact,
            r.citations_valid,
            r.language,
            r.repeated,
            r.mean_chars,
            r.failed
        ));
    }
    out
}

/// The recorded baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    pub command: String,
    pub births: usize,
    pub seed: u64,
    pub year: i32,
    /// The retrieval the figures were measured over (`hybrid …` or `keyword …`).
    #[serde(default)]
    pub retrieval: String,
    pub rows: Report,
}

/// Regressions of `current` against `baseline` (rows present in both).
pub fn compare(baseline: &Report, current: &Report, tolerance: f64) -> Vec<String> {
    let mut out = Vec::new();
    for (k, b) in baseline {
        let Some(c) = current.get(k) else {
            continue;
        };
        for (name, bv, cv) in [
            ("key_fact", b.key_fact, c.key_fact),
            ("citations_valid", b.citations_valid, c.citations_valid),
            ("language", b.language, c.language),
        ] {
            if cv < bv - tolerance {
                out.push(format!(
                    "{k} {name}: {cv:.3} < recorded {bv:.3} - {tolerance}"
                ));
            }
        }
        if c.repeated > b.repeated + tolerance {
            out.push(format!(
                "{k} repeated: {:.3} > recorded {:.3} + {tolerance}",
                c.repeated, b.repeated
            ));
        }
        if c.failed > b.failed {
            out.push(format!("{k} failed: {} > recorded {}", c.failed, b.failed));
        }
    }
    out
}

/// `starpillar eval readings` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadingsArgs {
    /// The corpus folder: searched through `--store` when that index was built from it with
    /// the `--embed-model` embedder (hybrid search), else indexed in memory (keyword search).
    #[arg(long, default_value = "corpus")]
    pub corpus: PathBuf,
    /// The index to search (default: the data dir's `index/edge`).
    #[command(flatten)]
    pub store: crate::retrieval::args::StoreArgs,
    /// Keyword search over the corpus in memory, even when the index exists.
    #[arg(long)]
    pub keyword: bool,
    /// How many births (half ko, half en).
    #[arg(long, default_value_t = 32)]
    pub births: usize,
    /// Modes to evaluate: compose, generate (needs a loaded generator), or both.
    #[arg(long, value_delimiter = ',', default_value = "compose")]
    pub modes: Vec<String>,
    /// Compare with this baseline; exit 1 on a regression beyond 0.02.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Record the figures as the baseline in this file.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print every reading that misses its key fact or repeats a sentence.
    #[arg(long)]
    pub verbose: bool,
    /// English births read in `generate` mode (the small offline models write English only).
    #[arg(long, default_value_t = 4)]
    pub generate_births: usize,
    /// Tokens per generated reading.
    #[arg(long, default_value_t = 160)]
    pub generate_max_tokens: usize,
    /// The generator (`--gen-model`, device, threads).
    #[command(flatten)]
    pub engine: crate::engine::EngineArgs,
    #[command(flatten)]
    pub data: crate::config::DataDirArgs,
}

/// The engine of the eval: the sparse corpus index, the given generator, fresh metrics.
pub async fn engine(
    corpus_dir: &Path,
    generator: Option<Arc<dyn Generate>>,
) -> Result<Engine, RetrievalError> {
    Ok(engine_over(sparse_retriever(corpus_dir).await?, generator))
}

/// An engine over `retriever` with the given generator and fresh metrics.
pub fn engine_over(retriever: Retriever, generator: Option<Arc<dyn Generate>>) -> Engine {
    Engine {
        retriever: Arc::new(retriever),
        generator,
        metrics: Arc::new(RagMetrics::new()),
        prompts: prompt::global(),
    }
}

/// Load the generator `--gen-model` names (fetched into the data dir's cache).
pub fn load_generator(
    args: &ReadingsArgs,
) -> Result<Arc<dyn Generate>, crate::engine::EngineError> {
    let metrics = crate::engine::scheduler::GenMetrics::new();
    let gauge = prometheus::GaugeVec::new(
        prometheus::Opts::new("starpillar_eval_generator_load_seconds", "Load time."),
        &["model"],
    )
    .map_err(|e| crate::engine::EngineError::InvalidInput(e.to_string()))?;
    let data_dir = args.data.resolve();
    let scheduler =
        crate::engine::genload::load_generator(&args.engine, &data_dir, &metrics, &gauge)?;
    Ok(scheduler)
}

/// Run the command.
pub fn run_cli(args: &ReadingsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut modes = Vec::new();
        for m in &args.modes {
            match Mode::parse(m) {
                Some(mode) if mode != Mode::Auto => modes.push(mode),
                _ => anyhow::bail!("--modes: unknown mode {m:?} (compose, generate)"),
            }
        }
        let generator = if modes.contains(&Mode::Generate) {
            match load_generator(args) {
                Ok(g) => Some(g),
                Err(err) => {
                    eprintln!("generate: no generator ({err}); skipped");
                    None
                }
            }
        } else {
            None
        };
        let data_dir = args.data.resolve();
        let spec = args.store.spec(&data_dir)?;
        let spec = (!args.keyword).then_some(&spec);
        let opened = open_retriever(&args.corpus, spec, &args.engine, &data_dir).await?;
        eprintln!("retrieval: {}", opened.description);
        let retrieval = opened.description.clone();
        let engine = engine_over(opened.retriever, generator.clone());
        let set = births(args.births);
        eprintln!("{} births, seed {SEED}, year {EVAL_YEAR}", set.len());
        let compose: Vec<Mode> = modes
            .iter()
            .copied()
            .filter(|m| *m == Mode::Compose)
            .collect();
        let mut report = evaluate(&engine, &set, &compose, args.verbose).await?;
        if generator.is_some() {
            let english: Vec<EvalBirth> = set
                .iter()
                .filter(|b| b.locale == Locale::En)
                .take(args.generate_births)
                .cloned()
                .collect();
            let options = EvalOptions {
                max_tokens: args.generate_max_tokens,
                verbose: args.verbose,
            };
            report.extend(evaluate_with(&engine, &english, &[Mode::Generate], options).await?);
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", table(&report));
        }
        if let Some(path) = &args.write_baseline {
            let baseline = Baseline {
                command: std::env::args()
                    .skip(1)
                    .fold("starpillar".to_owned(), |s, a| s + " " + &a),
                births: set.len(),
                seed: SEED,
                year: EVAL_YEAR,
                retrieval,
                rows: report.clone(),
            };
            let mut json = serde_json::to_vec_pretty(&baseline)?;
            json.push(b'\n');
            crate::retrieval::store::write_atomic(path, &json)?;
            eprintln!("baseline written to {}", path.display());
        }
        if let Some(path) = &args.baseline {
            let baseline: Baseline = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            let failures = compare(&baseline.rows, &report, TOLERANCE);
            if !failures.is_empty() {
                eprintln!(
                    "below the baseline {}:\n  {}",
                    path.display(),
                    failures.join("\n  ")
                );
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("within {TOLERANCE} of the baseline {}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    })
}
