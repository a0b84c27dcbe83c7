//! `keel keys create|list|revoke|usage`: the admin API's client. It talks
//! to a running keel (`--url`, `KEEL_URL`) with the admin token
//! (`--admin-token`, `KEEL_ADMIN_TOKEN`), so keys made here are live at
//! once and revocations take effect on that process immediately.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keel_config::{Budget, Period, RateLimit};
use keel_store::KeySettings;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct Admin {
    /// The running keel.
    #[arg(
        long,
        env = "KEEL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Its `[auth] admin_token`.
    #[arg(long, env = "KEEL_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a key. Its secret is printed once and cannot be shown again.
    Create(Create),
    /// Every key: id, name, team, models, limits, budget, state.
    List,
    /// Revoke a key: it is refused from now on.
    Revoke { id: String },
    /// A key's budgets (spend, holds, reset) and its requests in the log.
    Usage { id: String },
}

#[derive(Debug, Args)]
pub struct Create {
    /// A label for people.
    #[arg(long, default_value = "")]
    name: String,
    /// The team whose budget it shares.
    #[arg(long)]
    team: Option<String>,
    /// A tag whose budget it shares (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A model alias it may call (repeatable; none: all).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute (input plus max_tokens).
    #[arg(long)]
    tpm: Option<u32>,
    /// A budget in US dollars per --period.
    #[arg(long)]
    budget_usd: Option<f64>,
    /// day, month, or Nd (rolling N days).
    #[arg(long, default_value = "month")]
    period: Period,
    #[arg(long)]
    max_input_tokens: Option<u32>,
    #[arg(long)]
    max_output_tokens: Option<u32>,
}

pub async fn run(admin: Admin, command: KeysCommand) -> anyhow::Result<()> {
    let api = Api::new(&admin)?;
    let body = match command {
        KeysCommand::Create(c) => {
            let settings = KeySettings {
                name: c.name,
                team: c.team,
                tags: c.tags,
                models: c.models,
                rate_limit: (c.rpm.is_some() || c.tpm.is_some()).then_some(RateLimit {
                    requests_per_minute: c.rpm,
                    tokens_per_minute: c.tpm,
                }),
                budget: c.budget_usd.map(|usd| Budget {
                    usd,
                    period: c.period,
                }),
                max_input_tokens: c.max_input_tokens,
                max_output_tokens: c.max_output_tokens,
            };
            let key = api
                .call(
                    reqwest::Method::POST,
                    "/admin/keys",
                    Some(serde_json::to_value(settings)?),
                )
                .await?;
            if !admin.json {
                println!("{}", key["key"].as_str().unwrap_or_default());
                eprintln!(
                    "key {} created; the line above is its secret, shown this once: store it now",
                    key["id"].as_str().unwrap_or_default()
                );
                return Ok(());
            }
            key
        }
        KeysCommand::List => {
            let keys = api.call(reqwest::Method::GET, "/admin/keys", None).await?;
            if !admin.json {
                print_keys(&keys);
                return Ok(());
            }
            keys
        }
        KeysCommand::Revoke { id } => {
            let path = format!("/admin/keys/{id}");
            let done = api.call(reqwest::Method::DELETE, &path, None).await?;
            if !admin.json {
                println!("revoked {id}");
                return Ok(());
            }
            done
        }
        KeysCommand::Usage { id } => {
            let path = format!("/admin/keys/{id}/usage");
            let usage = api.call(reqwest::Method::GET, &path, None).await?;
            if !admin.json {
                print_usage(&usage);
                return Ok(());
            }
            usage
        }
    };
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn new(admin: &Admin) -> anyhow::Result<Api> {
        let Some(token) = admin.admin_token.clone() else {
            bail!("the admin token is needed: --admin-token or KEEL_ADMIN_TOKEN");
        };
        Ok(Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            url: admin.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url);
        let mut req = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("{status}: {message}");
        }
        Ok(body)
    }
}

fn print_keys(body: &Value) {
    println!(
        "{:<12}  {:<20}  {:<12}  {:<24}  {:<16}  STATE",
        "ID", "NAME", "TEAM", "MODELS", "BUDGET"
    );
    for k in body["keys"].as_array().into_iter().flatten() {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let models = k["models"]
            .as_array()
            .filter(|m| !m.is_empty())
            .map_or("all".to_owned(), |m| {
                m.iter().map(text).collect::<Vec<_>>().join(",")
            });
        let budget = match (k["budget"]["usd"].as_f64(), k["budget"]["period"].as_str()) {
            (Some(usd), Some(period)) => format!("${usd}/{period}"),
            _ => "-".to_owned(),
        };
        let state = if k["revoked_ms"].is_null() {
            "active"
        } else {
            "revoked"
        };
        println!(
            "{:<12}  {:<20}  {:<12}  {:<24}  {:<16}  {state}",
            text(&k["id"]),
            text(&k["name"]),
            k["team"].as_str().unwrap_or("-"),
            models,
            budget,
        );
    }
}

fn print_usage(body: &Value) {
    println!(
        "{:<24}  {:>8}  {:>12}  {:>12}  {:>12}  RESETS (unix)",
        "BUDGET", "PERIOD", "LIMIT $", "SPENT $", "HELD $"
    );
    for b in body["budgets"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:>8}  {:>12.6}  {:>12.6}  {:>12.6}  {}",
            b["scope"].as_str().unwrap_or(""),
            b["period"].as_str().unwrap_or(""),
            b["limit_usd"].as_f64().unwrap_or(0.0),
            b["spent_usd"].as_f64().unwrap_or(0.0),
            b["reserved_usd"].as_f64().unwrap_or(0.0),
            b["resets_at_ms"].as_u64().unwrap_or(0) / 1000,
        );
    }
    let r = &body["requests"];
    if r.is_null() {
        println!("no requests in the log");
    } else {
        println!(
            "requests {}  errors {}  tokens in {} out {}  cost ${:.6}",
            r["count"],
            r["errors"],
            r["input_tokens"],
            r["output_tokens"],
            r["cost_usd"].as_f64().unwrap_or(0.0)
        );
    }
}
