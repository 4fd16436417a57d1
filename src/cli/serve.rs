//! `starpillar serve`: build the state, bind, serve until SIGINT/SIGTERM, drain, exit.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{ServeArgs, ServeConfig};
use crate::state::AppState;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("starpillar-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    warn_if_read_only(&config.data_dir);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let grace = config.shutdown_grace;
    let state = Arc::new(AppState::new(config));
    crate::api::store::open_at_startup(&state).await;
    crate::engine::start_loading(&state);
    crate::retrieval::startup::start(&state);
    let app = crate::api::app(state.clone());
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %state.config.data_dir.display(),
        version = crate::VERSION,
        "starpillar is serving"
    );
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    let drained = tokio::spawn(async move { server.await });
    tokio::pin!(drained);
    tokio::select! {
        result = &mut drained => result.context("server task")?.context("serving")?,
        _ = async {
            shutdown_signal().await;
            let streams_end = stream_deadline(grace);
            tokio::time::sleep(streams_end).await;
            tracing::info!("ending open reading streams with a shutting_down event");
            state.ending_streams.send_replace(true);
            tokio::time::sleep(grace.saturating_sub(streams_end)).await;
        } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time; exiting");
        }
    }
    tracing::info!("starpillar stopped");
    Ok(())
}

/// How long after the signal open reading streams may run before they are ended (with an
/// `error` event): a second before the grace period runs out (at least half of it), so their
/// connections close and the server exits cleanly instead of cutting them mid-event.
fn stream_deadline(grace: Duration) -> Duration {
    grace.saturating_sub(Duration::from_secs(1)).max(grace / 2)
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; draining"),
        _ = terminate => tracing::info!("SIGTERM received; draining"),
    }
}

/// Log a clear error when the data directory cannot be written (a read-only volume, wrong
/// owner): the server still starts and serves what needs no files, while the components that
/// write there (the embedded SQLite store, model downloads, the index) report it in `/readyz`.
fn warn_if_read_only(dir: &std::path::Path) {
    let probe = dir.join(format!(".starpillar-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(err) => tracing::error!(
            data_dir = %dir.display(),
            error = %err,
            "the data directory is not writable: the embedded database, model downloads and \
             the index will fail; fix its permissions or mount it read-write"
        ),
    }
}
