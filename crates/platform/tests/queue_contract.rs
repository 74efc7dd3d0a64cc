//! The work queue contract, run against every adapter: RabbitMQ on loopback, the in-process
//! queue, and the in-process queue kept in a SQLite file. Each test is written once, as an
//! `async fn` taking the queue, and the `contract_tests!` macro runs it in `memory::`,
//! `sqlite::` and `rabbitmq::`. Every test uses queue names of its own, so tests run in
//! parallel; the RabbitMQ runs delete their queues afterwards. `rabbitmq_faults::` breaks
//! connections with a [`FaultProxy`] to prove reconnection; `sqlite_restarts::` reopens the
//! file to prove that the durable queue keeps what the process had not settled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    panic,
    sync::{Arc, Mutex},
    time::Duration,
};

use shop_platform::{
    queue::{AmqpQueue, Consumer, Delivery, Message, QueueError, QueueSpec, SqliteQueue, WorkQueue, ack_all},
    testing::{
        self,
        proxy::FaultProxy,
        queues::{self, ARRIVES},
    },
};
use tokio::time::{Instant, timeout};

/// The most any one test may take: a hang fails the test instead of blocking the suite.
const TEST_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait for a delivery that must come.
/// How long to wait to be satisfied that a delivery does not come.
const QUIET: Duration = Duration::from_millis(400);

macro_rules! contract_tests {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run_memory(super::$test).await;
                }
            )*
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run_sqlite(super::$test).await;
                }
            )*
        }

        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run_rabbitmq(super::$test).await;
                }
            )*
        }
    };
}

contract_tests!(
    publish_then_consume_keeps_every_field,
    publishing_to_an_undeclared_queue_is_refused,
    declare_is_idempotent,
    ack_removes_the_message,
    acking_a_batch_removes_exactly_its_messages,
    dropped_consumer_has_its_deliveries_redelivered_to_another,
    prefetch_bounds_unacked_deliveries,
    retry_counts_deliveries_then_dead_letters_after_max_deliveries,
    a_single_delivery_limit_dead_letters_on_the_first_retry,
    dead_letter_goes_straight_to_the_dead_letter_queue,
    competing_consumers_share_the_work,
    next_batch_takes_up_to_max_within_linger,
);

// ---- The contract. ----

async fn publish_then_consume_keeps_every_field(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let mut sent = message("m-1");
    sent.payload = vec![0, 1, 2, 0xfe, 0xff];
    sent.headers.insert("tracestate".to_owned(), "vendor=é✓".to_owned());
    queue.publish(&spec.name, vec![sent.clone()]).await.unwrap();

    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    let delivery = queues::arrives(consumer.as_mut()).await;
    assert_eq!(delivery.message, sent);
    assert_eq!(delivery.delivery_count, 1);
    delivery.ack().await.unwrap();
}

async fn publishing_to_an_undeclared_queue_is_refused(queue: Arc<dyn WorkQueue>) {
    let missing = testing::unique_name("qc_missing");
    let error = queue.publish(&missing, vec![message("lost")]).await.unwrap_err();
    assert!(matches!(error, QueueError::Refused(_)), "{error:?}");
    let error = queue.consume(&missing, 1).await.unwrap_err();
    assert!(matches!(error, QueueError::Refused(_)), "{error:?}");
    // The refusal did not break the adapter.
    let spec = declare(&queue, 5).await;
    queue.publish(&spec.name, vec![message("kept")]).await.unwrap();
    let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
    assert_eq!(queues::arrives(consumer.as_mut()).await.message.id, "kept");
}

async fn declare_is_idempotent(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 3).await;
    queue.publish(&spec.name, vec![message("a")]).await.unwrap();
    queue.declare(&spec).await.unwrap();
    queue.declare(&spec).await.unwrap();
    // Redeclaring kept the message, and the queue still works.
    let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
    assert_eq!(queues::arrives(consumer.as_mut()).await.message.id, "a");
    // Another delivery limit for the same queue is a conflict, as in RabbitMQ.
    let error = queue.declare(&spec.clone().with_max_deliveries(4)).await.unwrap_err();
    assert!(matches!(error, QueueError::Refused(_)), "{error:?}");
}

async fn ack_removes_the_message(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    queue.publish(&spec.name, vec![message("done")]).await.unwrap();
    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    queues::arrives(consumer.as_mut()).await.ack().await.unwrap();
    drop(consumer);

    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    stays_quiet(consumer.as_mut()).await;
    let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
    stays_quiet(dead.as_mut()).await;
}

