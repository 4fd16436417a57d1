//! Device selection (`--device auto|cpu|cuda[:N]`) and the compute thread count.
//! `auto` takes CUDA device 0 when the binary was built with the `cuda` feature and a GPU is
//! present, else the CPU (with a hint when a GPU build would help).

use std::str::FromStr;

use candle_core::Device;

use super::EngineError;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| format!("bad CUDA ordinal in {s:?} (expected cuda:N)")),
                None => Err(format!("unknown device {s:?} (auto, cpu, cuda or cuda:N)")),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Open the requested device. On a GPU, f32 matrix products use TF32 tensor cores unless
/// `STARPILLAR_CUDA_STRICT_F32=1` (checked against sentence-transformers' strict f32 on an
/// H200: see the README's CUDA section).
pub fn select(spec: DeviceSpec) -> Result<Device, EngineError> {
    let gpu = |n: usize| {
        let dev = Device::new_cuda(n).map_err(|e| EngineError::Device(format!("cuda:{n}: {e}")))?;
        let strict = std::env::var("STARPILLAR_CUDA_STRICT_F32").is_ok_and(|v| v == "1");
        candle_core::cuda::set_gemm_reduced_precision_f32(!strict);
        Ok(dev)
    };
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => gpu(n),
        DeviceSpec::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(dev) = gpu(0) {
                    return Ok(dev);
                }
            } else if !cfg!(feature = "cuda") && std::path::Path::new("/dev/nvidia0").exists() {
                tracing::info!("a GPU is present; build with `--features cuda` to use it");
            }
            Ok(Device::Cpu)
        }
    }
}

/// A short name of a device for logs and `/readyz`.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(_) => "cuda".to_owned(),
        Device::Metal(_) => "metal".to_owned(),
    }
}

/// Threads for CPU compute: `requested`, or every available core when 0.
pub fn resolve_threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// A rayon pool for CPU compute with `threads` workers (candle's matmuls run in the pool they
/// are called from).
pub fn compute_pool(threads: usize) -> Result<rayon::ThreadPool, EngineError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("starpillar-compute-{i}"))
        .build()
        .map_err(|e| EngineError::Device(format!("thread pool: {e}")))
}

/// Make candle's CPU kernels use `threads` workers. candle reads `RAYON_NUM_THREADS` (and
/// `CANDLE_NUM_THREADS`) when it first builds its pools, so this must run at start-up, before
/// any other thread exists (the CLI calls it before starting the async runtime).
pub fn configure_threads(threads: usize) {
    let n = resolve_threads(threads).to_string();
    // SAFETY: called from `main`'s thread before the runtime or any engine thread starts, so no
    // other thread can be reading the environment concurrently.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", &n);
        std::env::set_var("CANDLE_NUM_THREADS", &n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse() {
        assert_eq!("auto".parse(), Ok(DeviceSpec::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_always_opens() {
        assert!(matches!(select(DeviceSpec::Cpu), Ok(Device::Cpu)));
        assert!(resolve_threads(0) >= 1);
        assert_eq!(resolve_threads(3), 3);
    }
}
