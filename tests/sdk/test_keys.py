"""Virtual keys and budgets through the official SDKs: a keel that requires
keys, issued over the admin API, passed as each SDK passes its api_key; the
SDKs raise their usual classes for keel's 401, 403, 402 and 429.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from conftest import KeelProcess
from sdk_support import CLIENT_TIMEOUT, HOST

ADMIN = "sdk-suite-admin-token-0123456789"


def keys_config(db: Path) -> str:
    return f"""\
[server]
listen = "{HOST}:0"
[auth]
admin_token = {{ env = "KEEL_ADMIN_TOKEN" }}
require_key = true
[log]
path = "{db}"
[pricing."keel-sim"]
input = 1000.0
output = 1000.0
[providers.sim]
kind = "sim"
[models.sim]
targets = [{{ provider = "sim", model = "keel-sim" }}]
[models.other]
targets = [{{ provider = "sim", model = "keel-sim" }}]
"""


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("keys")
    config = work / "keel.toml"
    config.write_text(keys_config(work / "keel.db"))
    gateway = KeelProcess(
        "keel-keys", ["serve", "--config", str(config)], work, {"KEEL_ADMIN_TOKEN": ADMIN}
    )
    try:
        yield gateway.url
    finally:
        assert gateway.stop() == 0, gateway.stderr_tail()


def issue(base: str, **settings: object) -> str:
    resp = httpx.post(
        f"{base}/admin/keys", json=settings, headers={"authorization": f"Bearer {ADMIN}"}, timeout=CLIENT_TIMEOUT
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def clients(base: str, key: str) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    return (
        openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT),
        anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT),
    )


def ask_openai(client: openai.OpenAI, model: str = "sim") -> str:
    r = client.chat.completions.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    return r.choices[0].message.content or ""


def ask_anthropic(client: anthropic.Anthropic, model: str = "sim") -> str:
    r = client.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    return r.content[0].text


def test_a_key_works_where_the_sdk_puts_it(keyed: str) -> None:
    o, a = clients(keyed, issue(keyed, name="sdk"))
    assert ask_openai(o)
    assert ask_anthropic(a)


def test_no_or_a_wrong_key_is_an_authentication_error(keyed: str) -> None:
    for key in ["sk-not-a-keel-key", "kk-aaaaaaaaaaaa-" + "B" * 32]:
        o, a = clients(keyed, key)
        with pytest.raises(openai.AuthenticationError):
            ask_openai(o)
        with pytest.raises(anthropic.AuthenticationError):
            ask_anthropic(a)


def test_a_model_outside_the_allow_list_is_a_permission_error(keyed: str) -> None:
    o, a = clients(keyed, issue(keyed, models=["sim"]))
    with pytest.raises(openai.PermissionDeniedError) as err:
        ask_openai(o, "other")
    assert "other" in str(err.value)
    with pytest.raises(anthropic.PermissionDeniedError):
        ask_anthropic(a, "other")


def test_an_exhausted_budget_is_a_402_naming_the_budget(keyed: str) -> None:
    o, a = clients(keyed, issue(keyed, budget={"usd": 0.000001, "period": "day"}))
    with pytest.raises(openai.APIStatusError) as err:
        ask_openai(o)
    assert err.value.status_code == 402
    body = err.value.response.json()["error"]
    assert body["code"] == "budget_exceeded" and "resets in" in body["message"]
    with pytest.raises(anthropic.APIStatusError) as err:
        ask_anthropic(a)
    assert err.value.status_code == 402
    assert err.value.response.json()["error"]["type"] == "billing_error"


def test_keel_s_rate_limit_is_a_rate_limit_error_that_says_so(keyed: str) -> None:
    o, _ = clients(keyed, issue(keyed, rate_limit={"requests_per_minute": 1}))
    assert ask_openai(o)
    with pytest.raises(openai.RateLimitError) as err:
        ask_openai(o)
    assert "keel's rate limit for virtual key" in str(err.value)
    assert err.value.response.headers.get("retry-after")