async fn acking_a_batch_removes_exactly_its_messages(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let sent: Vec<Message> = ["a", "b", "c", "d", "e"].into_iter().map(message).collect();
    queue.publish(&spec.name, sent).await.unwrap();
    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    let batch = consumer.next_batch(3, TEST_LIMIT).await.unwrap();
    assert_eq!(ids(&batch), ["a", "b", "c"]);
    // The two after the batch are delivered too, and not settled by it.
    let d = queues::arrives(consumer.as_mut()).await;
    let e = queues::arrives(consumer.as_mut()).await;
    let results = ack_all(batch).await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(ack_all(Vec::new()).await.is_empty());
    d.ack().await.unwrap();
    drop(e);
    drop(consumer);

    // Only the one left unsettled comes again.
    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
    let again = queues::arrives(consumer.as_mut()).await;
    assert_eq!((again.message.id.as_str(), again.delivery_count), ("e", 2));
    again.ack().await.unwrap();
    stays_quiet(consumer.as_mut()).await;
}

async fn dropped_consumer_has_its_deliveries_redelivered_to_another(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    queue
        .publish(&spec.name, vec![message("a"), message("b")])
        .await
        .unwrap();

    let mut first = queue.consume(&spec.name, 10).await.unwrap();
    let a = queues::arrives(first.as_mut()).await;
    let b = queues::arrives(first.as_mut()).await;
    assert_eq!((a.message.id.as_str(), a.delivery_count), ("a", 1));
    assert_eq!((b.message.id.as_str(), b.delivery_count), ("b", 1));
    // The consumer dies without settling anything.
    drop(first);
    // Its deliveries are void: settling them now is refused, the broker redelivers instead.
    assert!(matches!(a.ack().await, Err(QueueError::ChannelClosed)));
    assert!(matches!(b.retry().await, Err(QueueError::ChannelClosed)));

    let mut second = queue.consume(&spec.name, 10).await.unwrap();
    let mut redelivered = Vec::new();
    for _ in 0..2 {
        let delivery = queues::arrives(second.as_mut()).await;
        redelivered.push((delivery.message.id.clone(), delivery.delivery_count));
        delivery.ack().await.unwrap();
    }
    redelivered.sort();
    assert_eq!(redelivered, [("a".to_owned(), 2), ("b".to_owned(), 2)]);
    stays_quiet(second.as_mut()).await;
}

async fn prefetch_bounds_unacked_deliveries(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    queue
        .publish(&spec.name, (1..=5).map(|i| message(&format!("m{i}"))).collect())
        .await
        .unwrap();

    let mut consumer = queue.consume(&spec.name, 2).await.unwrap();
    let m1 = queues::arrives(consumer.as_mut()).await;
    let m2 = queues::arrives(consumer.as_mut()).await;
    // Two unacked: the third waits.
    stays_quiet(consumer.as_mut()).await;

    m1.ack().await.unwrap();
    let m3 = queues::arrives(consumer.as_mut()).await;
    assert_eq!(m3.message.id, "m3");
    stays_quiet(consumer.as_mut()).await;

    m2.ack().await.unwrap();
    m3.ack().await.unwrap();
    let m4 = queues::arrives(consumer.as_mut()).await;
    let m5 = queues::arrives(consumer.as_mut()).await;
    let ids: Vec<String> = [&m4, &m5].iter().map(|d| d.message.id.clone()).collect();
    assert_eq!(ids, ["m4", "m5"]);
    m4.ack().await.unwrap();
    m5.ack().await.unwrap();
    stays_quiet(consumer.as_mut()).await;
}

async fn retry_counts_deliveries_then_dead_letters_after_max_deliveries(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 3).await;
    let sent = message("poison");
    queue.publish(&spec.name, vec![sent.clone()]).await.unwrap();

    let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
    for expected in 1..=3 {
        let delivery = queues::arrives(consumer.as_mut()).await;
        assert_eq!(delivery.message.id, "poison");
        assert_eq!(delivery.delivery_count, expected);
        delivery.retry().await.unwrap();
    }
    // Three deliveries used up: not in the main queue any more...
    stays_quiet(consumer.as_mut()).await;
    // ...but in the dead-letter queue, whole.
    let mut dead = queue.consume(&spec.dead_letter_queue(), 1).await.unwrap();
    let delivery = queues::arrives(dead.as_mut()).await;
    assert_dead_letter(&delivery, &sent, &spec.name, "delivery_limit");
    delivery.ack().await.unwrap();
    stays_quiet(dead.as_mut()).await;
}

