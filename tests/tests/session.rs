//! The `Session` stream end to end: checks and writes over one bidirectional stream, each
//! answer carrying its request's correlation id.
//!
//! Each test states its goal first. A [`ControlledLog`] holds durability back where a test needs
//! writes to stay in flight (answers out of order, the read-ahead bound, shutdown); the others
//! serve a real `RedbLog`. Every test runs under `bounded` (30 s).

use anyhow::{Context, Result, bail};
use inv_tests::*;
use pb::session_request::Request as Ask;
use pb::session_response::Response as Answer;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const SKU: &str = "sneaker-42";
const DC: &str = "web-dc";
const TTL_MS: u64 = 60_000;
/// The read-ahead bound the contract promises (proto: "at most 1,024 requests ahead").
const SESSION_IN_FLIGHT_MAX: u64 = 1_024;

/// The client side of one session: requests go in through a channel, answers come out of the
/// response stream.
struct Session {
    requests: mpsc::Sender<pb::SessionRequest>,
    answers: tonic::Streaming<pb::SessionResponse>,
}

impl Session {
    async fn open(client: &mut Client) -> Result<Session> {
        let (requests, outbound) = mpsc::channel(4_096);
        let answers = client
            .session(ReceiverStream::new(outbound))
            .await?
            .into_inner();
        Ok(Session { requests, answers })
    }

    async fn send(&self, correlation_id: u64, request: Ask) -> Result<()> {
        self.requests
            .send(pb::SessionRequest {
                correlation_id,
                request: Some(request),
            })
            .await
            .context("the session's request side is closed")
    }

    /// The next answer; an error if the stream ended instead.
    async fn answer(&mut self) -> Result<pb::SessionResponse> {
        match self.answers.next().await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(status)) => bail!("the session ended with {status:?}"),
            None => bail!("the session ended"),
        }
    }

    /// Sends one request and waits for its answer (nothing else is in flight).
    async fn ask(&mut self, correlation_id: u64, request: Ask) -> Result<Answer> {
        self.send(correlation_id, request).await?;
        let answer = self.answer().await?;
        assert_eq!(answer.correlation_id, correlation_id);
        answer.response.context("an answer without a response")
    }
}

fn check(positions: &[(&str, &str)]) -> Ask {
    Ask::Check(pb::CheckRequest {
        positions: positions
            .iter()
            .map(|(sku, location)| pb::Position {
                sku: (*sku).into(),
                location: (*location).into(),
            })
            .collect(),
    })
}

fn reserve_one(id: &str, qty: u64) -> Ask {
    Ask::Reserve(reserve(id, vec![line(SKU, DC, qty)], TTL_MS))
}

fn availability(answer: &Answer) -> Option<&pb::PositionAvailability> {
    match answer {
        Answer::Check(check) => match check.results.first()?.result.as_ref()? {
            pb::check_result::Result::Availability(a) => Some(a),
            pb::check_result::Result::Error(_) => None,
        },
        _ => None,
    }
}

fn granted(answer: &Answer) -> bool {
    matches!(
        answer,
        Answer::Reserve(pb::ReserveResponse {
            result: Some(pb::reserve_response::Result::Granted(_)),
            ..
        })
    )
}

/// Checks `answer` is the error its unary call would have failed with.
fn expect_error(answer: &Answer, code: Code, reason: pb::ErrorReason, field: &str) {
    let Answer::Error(error) = answer else {
        panic!("expected an error naming {field:?}, got {answer:?}");
    };
    assert_eq!(error.code, code as u32, "{error:?}");
    assert_eq!(error.reason, reason as i32, "{error:?}");
    assert_eq!(error.field, field, "{error:?}");
    assert!(!error.message.is_empty());
}

