//! CheckSellable: the compact read for a catalogue sync, against Check's numbers.

use super::*;

/// Check's `sellable` for one position.
async fn sellable_by_check(client: &mut Client, sku: &str, location: &str) -> Result<u64> {
    Ok(available(client, sku, location).await?.sellable)
}

#[tokio::test]
async fn check_sellable_answers_what_check_does_in_request_order() -> Result<()> {
    // Goal: a listing sync may read many skus at one location with CheckSellable and get, in
    // request order, exactly the `sellable` Check would give each: open holds taken off,
    // lapsed ones not, a deficit as 0, an unknown sku or location as 0, repeats answered.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "receipt-1", SKU, DC, 10).await?;
        stock(&mut client, "receipt-2", "sock", DC, 5).await?;
        stock(&mut client, "receipt-3", "hat", DC, 4).await?;
        client
            .set_safety_stock(pb::SetSafetyStockRequest {
                request_id: "ss-1".into(),
                sku: "hat".into(),
                location: DC.into(),
                qty: 6,
            })
            .await?;
        client
            .reserve(reserve("order-1", vec![line(SKU, DC, 3)], TTL_MS))
            .await?;
        client
            .reserve(reserve("order-2", vec![line("sock", DC, 2)], 1_000))
            .await?;
        // order-2's TTL passes: its units count as sellable again before the sweep records it.
        server.clock.advance_ms(2_000);

        let skus = [SKU, "sock", "never", "hat", SKU];
        let answer = client
            .check_sellable(pb::CheckSellableRequest::new(DC, skus))
            .await?
            .into_inner();
        assert_eq!(answer.sellable, [7, 5, 0, 0, 7]);
        for (sku, sellable) in skus.iter().zip(&answer.sellable) {
            assert_eq!(
                sellable_by_check(&mut client, sku, DC).await?,
                *sellable,
                "{sku}"
            );
        }

        let elsewhere = client
            .check_sellable(pb::CheckSellableRequest::new("nowhere", [SKU, "sock"]))
            .await?
            .into_inner();
        assert_eq!(elsewhere.sellable, [0, 0]);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn check_sellable_refuses_a_malformed_request_naming_every_field() -> Result<()> {
    // Goal: with no room for per-sku errors, any malformed id fails the whole call with
    // INVALID_ARGUMENT naming each bad field (`location`, `skus[i]`); an empty or oversized
    // list names `skus`; nothing is answered half.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "receipt-1", SKU, DC, 10).await?;
        let no_skus: [&str; 0] = [];
        expect_error(
            client
                .check_sellable(pb::CheckSellableRequest::new(DC, no_skus))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "skus",
        );
        let too_many = (0..1_001).map(|i| format!("sku-{i}"));
        expect_error(
            client
                .check_sellable(pb::CheckSellableRequest::new(DC, too_many))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "skus",
        );
        let long = "x".repeat(200);
        let status = expect_error(
            client
                .check_sellable(pb::CheckSellableRequest::new(
                    "",
                    [SKU, "", "ok", long.as_str(), "tab\there"],
                ))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "location",
        );
        let fields: Vec<String> = status
            .get_details_bad_request()
            .expect("a BadRequest")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["location", "skus[1]", "skus[3]", "skus[4]"]);

        // The limit itself is accepted.
        let most = (0..1_000).map(|i| format!("sku-{i}"));
        let answer = client
            .check_sellable(pb::CheckSellableRequest::new(DC, most))
            .await?
            .into_inner();
        assert_eq!(answer.sellable.len(), 1_000);
        Ok(())
    })
    .await?;
    server.join().await
}