async fn a_single_delivery_limit_dead_letters_on_the_first_retry(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 1).await;
    let sent = message("once");
    queue.publish(&spec.name, vec![sent.clone()]).await.unwrap();

    let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
    let delivery = queues::arrives(consumer.as_mut()).await;
    assert_eq!(delivery.delivery_count, 1);
    delivery.retry().await.unwrap();
    stays_quiet(consumer.as_mut()).await;

    let mut dead = queue.consume(&spec.dead_letter_queue(), 1).await.unwrap();
    assert_dead_letter(
        &queues::arrives(dead.as_mut()).await,
        &sent,
        &spec.name,
        "delivery_limit",
    );
}

async fn dead_letter_goes_straight_to_the_dead_letter_queue(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    let sent = message("undecodable");
    queue
        .publish(&spec.name, vec![sent.clone(), message("fine")])
        .await
        .unwrap();

    let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
    let delivery = queues::arrives(consumer.as_mut()).await;
    assert_eq!(
        (delivery.message.id.as_str(), delivery.delivery_count),
        ("undecodable", 1)
    );
    delivery.dead_letter().await.unwrap();

    let mut dead = queue.consume(&spec.dead_letter_queue(), 1).await.unwrap();
    let delivery = queues::arrives(dead.as_mut()).await;
    assert_dead_letter(&delivery, &sent, &spec.name, "rejected");
    delivery.ack().await.unwrap();

    // Only the dead-lettered message left the main queue, and it did not come back.
    let fine = queues::arrives(consumer.as_mut()).await;
    assert_eq!((fine.message.id.as_str(), fine.delivery_count), ("fine", 1));
    fine.ack().await.unwrap();
    stays_quiet(consumer.as_mut()).await;
}

