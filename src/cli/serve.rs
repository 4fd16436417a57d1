//! `starpillar serve`: build the state, bind, serve until SIGINT/SIGTERM, drain, exit.

use std::process::ExitCode;
use std::sync::Arc;

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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let grace = config.shutdown_grace;
    let state = Arc::new(AppState::new(config));
    crate::api::store::open_at_startup(&state).await;
    crate::engine::start_loading(&state);
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
        _ = async { shutdown_signal().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time; exiting");
        }
    }
    tracing::info!("starpillar stopped");
    Ok(())
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
