//! Starting the servers under test on 127.0.0.1 and stopping them: nginx as
//! the fixed upstream, keel (release build), and the peer gateway (LiteLLM
//! from PyPI, set up by `bench/peer/`). Each is a child process killed when
//! its handle drops.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::upstream::COMPLETION;

/// A server under test: the leader of its own process group, stopped with
/// the whole group when the handle drops.
pub struct Server {
    pub addr: SocketAddr,
    pid: u32,
    /// Our child, when we started the leader ourselves (to reap it).
    child: Option<Child>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `--` first: procps-ng's kill reads `-PID` after `-TERM` as a
        // process id only behind it, else the group is silently not
        // signalled (and the harness would wait forever below).
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.pid)])
            .status();
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound then released; the race is harmless here).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(mut cmd: Command) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    // Own process group, so the whole tree (workers included) is stopped.
    cmd.process_group(0);
    cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))
}

/// Waits until `addr` accepts TCP connections, bounded.
fn wait_ready(addr: SocketAddr, within: Duration, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{name} did not start listening on {addr} within {within:?}")
}

pub fn nginx(dir: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {dir};\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      default_type application/json;\n      \
         return 200 '{COMPLETION}';\n    }}\n  }}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::null());
    let child = spawn(cmd)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(addr, Duration::from_secs(10), "nginx")?;
    Ok(Server {
        addr,
        pid: child.id(),
        child: Some(child),
    })
}

/// keel on a generated config in `dir`: `bench` → nginx, `bench-stream` →
/// the SSE upstream, `bench-flaky` → the flaky upstream. With `log`, every
/// request is recorded to a SQLite file in `dir` (keel's default), else the
/// request log is off.
pub fn keel(
    bin: &Path,
    dir: &Path,
    nginx: SocketAddr,
    upstream: SocketAddr,
    log: bool,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let store = if log {
        "store = \"sqlite\"\npath = \"keel.db\""
    } else {
        "store = \"off\""
    };
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
[log]
{store}
[providers.nginx]
kind = "openai"
base_url = "http://{nginx}/v1"
[providers.sse]
kind = "openai"
base_url = "http://{upstream}/sse/v1"
[providers.flaky]
kind = "openai"
base_url = "http://{upstream}/flaky/v1"
# Like the peer's set-up (num_retries: 0): an error goes straight to the
# fallback, one extra call per injected failure.
resilience = {{ max_retries = 0 }}
[models.bench]
targets = [{{ provider = "nginx", model = "bench-upstream" }}]
[models.bench-stream]
targets = [{{ provider = "sse", model = "bench-upstream" }}]
[models.bench-flaky]
targets = [{{ provider = "flaky", model = "bench-upstream" }}, {{ provider = "nginx", model = "bench-upstream" }}]
"#
    );
    let path = dir.join("keel.toml");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("KEEL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = spawn(cmd)?;
    let stdout = child.stdout.take().context("keel stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .with_context(|| format!("unexpected first line from keel: {line:?}"))?
        .parse()?;
    Ok(Server {
        addr,
        pid: child.id(),
        child: Some(child),
    })
}

/// LiteLLM proxy via `bench/peer/run-litellm.sh`, which starts it in its
/// own process group, waits until it is live and prints its PID.
pub fn litellm(repo: &Path, nginx: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Server> {
    let port = free_port()?;
    let out = Command::new("bash")
        .arg(repo.join("bench/peer/run-litellm.sh"))
        .arg(port.to_string())
        .arg(nginx.port().to_string())
        .arg(upstream.port().to_string())
        .current_dir(repo)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run bench/peer/run-litellm.sh")?;
    if !out.status.success() {
        bail!("litellm did not start (see above); run with --no-peer to skip it");
    }
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("run-litellm.sh did not print a PID")?;
    Ok(Server {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        pid,
        child: None,
    })
}