async fn competing_consumers_share_the_work(queue: Arc<dyn WorkQueue>) {
    const COUNT: usize = 200;
    let spec = declare(&queue, 5).await;
    // Both subscribe first, so that neither gets everything by arriving first.
    let consumers = [
        queue.consume(&spec.name, 10).await.unwrap(),
        queue.consume(&spec.name, 10).await.unwrap(),
    ];
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let workers: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    match timeout(QUIET, consumer.next()).await {
                        Ok(delivery) => {
                            let delivery = delivery.unwrap();
                            mine.push(delivery.message.id.clone());
                            seen.lock().unwrap().insert(delivery.message.id.clone());
                            // Work takes time; without it, on a starved machine one consumer
                            // can legitimately drain the queue before the other is scheduled.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            delivery.ack().await.unwrap();
                        }
                        // Quiet: done once everything has been seen by someone.
                        Err(_) if seen.lock().unwrap().len() >= COUNT => return mine,
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    let sent: Vec<Message> = (0..COUNT).map(|i| message(&format!("job-{i:03}"))).collect();
    let expected: HashSet<String> = sent.iter().map(|m| m.id.clone()).collect();
    queue.publish(&spec.name, sent).await.unwrap();

    let mut shares = Vec::new();
    for worker in workers {
        shares.push(worker.await.unwrap());
    }
    let all: Vec<&String> = shares.iter().flatten().collect();
    assert!(
        shares.iter().all(|share| !share.is_empty()),
        "one consumer got nothing: {:?}",
        shares_len(&shares)
    );
    assert_eq!(
        all.len(),
        COUNT,
        "some message was delivered twice: {:?}",
        shares_len(&shares)
    );
    assert_eq!(all.into_iter().cloned().collect::<HashSet<_>>(), expected);
}

fn shares_len(shares: &[Vec<String>]) -> Vec<usize> {
    shares.iter().map(Vec::len).collect()
}

async fn next_batch_takes_up_to_max_within_linger(queue: Arc<dyn WorkQueue>) {
    let spec = declare(&queue, 5).await;
    queue
        .publish(&spec.name, (1..=5).map(|i| message(&format!("b{i}"))).collect())
        .await
        .unwrap();
    let mut consumer = queue.consume(&spec.name, 10).await.unwrap();

    // More than `max` waiting: exactly `max`, in order.
    let batch = timeout(ARRIVES, consumer.next_batch(3, Duration::from_millis(300)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), ["b1", "b2", "b3"]);
    for delivery in batch {
        delivery.ack().await.unwrap();
    }

    // Fewer than `max`: whatever arrives within the linger, then it returns.
    let started = Instant::now();
    let batch = timeout(ARRIVES, consumer.next_batch(10, Duration::from_millis(300)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), ["b4", "b5"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "next_batch lingered {:?}",
        started.elapsed()
    );
    for delivery in batch {
        delivery.ack().await.unwrap();
    }

    // Nothing waiting: it waits for the first delivery, however long, then lingers for more.
    let publisher = {
        let queue = queue.clone();
        let name = spec.name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            queue.publish(&name, vec![message("late")]).await.unwrap();
        })
    };
    let batch = timeout(ARRIVES, consumer.next_batch(10, Duration::from_millis(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&batch), ["late"]);
    publisher.await.unwrap();
}

fn ids(batch: &[Delivery]) -> Vec<&str> {
    batch.iter().map(|delivery| delivery.message.id.as_str()).collect()
}

// ---- RabbitMQ only: broken connections. ----

mod rabbitmq_faults {
    use super::*;

    /// A broker that forgot a queue (redeployed without its volume, or the queue deleted by
    /// hand) gets it declared again by the next publish: nothing is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_to_a_forgotten_queue_declares_it_again() {
        run_rabbitmq(async |queue: Arc<dyn WorkQueue>| {
            let spec = declare(&queue, 3).await;
            testing::delete_queues(std::slice::from_ref(&spec.name)).await;
            queue.publish(&spec.name, vec![message("after")]).await.unwrap();
            let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
            // Declared whole again: the dead-letter queue too, with the same delivery limit.
            let delivery = arrives_after_retries(consumer.as_mut(), 3).await;
            assert_eq!(delivery.message.id, "after");
            delivery.retry().await.unwrap();
            let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
            assert_eq!(queues::arrives(dead.as_mut()).await.message.id, "after");
        })
        .await;
    }

    /// A consumer whose queue is deleted under it re-subscribes to the queue declared again, and
    /// work resumes without a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_of_a_deleted_queue_resumes_on_the_queue_declared_again() {
        run_rabbitmq(async |queue: Arc<dyn WorkQueue>| {
            let spec = declare(&queue, 5).await;
            let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
            queue.publish(&spec.name, vec![message("before")]).await.unwrap();
            queues::arrives(consumer.as_mut()).await.ack().await.unwrap();

            testing::delete_queues(std::slice::from_ref(&spec.name)).await;
            // The consumer comes back with its delivery: dropping it would return the delivery.
            let next = tokio::spawn(async move {
                let delivery = timeout(ARRIVES, consumer.next()).await;
                (consumer, delivery)
            });
            // The consumer declares the queue again when it re-subscribes; the publisher when
            // it finds the queue missing. Whichever comes first, the message is not lost.
            tokio::time::sleep(Duration::from_millis(300)).await;
            queue.publish(&spec.name, vec![message("after")]).await.unwrap();
            let (_consumer, delivery) = next.await.unwrap();
            let delivery = delivery.expect("the consumer resumed").unwrap();
            assert_eq!(delivery.message.id, "after");
            delivery.ack().await.unwrap();
        })
        .await;
    }

    /// A publisher whose connection is cut again and again loses nothing: failed publishes
    /// are retried (as the outbox relay does) and the adapter reconnects by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn severed_publisher_connections_lose_nothing() {
        run_rabbitmq(async |direct: Arc<dyn WorkQueue>| {
            const COUNT: usize = 300;
            let spec = declare(&direct, 5).await;
            let (proxy, proxied_url) = FaultProxy::in_front_of(&testing::amqp_url(), 5672).await;
            let publisher = AmqpQueue::connect(&proxied_url).await.unwrap();

            let mut failures = 0;
            for i in 0..COUNT {
                let batch = vec![message(&format!("p-{i:03}"))];
                if i % 75 == 50 {
                    // Cut the connection while this publish is in flight.
                    let (result, ()) = tokio::join!(publisher.publish(&spec.name, batch.clone()), async {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        proxy.sever_all();
                    });
                    if result.is_ok() {
                        continue;
                    }
                    failures += 1;
                }
                let mut attempts = 0;
                while let Err(error) = publisher.publish(&spec.name, batch.clone()).await {
                    assert!(matches!(error, QueueError::Unavailable(_)), "{error:?}");
                    failures += 1;
                    attempts += 1;
                    assert!(attempts < 20, "the publisher never recovered: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tracing::info!(failures, "publishes failed and were retried");
            // Reconnected by itself: a publish after the last cut goes through at once, and
            // the adapter reports ready.
            publisher.publish(&spec.name, vec![message("after")]).await.unwrap();
            assert!(publisher.ready().await);

            // Every message arrived at least once (a failed publish may have been stored, so
            // duplicates are allowed).
            let mut expected: HashSet<String> = (0..COUNT).map(|i| format!("p-{i:03}")).collect();
            expected.insert("after".to_owned());
            let mut consumer = direct.consume(&spec.name, 100).await.unwrap();
            while !expected.is_empty() {
                let delivery = queues::arrives(consumer.as_mut()).await;
                expected.remove(&delivery.message.id);
                delivery.ack().await.unwrap();
            }
        })
        .await;
    }

    /// A subscription given up because the broker answered late leaves no consumer behind at
    /// the broker holding messages that nobody reads: the next message goes to a consumer that
    /// reads it, at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_given_up_on_a_late_answer_holds_no_message() {
        run_rabbitmq(async |direct: Arc<dyn WorkQueue>| {
            let spec = declare(&direct, 5).await;
            let (proxy, proxied_url) = FaultProxy::in_front_of(&testing::amqp_url(), 5672).await;
            let slow = AmqpQueue::connect(&proxied_url).await.unwrap();
            // Every answer of the broker 0.8 s late: the channel opens at 0.8 s, the prefetch
            // is set at 1.6 s, and the subscription's answer would come at 2.4 s, after the 2 s
            // the adapter waits, while the broker has made the subscription.
            proxy.delay_replies(Duration::from_millis(800));
            let given_up = slow.consume(&spec.name, 10).await;
            assert!(given_up.is_err(), "the subscription was not given up");
            proxy.delay_replies(Duration::ZERO);
            // The late answers arrive meanwhile.
            tokio::time::sleep(Duration::from_secs(2)).await;
            direct.publish(&spec.name, vec![message("next")]).await.unwrap();
            let mut reader = direct.consume(&spec.name, 10).await.unwrap();
            let delivery = timeout(Duration::from_secs(3), reader.next())
                .await
                .expect("the message went to a consumer that nobody reads")
                .unwrap();
            assert_eq!(delivery.message.id, "next");
            delivery.ack().await.unwrap();
            drop(slow);
        })
        .await;
    }

    /// A consumer whose connection is cut re-subscribes by itself: it keeps receiving, and
    /// what it held unacknowledged comes back to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn severed_consumer_connection_resubscribes() {
        run_rabbitmq(async |direct: Arc<dyn WorkQueue>| {
            let spec = declare(&direct, 5).await;
            let (proxy, proxied_url) = FaultProxy::in_front_of(&testing::amqp_url(), 5672).await;
            let via_proxy = AmqpQueue::connect(&proxied_url).await.unwrap();
            let mut consumer = via_proxy.consume(&spec.name, 10).await.unwrap();

            direct
                .publish(&spec.name, vec![message("before"), message("held")])
                .await
                .unwrap();
            let before = queues::arrives(consumer.as_mut()).await;
            assert_eq!(before.message.id, "before");
            before.ack().await.unwrap();
            let held = queues::arrives(consumer.as_mut()).await;
            assert_eq!((held.message.id.as_str(), held.delivery_count), ("held", 1));

            // An ack is fire-and-forget: give it time to cross the proxy before the cut.
            tokio::time::sleep(Duration::from_millis(200)).await;
            proxy.sever_all();
            direct.publish(&spec.name, vec![message("after")]).await.unwrap();

            // The held delivery's channel died with the connection: it comes back, counted.
            let mut got = Vec::new();
            while got.len() < 2 {
                let delivery = queues::arrives(consumer.as_mut()).await;
                let id = delivery.message.id.clone();
                let count = delivery.delivery_count;
                delivery.ack().await.unwrap();
                // Should the ack of "before" have been lost in the cut after all, it is
                // redelivered: at least once, as consumers expect.
                if id != "before" {
                    got.push((id, count));
                }
            }
            got.sort();
            let [(after, after_count), (held_again, held_count)] = got.as_slice() else {
                panic!("expected two deliveries, got {got:?}");
            };
            assert_eq!((after.as_str(), held_again.as_str(), *held_count), ("after", "held", 2));
            // The broker may have pushed "after" to the dead connection before noticing the
            // cut; then it comes back counted too.
            assert!((1..=2).contains(after_count), "{got:?}");
            assert!(matches!(held.ack().await, Err(QueueError::ChannelClosed)));
            stays_quiet(consumer.as_mut()).await;
        })
        .await;
    }

    /// With no broker at the address, connecting gives up after its bounded backoff with
    /// `Unavailable`, rather than hanging or panicking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_broker_is_unavailable_within_the_backoff_budget() {
        testing::init_test_logging();
        // A port nobody listens on: bind one, then free it.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let error = timeout(
            TEST_LIMIT,
            AmqpQueue::connect(&format!("amqp://guest:secret@{free}/%2f")),
        )
        .await
        .expect("connect must give up by itself")
        .unwrap_err();
        assert!(matches!(&error, QueueError::Unavailable(_)), "{error:?}");
        assert!(!error.to_string().contains("secret"), "the password leaked: {error}");
        // It retried with backoff (100 + 200 + 400 + 800 ms) before giving up.
        assert!(
            started.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            started.elapsed()
        );
    }
}

