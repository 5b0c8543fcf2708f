//! A service for the integration tests: echoes, makes nested calls, sleeps
//! and publishes, so routing, action_id propagation and events can be
//! checked against the real router. Not shipped on the appliance.

use anyhow::Context;
use clap::Parser;
use duplex_services::{action, params, telemetry, Config, RpcError, ServiceBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

/// Command-line arguments.
#[derive(Parser)]
struct Args {
    /// Service name.
    #[arg(long)]
    name: String,
    /// The one namespace it owns.
    #[arg(long)]
    namespace: String,
    /// Configuration file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
struct NestedCall {
    method: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    controller: Option<String>,
}

#[derive(Deserialize)]
struct Big {
    bytes: u64,
}

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

#[derive(Deserialize)]
struct Publish {
    topic: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    partner: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(&args.name);
    let cfg = Config::load(args.config.as_deref()).context("config")?;
    let ns = args.namespace.clone();
    let mut b = ServiceBuilder::new(&cfg, &args.name, "0.0.0-test", &[ns.as_str()]);
    let name = args.name.clone();
    b.method(&format!("{ns}.echo"), move |ctx, p| {
        let name = name.clone();
        async move {
            tracing::info!("echo");
            Ok(json!({"service": name, "params": p, "action_id": ctx.action_id, "caller": ctx.caller}))
        }
    });
    b.method(&format!("{ns}.call"), |ctx, p| async move {
        let c: NestedCall = params(p)?;
        tracing::info!(method = %c.method, "nested call");
        // Deliberately the plain client: the action_id must come from the
        // task-local context, not be passed by hand.
        let inner = ctx
            .router
            .call_at(c.controller.as_deref(), &c.method, c.params)
            .await
            .map_err(RpcError::from)?;
        Ok(json!({"inner": inner, "action_id": action::current()}))
    });
    b.method(&format!("{ns}.sleep"), |_ctx, p| async move {
        let s: Sleep = params(p)?;
        tokio::time::sleep(std::time::Duration::from_millis(s.ms)).await;
        Ok(json!({"slept_ms": s.ms}))
    });
    // The same sleep, registered with its own 10 s limit: the router must
    // let it outlive its default call timeout.
    b.method(&format!("{ns}.long"), |_ctx, p| async move {
        let s: Sleep = params(p)?;
        tokio::time::sleep(std::time::Duration::from_millis(s.ms)).await;
        Ok(json!({"slept_ms": s.ms}))
    })
    .timeout(&format!("{ns}.long"), std::time::Duration::from_secs(10));
    b.method(&format!("{ns}.publish"), |ctx, p| async move {
        let e: Publish = params(p)?;
        ctx.router
            .publish(&e.topic, e.data, e.partner)
            .await
            .map_err(RpcError::from)?;
        Ok(json!({"published": e.topic, "action_id": ctx.action_id}))
    });
    // A reply of `bytes` bytes of padding, for the message limits.
    b.method(&format!("{ns}.big"), |_ctx, p| async move {
        let b: Big = params(p)?;
        let n = usize::try_from(b.bytes).unwrap_or(usize::MAX).min(64 << 20);
        Ok(json!({"pad": "x".repeat(n)}))
    });
    let svc = b.start().await?;
    svc.run_until_signal().await?;
    Ok(())
}
