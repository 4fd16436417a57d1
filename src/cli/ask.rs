//! `starpillar ask "question" [--birth …]`: a grounded reading in the terminal — with
//! `--birth`, a saju (`--topic saju`, the default) or natal-chart reading of that birth and the
//! question; without, an answer to the question from the corpus. Searches the index (`--store`,
//! default the data dir's edge index) with the e5 embedder — hybrid dense + keyword — when it
//! exists and was built from this corpus, else the corpus folder's keyword index built in
//! memory (a notice on stderr says which); `compose` mode; the text streams as it is produced
//! and the citations follow.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;

use crate::config::DataDirArgs;
use crate::engine::EngineArgs;
use crate::rag::compose::Subject;
use crate::rag::eval::{EvalBirth, astro_chart, engine_over, open_retriever, saju_chart};
use crate::rag::pipeline::{self, Event, ReadingRequest};
use crate::rag::text::hangul_ratio;
use crate::rag::{Locale, Mode, Topic};
use crate::retrieval::args::StoreArgs;

/// `starpillar ask` flags.
#[derive(Debug, Clone, Args)]
pub struct AskArgs {
    /// The question.
    pub question: String,
    /// Birth local date-time, `YYYY-MM-DDTHH:MM`: read the question against this chart.
    #[arg(long)]
    pub birth: Option<String>,
    /// `saju` (default) or `astrology`.
    #[arg(long, default_value = "saju")]
    pub topic: String,
    /// `female` or `male` (saju luck direction).
    #[arg(long, default_value = "female")]
    pub sex: String,
    /// IANA time zone of `--birth`.
    #[arg(long, default_value = "Asia/Seoul")]
    pub timezone: String,
    #[arg(long, default_value_t = 37.5665, allow_negative_numbers = true)]
    pub latitude: f64,
    #[arg(long, default_value_t = 126.978, allow_negative_numbers = true)]
    pub longitude: f64,
    /// `ko` or `en`; default: the question's script.
    #[arg(long)]
    pub locale: Option<String>,
    /// Only `compose` is available from the command line for now (`auto` means compose).
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// The corpus folder (the index must have been built from it to be used).
    #[arg(long, default_value = "corpus")]
    pub corpus: PathBuf,
    /// Print the `{reading, meta}` JSON instead of streaming the text.
    #[arg(long)]
    pub json: bool,
    /// The index to search (default: the data dir's `index/edge`).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Keyword search over the corpus in memory, even when the index exists.
    #[arg(long)]
    pub keyword: bool,
    /// The embedder of the queries (`--embed-model`; must be the index's).
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
}

pub fn run(args: AskArgs) -> anyhow::Result<ExitCode> {
    let locale = match args.locale.as_deref() {
        Some(l) => Locale::parse(l).context("--locale: expected ko or en")?,
        None if hangul_ratio(&args.question) > 0.3 => Locale::Ko,
        None => Locale::En,
    };
    match Mode::parse(&args.mode) {
        Some(Mode::Auto | Mode::Compose) => {}
        Some(Mode::Generate) => {
            anyhow::bail!("--mode generate: no text generator is loaded by `ask`")
        }
        None => anyhow::bail!("--mode: expected auto, compose or generate"),
    }
    let topic = match args.topic.as_str() {
        "saju" => Topic::Saju,
        "astrology" => Topic::Astrology,
        t => anyhow::bail!("--topic: unknown topic {t:?} (saju, astrology)"),
    };
    let (subject, chart) = match &args.birth {
        None => (Subject::Question, None),
        Some(b) => {
            let (date, time) = b
                .split_once('T')
                .context("--birth: expected YYYY-MM-DDTHH:MM")?;
            let birth = EvalBirth {
                date: date.to_owned(),
                time: time.to_owned(),
                sex: if args.sex == "male" { "male" } else { "female" },
                city: String::new(),
                timezone: args.timezone.clone(),
                latitude: args.latitude,
                longitude: args.longitude,
                locale,
                question: None,
            };
            let chart = match topic {
                Topic::Saju => saju_chart(&birth),
                Topic::Astrology => astro_chart(&birth),
            }
            .context("--birth: the chart could not be computed (check the date, time and zone)")?;
            let subject = match topic {
                Topic::Saju => Subject::Saju,
                Topic::Astrology => Subject::Astrology,
            };
            (subject, Some(chart))
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let data_dir = args.data.resolve();
        let spec = args.store.spec(&data_dir)?;
        let spec = (!args.keyword).then_some(&spec);
        let opened = open_retriever(&args.corpus, spec, &args.engine, &data_dir).await?;
        eprintln!("retrieval: {}", opened.description);
        let engine = engine_over(opened.retriever, None);
        let request = ReadingRequest {
            subject,
            chart,
            question: Some(args.question.clone()),
            locale,
            mode: Mode::Compose,
            topic: (subject != Subject::Question || args.topic != "saju").then_some(topic),
            top_k: 4,
            year: crate::api::ask::current_year(),
            max_tokens: 512,
            chart_ms: 0.0,
        };
        let (tx, mut rx) = mpsc::channel(64);
        let task = tokio::spawn(pipeline::run(engine, request, tx));
        let mut status = ExitCode::SUCCESS;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Delta(d) if !args.json => print!("{d}"),
                Event::Done(body) => {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&body)?);
                    } else {
                        println!("\n");
                        for c in body
                            .pointer("/reading/citations")
                            .and_then(|c| c.as_array())
                            .into_iter()
                            .flatten()
                        {
                            println!(
                                "[{}] {} — {} ({})",
                                c["n"],
                                c["title"].as_str().unwrap_or(""),
                                c["source"].as_str().unwrap_or(""),
                                c["id"].as_str().unwrap_or("")
                            );
                        }
                    }
                }
                Event::Error { code, message } => {
                    eprintln!("error: {code}: {message}");
                    status = ExitCode::FAILURE;
                }
                _ => {}
            }
        }
        task.await.context("the reading task")?;
        Ok(status)
    })
}