// ---- The SQLite-backed queue only: what a restart keeps. ----

mod sqlite_restarts {
    use std::path::Path;

    use super::*;

    /// Opens the file again, waiting for the previous holder (dropped just before) to let go.
    async fn reopen(path: &Path) -> Arc<dyn WorkQueue> {
        Arc::new(SqliteQueue::open(path).await.unwrap())
    }

    /// Acked messages stay gone; the delivered-but-unsettled one comes back, counted; dead
    /// letters stay in `<queue>.dead` with their headers; messages never delivered come back
    /// as they were. Everything in the publish order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopened_file_redelivers_what_was_unsettled_and_keeps_dead_letters() {
        testing::init_test_logging();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        timeout(TEST_LIMIT, async {
            let spec = QueueSpec::new("stock.reserve").with_max_deliveries(5);
            let poison = message("poison");
            {
                let queue = reopen(&path).await;
                queue.declare(&spec).await.unwrap();
                queue
                    .publish(
                        &spec.name,
                        vec![message("acked"), poison.clone(), message("held"), message("waiting")],
                    )
                    .await
                    .unwrap();
                let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
                queues::arrives(consumer.as_mut()).await.ack().await.unwrap();
                let delivery = queues::arrives(consumer.as_mut()).await;
                assert_eq!(delivery.message.id, "poison");
                delivery.dead_letter().await.unwrap();
                let held = queues::arrives(consumer.as_mut()).await;
                assert_eq!((held.message.id.as_str(), held.delivery_count), ("held", 1));
                // The process stops with "held" unsettled and "waiting" never delivered: on
                // disk, this is exactly what a killed process leaves.
            }
            let queue = reopen(&path).await;
            // Declaring again (as every service does at start) is a no-op.
            queue.declare(&spec).await.unwrap();
            let mut consumer = queue.consume(&spec.name, 10).await.unwrap();
            let held = queues::arrives(consumer.as_mut()).await;
            assert_eq!((held.message.id.as_str(), held.delivery_count), ("held", 2));
            assert_eq!(held.message, message("held"));
            let waiting = queues::arrives(consumer.as_mut()).await;
            assert_eq!((waiting.message.id.as_str(), waiting.delivery_count), ("waiting", 1));
            held.ack().await.unwrap();
            waiting.ack().await.unwrap();
            stays_quiet(consumer.as_mut()).await;

            let mut dead = queue.consume(&spec.dead_letter_queue(), 10).await.unwrap();
            assert_dead_letter(&queues::arrives(dead.as_mut()).await, &poison, &spec.name, "rejected");
            stays_quiet(dead.as_mut()).await;
        })
        .await
        .expect("the test took too long");
    }

    /// Delivery counts are stored: a message that is delivered and never settled, again and
    /// again across restarts (one that kills the process, say), reaches its delivery limit and
    /// lands in the dead-letter queue instead of looping forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivery_counts_survive_restarts_up_to_the_dead_letter_queue() {
        testing::init_test_logging();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        timeout(TEST_LIMIT, async {
            let spec = QueueSpec::new("stock.results").with_max_deliveries(2);
            let sent = message("crashes-the-consumer");
            for expected in 1..=2 {
                let queue = reopen(&path).await;
                queue.declare(&spec).await.unwrap();
                if expected == 1 {
                    queue.publish(&spec.name, vec![sent.clone()]).await.unwrap();
                }
                let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
                let delivery = queues::arrives(consumer.as_mut()).await;
                assert_eq!(delivery.delivery_count, expected);
                // Give the count, written without waiting, time to reach the file.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let queue = reopen(&path).await;
            let mut consumer = queue.consume(&spec.name, 1).await.unwrap();
            stays_quiet(consumer.as_mut()).await;
            let mut dead = queue.consume(&spec.dead_letter_queue(), 1).await.unwrap();
            assert_dead_letter(
                &queues::arrives(dead.as_mut()).await,
                &sent,
                &spec.name,
                "delivery_limit",
            );
        })
        .await
        .expect("the test took too long");
    }

    /// One process at a time: a second open of a file in use fails (after the busy timeout)
    /// rather than splitting the queues in two.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_in_use_is_refused() {
        testing::init_test_logging();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let first = SqliteQueue::open(&path).await.unwrap();
        let error = timeout(TEST_LIMIT, SqliteQueue::open(&path))
            .await
            .expect("the second open must give up by itself")
            .unwrap_err();
        assert!(matches!(&error, QueueError::Unavailable(_)), "{error:?}");
        assert!(error.to_string().contains("in use by another process"), "{error}");
        assert!(first.ready().await);
    }
}

