//! `shop-admin`: what an operator runs against a deployment after an incident. Dead-letter
//! queues: count them, read their messages decoded, move messages back to work. Orders: find
//! those still pending long after they were placed. Mesh identities: keys for internal callers,
//! tokens to call a service by hand. A library, so that tests drive the same
//! code as the binary; `main.rs` only parses, configures and prints.

pub mod cli;
pub mod config;
pub mod dlq;
pub mod events;
pub mod mesh;
pub mod orders;

use std::fmt::Write as _;

use anyhow::Context as _;
use cli::{Command, DlqCommand, OrdersCommand};
use config::AdminConfig;
use shop_platform::queue::{DeadLetters, Selection};

/// Runs `command` against the deployment `config` names; what to print on standard output.
pub async fn run(command: Command, config: &AdminConfig) -> anyhow::Result<String> {
    match command {
        Command::Help => Ok(cli::USAGE.to_owned()),
        Command::Mesh(command) => mesh::run(command, &shop_platform::config::ProcessEnv),
        Command::Dlq(command) => {
            let dead = DeadLetters::connect(config.amqp_url()?)
                .await
                .context("connecting to RabbitMQ")?;
            let outcome = run_dlq(command, config, &dead).await;
            dead.close().await;
            outcome
        }
        Command::Orders(command) => {
            let writes = matches!(command, OrdersCommand::Repair { .. });
            let db = orders::connect(config.database_url()?, writes).await?;
            let outcome = run_orders(command, config, &db).await;
            db.close().await.ok();
            outcome
        }
    }
}

async fn run_dlq(command: DlqCommand, config: &AdminConfig, dead: &DeadLetters) -> anyhow::Result<String> {
    match command {
        DlqCommand::List => {
            let queues: Vec<&str> = config
                .stock_queues
                .names()
                .into_iter()
                .chain([config.order_queues.placed.as_str()])
                .collect();
            Ok(dlq::render_counts(&dlq::list(dead, &queues).await?))
        }
        DlqCommand::Show { queue, limit } => {
            let letters = dlq::show(dead, &queue, limit).await?;
            let mut out = format!(
                "{} dead letter(s) from {} (left in the queue; reading may change their order)\n",
                letters.len(),
                shop_platform::queue::dead_letter_queue_name(&queue)
            );
            for letter in &letters {
                let _ = write!(out, "\n{}", dlq::render_letter(letter));
            }
            Ok(out)
        }
        DlqCommand::Redrive { queue, selection } => {
            let moved = dlq::redrive(dead, &queue, &selection).await?;
            if let Selection::Id(id) = &selection
                && moved.is_empty()
            {
                anyhow::bail!(
                    "no dead letter with id {id:?} in {}",
                    shop_platform::queue::dead_letter_queue_name(&queue)
                );
            }
            let mut out = format!("moved {} message(s) back to {queue}\n", moved.len());
            for id in &moved {
                let _ = writeln!(out, "  {id}");
            }
            Ok(out)
        }
    }
}

async fn run_orders(
    command: OrdersCommand,
    config: &AdminConfig,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now();
    match command {
        OrdersCommand::Stranded { older_than } => {
            let stranded = orders::stranded(db, older_than, now).await?;
            Ok(orders::render_stranded(&stranded, now))
        }
        OrdersCommand::Repair { which, action } => {
            let repaired = orders::repair(db, &config.stock_queues, &which, action, now).await?;
            let verb = match action {
                cli::Repair::AskAgain => "asked the catalog again for",
                cli::Repair::Reject => "rejected and released the stock of",
            };
            let mut out = format!("{verb} {} order(s)\n", repaired.len());
            for id in &repaired {
                let _ = writeln!(out, "  {id}");
            }
            Ok(out)
        }
    }
}
