//! Test helpers (not published): start keel and the simulator in-process on
//! 127.0.0.1 ephemeral ports, and stop them when the handle drops.
//!
//! ```text
//! let (sim, _simulator) = keel_testkit::sim(SimConfig::default()).await;
//! let keel = keel_testkit::keel(&format!(r#"
//!     [providers.up]
//!     kind = "openai"
//!     base_url = "{}/v1"
//!     [models.m]
//!     targets = [{{ provider = "up", model = "x" }}]
//! "#, sim.url())).await;
//! ```

// Test helpers: failing to start a server is the test failing.
#![allow(clippy::panic)]

pub mod redis;

use std::net::SocketAddr;
use std::path::Path;

use keel_config::{Config, SimConfig};
use keel_sim::Simulator;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; dropping the handle stops it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the server to shut down gracefully and waits until it has.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Signals shutdown without waiting; the returned task ends when the
    /// server has stopped.
    pub fn begin_shutdown(mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .take()
            .unwrap_or_else(|| tokio::spawn(async { Ok(()) }))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn loopback() -> TcpListener {
    match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind 127.0.0.1:0: {e}"),
    }
}

fn spawn<F>(
    listener: TcpListener,
    serve: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> F,
) -> Running
where
    F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("listener has no address: {e}"),
    };
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, stopped));
    Running {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// The simulator's HTTP server. The returned [`Simulator`] shares its
/// counters (`stats()`).
pub async fn sim(config: SimConfig) -> (Running, Simulator) {
    let simulator = match Simulator::new(&config) {
        Ok(s) => s,
        Err(e) => panic!("invalid sim config: {e}"),
    };
    let for_server = simulator.clone();
    let running = spawn(loopback().await, move |listener, stopped| async move {
        keel_sim::serve(listener, for_server, async {
            let _ = stopped.await;
        })
        .await
    });
    (running, simulator)
}

/// keel on a config given as TOML text; environment lookups see only `env`.
/// The request log is not opened (see [`keel_logged`]).
pub async fn keel_with_env(config: &str, env: &[(&str, &str)]) -> Running {
    let (config, _warnings) = parse(config, env);
    let gateway = match keel_server::Gateway::new(config) {
        Ok(g) => g,
        Err(e) => panic!("cannot build gateway: {e}"),
    };
    run(gateway).await
}

/// keel with its `[log]` store opened, as `keel serve` runs it. Shutting
/// the handle down gracefully flushes every record.
pub async fn keel_logged(config: &str, env: &[(&str, &str)]) -> Running {
    let (config, _warnings) = parse(config, env);
    let gateway = match keel_server::Gateway::open(config).await {
        Ok(g) => g,
        Err(e) => panic!("cannot open gateway: {e}"),
    };
    run(gateway).await
}

fn parse(config: &str, env: &[(&str, &str)]) -> (Config, Vec<keel_config::Issue>) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match Config::parse(config, Path::new("."), &lookup) {
        Ok(c) => c,
        Err(e) => panic!("invalid keel config:\n{e}"),
    }
}

async fn run(gateway: keel_server::Gateway) -> Running {
    spawn(loopback().await, move |listener, stopped| async move {
        keel_server::serve(gateway, listener, async {
            let _ = stopped.await;
        })
        .await
    })
}

/// Any axum router on 127.0.0.1 (mock upstreams, test receivers).
pub async fn serve_router(router: axum::Router) -> Running {
    spawn(loopback().await, move |listener, stopped| async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    })
}

/// keel on a config given as TOML text, with an empty environment.
pub async fn keel(config: &str) -> Running {
    keel_with_env(config, &[]).await
}