// ---- Helpers. ----

fn message(id: &str) -> Message {
    Message {
        id: id.to_owned(),
        kind: "shop.events.v1.Test".to_owned(),
        payload: format!("payload of {id}").into_bytes(),
        headers: BTreeMap::from([(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]),
    }
}

async fn declare(queue: &Arc<dyn WorkQueue>, max_deliveries: u32) -> QueueSpec {
    queues::declare_own(queue, "qc", max_deliveries).await
}

/// Returns the next delivery `retries - 1` times and hands over the last delivery.
async fn arrives_after_retries(consumer: &mut dyn Consumer, retries: u32) -> Delivery {
    let mut delivery = queues::arrives(consumer).await;
    for _ in 1..retries {
        delivery.retry().await.unwrap();
        delivery = queues::arrives(consumer).await;
    }
    delivery
}

/// Asserts that no delivery comes for a while.
async fn stays_quiet(consumer: &mut dyn Consumer) {
    if let Ok(delivery) = timeout(QUIET, consumer.next()).await {
        panic!("expected no delivery, got {delivery:?}");
    }
}

/// A dead letter is the original message (plus the broker's `x-first-death-*` headers),
/// counted afresh in the dead-letter queue.
fn assert_dead_letter(delivery: &Delivery, sent: &Message, queue: &str, reason: &str) {
    let got = &delivery.message;
    assert_eq!(
        (&got.id, &got.kind, &got.payload),
        (&sent.id, &sent.kind, &sent.payload)
    );
    for (key, value) in &sent.headers {
        assert_eq!(got.headers.get(key), Some(value), "header {key}");
    }
    assert_eq!(got.headers.get("x-first-death-queue").map(String::as_str), Some(queue));
    assert_eq!(
        got.headers.get("x-first-death-reason").map(String::as_str),
        Some(reason)
    );
    assert_eq!(delivery.delivery_count, 1);
}

async fn run_memory<F>(test: impl FnOnce(Arc<dyn WorkQueue>) -> F)
where
    F: Future<Output = ()>,
{
    queues::run_on_memory(TEST_LIMIT, test).await;
}

async fn run_sqlite<F>(test: impl FnOnce(Arc<dyn WorkQueue>) -> F)
where
    F: Future<Output = ()>,
{
    testing::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let queue = SqliteQueue::open(dir.path().join("queue.db")).await.unwrap();
    timeout(TEST_LIMIT, test(Arc::new(queue)))
        .await
        .expect("the test took too long");
}

/// Runs `test` against RabbitMQ, then deletes the queues it declared (pass or fail).
async fn run_rabbitmq<F>(test: impl FnOnce(Arc<dyn WorkQueue>) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    queues::run_on_rabbitmq(TEST_LIMIT, test).await;
}
