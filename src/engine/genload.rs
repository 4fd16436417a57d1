//! Loading the text generator named by `--gen-model` (a manifest model fetched offline into
//! the cache, or a local GGUF file) and starting its [`Scheduler`] — over our native forward on
//! the CPU, over candle's on a GPU; for `serve`, in the background, with the `generator`
//! component not ready until it is installed.

use candle_core::Device;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::LlamaBackend;
use super::gemma3::{self, GemmaBackend};
use super::native::NativeBackend;
use super::qwen;
use super::qwen_codec::QwenBackend;
use super::scheduler::{GenMetrics, ModelInfo, SchedConfig, Scheduler};
use super::{EngineArgs, EngineError, device, fetch, manifest};

/// Where the generation model `spec` lives, with its name, sha256 and languages.
pub fn resolve_gen_model(spec: &str, data_dir: &Path) -> Result<(ModelInfo, PathBuf), EngineError> {
    let path = Path::new(spec);
    if path.is_file() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_owned());
        let info = ModelInfo {
            name,
            file_hash: fetch::sha256_file(path)?,
            languages: Vec::new(),
        };
        return Ok((info, path.to_path_buf()));
    }
    // Not a manifest name but `owner/name[:file.gguf]`: an HF repo (online).
    if let (Err(_), Some(repo)) = (manifest::find(spec), super::hfhub::parse(spec)) {
        let path = super::hfhub::fetch_gguf(&repo, data_dir)?;
        let info = ModelInfo {
            name: spec.to_owned(),
            file_hash: fetch::sha256_file(&path)?,
            languages: Vec::new(),
        };
        return Ok((info, path));
    }
    let entry = manifest::find(spec)?;
    if entry.kind != manifest::ModelKind::Generation || entry.format != "gguf" {
        return Err(EngineError::InvalidInput(format!(
            "{spec} is not a GGUF generation model"
        )));
    }
    let dir = fetch::fetch(&fetch::cache_root(data_dir), &entry)?;
    let file_hash = entry
        .files
        .iter()
        .find(|f| f.name == entry.main)
        .map(|f| f.sha256.clone())
        .unwrap_or_default();
    let info = ModelInfo {
        name: entry.name.clone(),
        file_hash,
        languages: languages_of(&entry),
    };
    Ok((info, dir.join(&entry.main)))
}

/// The languages a manifest generator writes well (its `languages` field).
fn languages_of(entry: &manifest::ModelEntry) -> Vec<String> {
    serde_json::to_value(entry)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("languages")?.clone()).ok())
        .unwrap_or_default()
}

/// Fetch (if needed) and load the generator `args` names, and start its scheduler.
pub fn load_generator(
    args: &EngineArgs,
    data_dir: &Path,
    metrics: &GenMetrics,
    load_seconds: &prometheus::GaugeVec,
) -> Result<Arc<Scheduler>, EngineError> {
    let (info, path) = resolve_gen_model(&args.gen_model, data_dir)?;
    let dev = device::select(args.device)?;
    let config = SchedConfig {
        queue: args.gen_queue,
        max_streams: args.gen_max_streams,
        threads: device::resolve_threads(args.threads),
        ..SchedConfig::default()
    };
    let started = std::time::Instant::now();
    let log = |name: &str, on: &Device| {
        let secs = started.elapsed().as_secs_f64();
        load_seconds.with_label_values(&[name]).set(secs);
        tracing::info!(model = %name, device = %device::describe(on), seconds = secs,
            "generator loaded");
    };
    let arch = architecture(&path)?;
    let cpu_only = arch == "gemma3" || qwen::Arch::from_name(&arch).is_some();
    if cpu_only && !dev.is_cpu() {
        tracing::warn!(
            "the {arch} forward is CPU-only: it runs on the CPU, not on {}",
            device::describe(&dev)
        );
    }
    if arch == "gemma3" {
        let backend = GemmaBackend::load(&path, gemma3::DEFAULT_CONTEXT, &Device::Cpu)?;
        log(&info.name, &Device::Cpu);
        return Scheduler::start(info, backend, config, metrics.clone());
    }
    if qwen::Arch::from_name(&arch).is_some() {
        let backend = QwenBackend::load(&path, args.gen_requantise)?;
        log(&info.name, &Device::Cpu);
        return Scheduler::start(info, backend, config, metrics.clone());
    }
    if arch != "llama" {
        return Err(EngineError::Format(format!(
            "{}: GGUF architecture {arch:?} is not supported (llama, qwen2, qwen3, gemma3)",
            path.display()
        )));
    }
    if dev.is_cpu() {
        let backend = NativeBackend::load(&path, args.gen_requantise)?;
        log(&info.name, &Device::Cpu);
        Scheduler::start(info, backend, config, metrics.clone())
    } else {
        let backend = LlamaBackend::load(&path, &dev)?;
        log(&info.name, &dev);
        Scheduler::start(info, backend, config, metrics.clone())
    }
}

/// The `general.architecture` of a GGUF file (`llama`, `gemma3`, …).
pub fn architecture(path: &Path) -> Result<String, EngineError> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)
        .map_err(|e| EngineError::Format(format!("{}: {e}", path.display())))?;
    content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .ok_or_else(|| EngineError::Format(format!("{}: no general.architecture", path.display())))
}

/// Load the generator in the background for `serve` (`--gen-model none` disables it): the
/// `generator` component is not ready until it is installed in `state.generator`.
pub fn start_loading(state: &crate::state::SharedState, load_seconds: prometheus::GaugeVec) {
    let args = state.config.engine.clone();
    if args.gen_model.eq_ignore_ascii_case("none") {
        return;
    }
    state.set_component("generator", false, format!("loading {}", args.gen_model));
    let metrics = GenMetrics::new();
    metrics.register(&state.metrics);
    let state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("starpillar-gen-load".into())
        .spawn(move || {
            match load_generator(&args, &state.config.data_dir, &metrics, &load_seconds) {
                Ok(scheduler) => {
                    let detail = format!(
                        "{} (up to {} streams)",
                        args.gen_model, args.gen_max_streams
                    );
                    if state.generator.set(scheduler).is_err() {
                        tracing::warn!("a generator was already installed; keeping it");
                    }
                    state.set_component("generator", true, detail);
                }
                Err(err) => {
                    tracing::error!(error = %err, "the generator failed to load");
                    state.set_component("generator", false, format!("failed: {err}"));
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the generator loader thread");
    }
}