#[tokio::test]
async fn a_session_answers_checks_and_writes_as_the_unary_calls_do() -> Result<()> {
    // Goal: over one stream, every kind of request gets the answer its unary RPC gives, tagged
    // with its correlation id; a malformed request, an unknown hold and an ended hold get the
    // unary call's error as an answer and the stream goes on; out of stock is a normal answer;
    // and closing the request side ends the stream OK.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        client.adjust(adjust("receipt-1", SKU, DC, 10)).await?;
        let mut session = Session::open(&mut client).await?;

        let answer = session.ask(1, reserve_one("s-1", 3)).await?;
        assert!(granted(&answer), "{answer:?}");
        // Requests are decided in arrival order: the check sees the hold.
        let answer = session.ask(2, check(&[(SKU, DC)])).await?;
        let a = availability(&answer).context("an availability")?;
        assert_eq!((a.on_hand, a.reserved, a.available), (10, 3, 7));

        // A malformed reserve: the unary call's INVALID_ARGUMENT, naming the field.
        let bad = Ask::Reserve(reserve("s-bad", vec![line("", DC, 1)], TTL_MS));
        let answer = session.ask(3, bad).await?;
        expect_error(
            &answer,
            Code::InvalidArgument,
            pb::ErrorReason::InvalidField,
            "lines[0].sku",
        );

        // Out of stock is an answer listing the short line, not an error.
        let answer = session.ask(4, reserve_one("s-2", 100)).await?;
        let Answer::Reserve(pb::ReserveResponse {
            result: Some(pb::reserve_response::Result::Rejected(rejected)),
            duplicate: false,
            ..
        }) = &answer
        else {
            bail!("expected a rejection, got {answer:?}");
        };
        assert_eq!(rejected.short_lines.len(), 1);
        assert_eq!(rejected.short_lines[0].requested, 100);
        assert_eq!(rejected.short_lines[0].available, 7);

        let commit = Ask::Commit(pb::CommitRequest {
            reservation_id: "s-1".into(),
            lines: vec![],
        });
        let Answer::Commit(committed) = session.ask(5, commit).await? else {
            bail!("expected a commit answer");
        };
        assert_eq!(committed.lines.len(), 1);
        assert_eq!(committed.lines[0].committed, 3);

        let release = |id: &str| {
            Ask::Release(pb::ReleaseRequest {
                reservation_id: id.into(),
            })
        };
        let answer = session.ask(6, release("s-1")).await?;
        expect_error(
            &answer,
            Code::FailedPrecondition,
            pb::ErrorReason::HoldAlreadyCommitted,
            "",
        );
        let answer = session.ask(7, release("never-placed")).await?;
        expect_error(
            &answer,
            Code::NotFound,
            pb::ErrorReason::ReservationNotFound,
            "reservation_id",
        );

        // A request with nothing set, an empty check, and a check with one bad position.
        session
            .requests
            .send(pb::SessionRequest {
                correlation_id: 8,
                request: None,
            })
            .await?;
        let answer = session.answer().await?;
        assert_eq!(answer.correlation_id, 8);
        expect_error(
            &answer.response.context("a response")?,
            Code::InvalidArgument,
            pb::ErrorReason::InvalidField,
            "request",
        );
        let answer = session.ask(9, check(&[])).await?;
        expect_error(
            &answer,
            Code::InvalidArgument,
            pb::ErrorReason::InvalidField,
            "positions",
        );
        let Answer::Check(checked) = session.ask(10, check(&[(SKU, DC), ("", DC)])).await? else {
            bail!("expected a check answer");
        };
        assert_eq!(checked.results.len(), 2);
        match &checked.results[1].result {
            Some(pb::check_result::Result::Error(error)) => {
                assert_eq!(error.field, "positions[1].sku");
            }
            other => bail!("expected an item error, got {other:?}"),
        }

        // A retry gets the recorded answer, exactly as a unary retry does.
        let answer = session.ask(11, reserve_one("s-2", 100)).await?;
        let Answer::Reserve(retried) = &answer else {
            bail!("expected a reserve answer, got {answer:?}");
        };
        assert!(retried.duplicate, "{retried:?}");
        let unary = client
            .reserve(reserve("s-2", vec![line(SKU, DC, 100)], TTL_MS))
            .await?
            .into_inner();
        assert_eq!(&unary, retried);

        // The session and the unary Check agree.
        let answer = session.ask(12, check(&[(SKU, DC)])).await?;
        let a = availability(&answer).context("an availability")?;
        assert_eq!(a, &available(&mut client, SKU, DC).await?);
        assert_eq!((a.on_hand, a.reserved, a.available), (7, 0, 7));

        // Closing the request side ends the stream OK.
        let Session {
            requests,
            mut answers,
        } = session;
        drop(requests);
        assert!(answers.next().await.is_none(), "the stream ends OK");
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn answers_come_when_ready_and_each_carries_its_correlation_id() -> Result<()> {
    // Goal: a check answers at once while an earlier write waits for durability (answers are
    // out of order), the write answers once durable, and under pipelining every request gets
    // exactly one answer of its own kind under its own correlation id.
    let (log, server) = TestServer::over_controlled_log(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        client.adjust(adjust("receipt-1", SKU, DC, 200)).await?;
        let mut session = Session::open(&mut client).await?;

        log.hold();
        session.send(100, reserve_one("p-1", 5)).await?;
        session.send(101, check(&[(SKU, DC)])).await?;
        session.send(102, reserve_one("p-2", 1_000)).await?;
        session.send(103, check(&[(SKU, DC)])).await?;
        // The checks overtake the writes, which wait for durability.
        let first = session.answer().await?;
        let second = session.answer().await?;
        assert_eq!((first.correlation_id, second.correlation_id), (101, 103));
        let a = availability(first.response.as_ref().context("a response")?)
            .context("an availability")?;
        assert_eq!(
            a.reserved, 5,
            "decided in arrival order: the check sees p-1"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), session.answers.next())
                .await
                .is_err(),
            "a write answered before it was durable"
        );

        log.release();
        let mut writes = HashMap::new();
        for _ in 0..2 {
            let answer = session.answer().await?;
            writes.insert(
                answer.correlation_id,
                answer.response.context("a response")?,
            );
        }
        assert!(granted(&writes[&100]), "{:?}", writes[&100]);
        assert!(
            matches!(
                &writes[&102],
                Answer::Reserve(pb::ReserveResponse {
                    result: Some(pb::reserve_response::Result::Rejected(_)),
                    ..
                })
            ),
            "{:?}",
            writes[&102]
        );

        // Pipelined: 200 requests before reading any answer; even ids reserve, odd ids check,
        // and every 50th request is malformed.
        let n = 200u64;
        for id in 1_000..1_000 + n {
            let request = match (id % 2, id % 50) {
                (_, 0) => Ask::Reserve(reserve("", vec![line(SKU, DC, 1)], TTL_MS)),
                (0, _) => reserve_one(&format!("pipe-{id}"), 1),
                _ => check(&[(SKU, DC)]),
            };
            session.send(id, request).await?;
        }
        let mut seen = HashMap::new();
        for _ in 0..n {
            let answer = session.answer().await?;
            let id = answer.correlation_id;
            let response = answer.response.context("a response")?;
            match (id % 2, id % 50) {
                (_, 0) => expect_error(
                    &response,
                    Code::InvalidArgument,
                    pb::ErrorReason::InvalidField,
                    "reservation_id",
                ),
                (0, _) => assert!(granted(&response), "{id}: {response:?}"),
                _ => assert!(availability(&response).is_some(), "{id}: {response:?}"),
            }
            assert!(seen.insert(id, ()).is_none(), "{id} answered twice");
        }
        assert_eq!(seen.len() as u64, n);
        assert!(seen.keys().all(|id| (1_000..1_000 + n).contains(id)));
        let a = available(&mut client, SKU, DC).await?;
        assert_eq!(
            a.reserved,
            5 + 96,
            "p-1 and the 96 well-formed pipelined reserves"
        );
        drop(session);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_session_reads_at_most_1024_requests_ahead_of_its_answers() -> Result<()> {
    // Goal: with durability held back, the server decides only 1,024 of a stream's writes and
    // then stops reading (flow control holds the rest at the client); once writes become
    // durable it answers them and reads on, and every request is answered.
    let (log, server) = TestServer::over_controlled_log(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        client.adjust(adjust("receipt-1", SKU, DC, 10_000)).await?;
        let mut session = Session::open(&mut client).await?;
        log.hold();
        let n = 1_500u64;
        for id in 0..n {
            session
                .send(id, reserve_one(&format!("ahead-{id}"), 1))
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.pending() < SESSION_IN_FLIGHT_MAX {
            if Instant::now() > deadline {
                bail!("only {} writes were decided", log.pending());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(log.pending(), SESSION_IN_FLIGHT_MAX, "read past the bound");

        log.release();
        let mut seen = vec![false; n as usize];
        for _ in 0..n {
            let answer = session.answer().await?;
            let response = answer.response.context("a response")?;
            assert!(granted(&response), "{response:?}");
            let slot = &mut seen[answer.correlation_id as usize];
            assert!(!*slot, "{} answered twice", answer.correlation_id);
            *slot = true;
        }
        assert_eq!(available(&mut client, SKU, DC).await?.reserved, n as i64);
        drop(session);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn shutdown_answers_what_was_read_then_ends_the_session() -> Result<()> {
    // Goal: on shutdown a session stops reading, still answers the write it has in flight, then
    // ends with UNAVAILABLE (SHUTTING_DOWN) instead of holding graceful shutdown until the
    // drain timeout.
    let (log, mut server) = TestServer::over_controlled_log(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        client.adjust(adjust("receipt-1", SKU, DC, 10)).await?;
        let mut session = Session::open(&mut client).await?;
        let answer = session.ask(1, check(&[(SKU, DC)])).await?;
        assert!(availability(&answer).is_some());

        log.hold();
        session.send(2, reserve_one("last", 1)).await?;
        while log.pending() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.begin_shutdown();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !server.is_stopped(),
            "serve returned with a write in flight"
        );
        log.release();

        let answer = session.answer().await?;
        assert_eq!(answer.correlation_id, 2);
        assert!(granted(&answer.response.context("a response")?));
        let status = match session.answers.next().await {
            Some(Err(status)) => status,
            other => bail!("expected the session to end with a status, got {other:?}"),
        };
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        use tonic_types::StatusExt;
        let info = status.get_details_error_info().context("an ErrorInfo")?;
        assert_eq!(info.reason, "SHUTTING_DOWN");
        drop(session);
        drop(client);
        Ok(())
    })
    .await?;
    // The drain timeout is 5 s: a session that held shutdown would take that long.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.join()).await??;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the session held shutdown"
    );
    Ok(())
}
