"""Fixtures for the SDK end-to-end suite.

One session starts two real processes on 127.0.0.1:

- ``keel sim``: the simulator as an HTTP upstream speaking both protocols,
  driven by ``sim-script.toml`` (trigger phrases → faults, scripted answers);
- ``keel serve``: the gateway, with a generated config whose models reach
  the simulator three ways (in process, over the OpenAI protocol, over the
  Anthropic protocol) plus one model whose only provider is unavailable.

The official ``openai`` and ``anthropic`` SDKs then talk to the gateway,
unchanged. Set ``KEEL_BIN`` to the keel binary (default:
``<repo>/target/debug/keel``).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from sdk_support import CLIENT_TIMEOUT, DOORS, HOST, MISSING_KEY_ENV, SERVED_BY, Door

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "sim-script.toml"

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MAX_BODY_BYTES = 65536
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Every process this session started, for shutdown and failure reports.
_PROCESSES: list[KeelProcess] = []


def keel_bin() -> Path:
    path = Path(os.environ.get("KEEL_BIN") or REPO / "target" / "debug" / "keel")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise pytest.UsageError(
            f"keel binary not found at {path}: run `cargo build -p keel` or set KEEL_BIN"
        )
    return path


def pytest_configure(config: pytest.Config) -> None:
    keel_bin()  # fail once, clearly, rather than in every test


class KeelProcess:
    """A keel subcommand that announces its port on its first stdout line.

    stderr goes to a file (its tail is attached to failing tests); stdout is
    drained by a thread so the pipe can never fill up.
    """

    def __init__(self, name: str, args: list[str], log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        env = {k: v for k, v in os.environ.items() if k != MISSING_KEY_ENV} | (extra_env or {})
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [str(keel_bin()), "--log-format", "text", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=log_dir,
            )
        _PROCESSES.append(self)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True).start()
        self.port = self._await_port()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode(errors="replace"))
        self._lines.put(None)

    def _await_port(self) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.stop()
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before listening:\n"
                    f"{self.stderr_tail()}"
                )
            if m := LISTENING.search(line):
                return int(m.group(1))
        self.stop()
        raise RuntimeError(
            f"{self.name} did not announce its port within {STARTUP_TIMEOUT:.0f}s:\n{self.stderr_tail()}"
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr)"
        return "\n".join(ANSI.sub("", line) for line in text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT.

        Returns the exit status of a graceful stop, None if it had to be killed.
        """
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            return None


PLAIN = "max_retries = 0, breaker = { enabled = false }"


def gateway_config(sim_url: str) -> str:
    script = str(SCRIPT).replace("\\", "\\\\")
    return f"""\
[server]
listen = "{HOST}:0"
max_body_bytes = {MAX_BODY_BYTES}
shutdown_grace = "1s"

# Every provider: one call per request, no breaker. This suite checks what
# the SDKs see for each upstream behaviour; retries and breakers would turn
# a scripted 503 into a retried call or an open circuit (the Rust `chaos`
# tests cover those).

# The simulator in process.
[providers.sim]
kind = "sim"
script = "{script}"
resilience = {{ {PLAIN} }}

# The `keel sim` HTTP upstream, over each protocol. No key: none is needed.
[providers.up-openai]
kind = "openai"
base_url = "{sim_url}/v1"
timeout = "5s"
resilience = {{ {PLAIN} }}

[providers.up-anthropic]
kind = "anthropic"
base_url = "{sim_url}"
timeout = "5s"
resilience = {{ {PLAIN} }}

# Unavailable: its key variable is never set.
[providers.keyless]
kind = "openai"
base_url = "http://{HOST}:9/v1"
api_key = {{ env = "{MISSING_KEY_ENV}" }}

[models.sim]
targets = [{{ provider = "sim", model = "keel-sim" }}]

[models.via-openai]
targets = [{{ provider = "up-openai", model = "upstream-gpt" }}]

[models.via-anthropic]
targets = [{{ provider = "up-anthropic", model = "upstream-claude" }}]

[models.unavailable]
targets = [{{ provider = "keyless", model = "gpt-nowhere" }}]
"""


@pytest.fixture(scope="session")
def keel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeelProcess]:
    """The gateway (and the simulator upstream behind it), for the whole session."""
    work = tmp_path_factory.mktemp("keel")
    sim = KeelProcess("keel-sim", ["sim", "--host", HOST, "--port", "0", "--seed", "7", "--script", str(SCRIPT)], work)
    try:
        config = work / "keel.toml"
        config.write_text(gateway_config(sim.url))
        gateway = KeelProcess("keel-serve", ["serve", "--config", str(config), "--listen", f"{HOST}:0"], work)
        try:
            yield gateway
        finally:
            status = gateway.stop()
        # Checked last, so a failure here cannot leave a process behind.
        assert status == 0, f"keel serve did not exit cleanly on SIGTERM ({status}):\n{gateway.stderr_tail()}"
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def base_url(keel: KeelProcess) -> str:
    return keel.url


@pytest.fixture(scope="session")
def openai_client(base_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="test", max_retries=0, timeout=CLIENT_TIMEOUT)
    yield client
    client.close()


@pytest.fixture(scope="session")
def anthropic_client(base_url: str) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=base_url, api_key="test", max_retries=0, timeout=CLIENT_TIMEOUT)
    yield client
    client.close()


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client, for what the SDKs cannot send (bad JSON, missing fields)."""
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
        yield client


@pytest.fixture(params=list(SERVED_BY))
def model(request: pytest.FixtureRequest) -> str:
    """Every upstream kind: in process, OpenAI protocol, Anthropic protocol."""
    return request.param


@pytest.fixture(params=DOORS, ids=lambda d: d.name)
def door(request: pytest.FixtureRequest) -> Door:
    """Each front door: the OpenAI and the Anthropic protocol."""
    return request.param


@pytest.fixture
def client(door: Door, request: pytest.FixtureRequest) -> openai.OpenAI | anthropic.Anthropic:
    """The SDK client for the current front door."""
    return request.getfixturevalue(f"{door.name}_client")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for p in _PROCESSES:
            report.sections.append((f"{p.name} stderr (tail)", p.stderr_tail()))
