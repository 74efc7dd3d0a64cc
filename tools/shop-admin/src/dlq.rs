//! `dlq list`, `dlq show` and `dlq redrive`: the dead-letter queues of the stock queues, on the
//! platform's [`DeadLetters`]. Each action logs one line saying what it did to which messages.

use std::fmt::Write as _;

use shop_platform::queue::{DeadLetter, DeadLetters, QueueError, RedriveError, Selection, dead_letter_queue_name};

use crate::events;

/// A dead-letter queue and how many messages wait in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterCount {
    /// The dead-letter queue.
    pub queue: String,
    /// Ready messages in it; `None` if the queue does not exist (never declared).
    pub messages: Option<u32>,
}

/// Counts the messages in the dead-letter queue of each of `queues`.
pub async fn list(dead: &DeadLetters, queues: &[&str]) -> Result<Vec<DeadLetterCount>, QueueError> {
    let mut counts = Vec::with_capacity(queues.len());
    for queue in queues {
        let queue = dead_letter_queue_name(queue);
        let messages = dead.depth(&queue).await?;
        counts.push(DeadLetterCount { queue, messages });
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|count| match count.messages {
            Some(messages) => format!("{}={messages}", count.queue),
            None => format!("{}=absent", count.queue),
        })
        .collect();
    tracing::info!(action = "dlq.list", counts = %summary.join(" "), "counted the dead-letter queues");
    Ok(counts)
}

/// The counts as a table.
pub fn render_counts(counts: &[DeadLetterCount]) -> String {
    let width = counts.iter().map(|count| count.queue.len()).max().unwrap_or(0).max(5);
    let mut out = format!("{:<width$}  messages\n", "queue");
    for count in counts {
        let messages = count.messages.map_or_else(|| "absent".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "{:<width$}  {messages:>8}", count.queue);
    }
    out
}

/// The first `limit` dead letters of `queue`, left in the dead-letter queue.
pub async fn show(dead: &DeadLetters, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
    let letters = dead.peek(queue, limit).await?;
    let ids: Vec<&str> = letters.iter().map(|letter| letter.message.id.as_str()).collect();
    tracing::info!(
        action = "dlq.show",
        queue = %dead_letter_queue_name(queue),
        message_ids = ?ids,
        "read dead letters and returned them to their queue"
    );
    Ok(letters)
}

/// One dead letter, for reading: id, kind, death, trace id, headers and the decoded payload.
pub fn render_letter(letter: &DeadLetter) -> String {
    let message = &letter.message;
    let mut out = format!("message {}\n  kind     {}\n", message.id, message.kind);
    for death in &letter.deaths {
        let time = death
            .time
            .map_or_else(String::new, |time| format!(" at {}", time.to_rfc3339()));
        let _ = writeln!(
            out,
            "  died     in {} ({}, {} time(s)){time}",
            death.queue, death.reason, death.count
        );
    }
    if letter.deaths.is_empty()
        && let Some(reason) = message.headers.get("x-first-death-reason")
    {
        let queue = message.headers.get("x-first-death-queue").map_or("?", String::as_str);
        let _ = writeln!(out, "  died     in {queue} ({reason})");
    }
    let trace = letter.trace_id().unwrap_or_else(|| "none".to_owned());
    let _ = writeln!(out, "  trace    {trace}");
    let _ = writeln!(out, "  returned {} time(s) to the dead-letter queue", letter.returns);
    for (key, value) in &message.headers {
        let _ = writeln!(out, "  header   {key}: {value}");
    }
    let _ = writeln!(out, "  payload  {}", events::describe(&message.kind, &message.payload));
    out
}

/// Moves the `selection` of `queue`'s dead letters back to `queue`; the ids moved.
pub async fn redrive(dead: &DeadLetters, queue: &str, selection: &Selection) -> Result<Vec<String>, RedriveError> {
    let from = dead_letter_queue_name(queue);
    match dead.redrive(queue, selection).await {
        Ok(moved) => {
            tracing::info!(action = "dlq.redrive", %from, to = %queue, ?selection, message_ids = ?moved, "moved dead letters back to their queue");
            Ok(moved)
        }
        Err(error) => {
            tracing::error!(action = "dlq.redrive", %from, to = %queue, ?selection, message_ids = ?error.moved, error = %error.error, "the re-drive stopped part way");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shop_platform::queue::{Death, Message};

    use super::*;

    #[test]
    fn counts_render_as_a_table() {
        let table = render_counts(&[
            DeadLetterCount {
                queue: "stock.reserve.dead".into(),
                messages: Some(7),
            },
            DeadLetterCount {
                queue: "stock.results.dead".into(),
                messages: None,
            },
        ]);
        assert_eq!(
            table,
            "queue               messages\nstock.reserve.dead         7\nstock.results.dead    absent\n"
        );
    }

    #[test]
    fn a_letter_renders_with_its_death_trace_and_payload() {
        let letter = DeadLetter {
            message: Message {
                id: "m-1".into(),
                kind: "x.Mystery".into(),
                payload: vec![1],
                headers: BTreeMap::from([(
                    "traceparent".into(),
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                )]),
            },
            deaths: vec![Death {
                queue: "stock.results".into(),
                reason: "rejected".into(),
                count: 1,
                time: None,
            }],
            returns: 2,
        };
        let text = render_letter(&letter);
        for expected in [
            "message m-1",
            "died     in stock.results (rejected, 1 time(s))",
            "trace    4bf92f3577b34da6a3ce929d0e0e4736",
            "returned 2 time(s)",
            "payload  unknown kind",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
    }
}
