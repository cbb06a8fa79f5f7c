//! The change feed, health and reflection.

use super::*;

#[tokio::test]
async fn watch_replays_after_an_lsn_then_follows_live() -> Result<()> {
    // Goal: a feed resumed from an LSN first replays the matching changes after it (and none
    // before, none filtered out), reports where it caught up, then streams live changes.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let first = stock(&mut client, "r1", SKU, DC, 10).await?;
        stock(&mut client, "r2", "other", DC, 10).await?;
        let reserved = client
            .reserve(reserve("h1", vec![line(SKU, DC, 4)], TTL_MS))
            .await?
            .into_inner();
        client
            .release(pb::ReleaseRequest {
                reservation_id: "h1".into(),
            })
            .await?;
        let head = server.engine.ledger().next_lsn().0 - 1;

        let mut feed = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![SKU.into()],
                locations: vec![],
                after_lsn: Some(first),
            })
            .await?
            .into_inner();
        let mut seen = Vec::new();
        let mut through = 0;
        while through < head {
            let message = feed.next().await.expect("the feed stays open")?;
            through = message.through_lsn;
            for change in message.changes {
                seen.push((change.lsn, change.cause));
                assert_eq!(change.position.as_ref().map(|p| p.sku.as_str()), Some(SKU));
            }
        }
        assert_eq!(
            seen,
            [
                (reserved.lsn, pb::ChangeCause::Reserved as i32),
                (head, pb::ChangeCause::Released as i32),
            ]
        );

        // Live: a sale of the watched sku arrives with its availability.
        let sold = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-9".into(),
                sales: vec![sale("t1", 1, vec![line(SKU, DC, 3)])],
            })
            .await?
            .into_inner();
        let Some(pb::batch_item_result::Result::Recorded(recorded)) = &sold.results[0].result
        else {
            bail!("sale refused: {sold:?}");
        };
        let change = loop {
            let message = feed.next().await.expect("the feed stays open")?;
            if let Some(change) = message.changes.into_iter().next() {
                break change;
            }
        };
        assert_eq!(change.lsn, recorded.lsn);
        assert_eq!(change.cause, pb::ChangeCause::Sold as i32);
        let position = change.position.expect("a position");
        assert_eq!((position.on_hand, position.available), (7, 7));

        // A feed without after_lsn starts at the head and sees only what follows.
        let mut live = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![],
                locations: vec![DC.into()],
                after_lsn: None,
            })
            .await?
            .into_inner();
        let start = live.next().await.expect("a progress message")?;
        assert!(start.changes.is_empty());
        assert_eq!(start.through_lsn, recorded.lsn);
        let adjusted = stock(&mut client, "r3", "other", DC, 1).await?;
        let message = live.next().await.expect("a change")?;
        assert_eq!(message.changes[0].lsn, adjusted);
        assert_eq!(message.changes[0].cause, pb::ChangeCause::Adjusted as i32);

        // Resuming beyond the log is OUT_OF_RANGE.
        let ahead = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![],
                locations: vec![],
                after_lsn: Some(adjusted + 100),
            })
            .await;
        expect_error(ahead, Code::OutOfRange, "LSN_AHEAD_OF_LOG", "after_lsn");
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn health_and_reflection_answer() -> Result<()> {
    // Goal: health reports SERVING for the server and the Inventory service, and reflection
    // lists the services, so grpcurl works without local .proto files.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut health = HealthClient::new(server.channel.clone());
        for service in ["", "inventory.v1.Inventory"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await?
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }

        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(server.channel.clone());
        let requests = tokio_stream::iter([
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "inventory.v1.Inventory".into(),
                )),
            },
        ]);
        let mut answers = reflection
            .server_reflection_info(requests)
            .await?
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.next().await.expect("an answer")?.message_response
        else {
            bail!("expected a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in ["inventory.v1.Inventory", "grpc.health.v1.Health"] {
            assert!(names.contains(&expected), "{names:?} lacks {expected}");
        }
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            answers.next().await.expect("an answer")?.message_response
        else {
            bail!("expected the file of the Inventory service");
        };
        assert!(!files.file_descriptor_proto.is_empty());
        Ok(())
    })
    .await?;
    server.join().await
}
