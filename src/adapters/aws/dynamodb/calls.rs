//! The calls every path shares: paged queries, batches retried with
//! back-off, and transactions whose cancellation reasons are kept.

use super::*;

/// BatchWriteItem's limit of requests per call.
const BATCH_WRITE_MAX: usize = 25;

/// How often unprocessed keys or items are sent again, and the back-off.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    rounds: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Delay before retry `round` (1-based): exponential with "equal jitter".
    fn delay(&self, round: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << round.min(16))
            .min(self.cap);
        let half = exp / 2;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter_range = half.as_nanos().max(1) as u64;
        half + Duration::from_nanos(u64::from(nanos) % jitter_range)
    }
}

/// The request path: a throttled batch is retried briefly, then 503.
pub(super) const REQUEST_BACKOFF: Backoff = Backoff {
    rounds: 3,
    base: Duration::from_millis(25),
    cap: Duration::from_millis(200),
};
/// The import path: patient exponential back-off (about 40 s in total).
pub(super) const IMPORT_BACKOFF: Backoff = Backoff {
    rounds: 10,
    base: Duration::from_millis(50),
    cap: Duration::from_secs(8),
};

/// Why a transaction was cancelled, one reason per item, in order.
pub(super) struct Cancelled(Vec<CancellationReason>);

impl Cancelled {
    pub(super) fn code(&self, i: usize) -> &str {
        self.0.get(i).and_then(|r| r.code()).unwrap_or("None")
    }
    pub(super) fn failed_condition(&self, i: usize) -> bool {
        self.code(i) == "ConditionalCheckFailed"
    }
    /// Another transaction touched one of the items at the same moment:
    /// nothing was written; trying again is safe.
    pub(super) fn conflict(&self) -> bool {
        self.0
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"))
    }
    pub(super) fn item(&self, i: usize) -> Option<&Item> {
        self.0.get(i).and_then(|r| r.item())
    }
    pub(super) fn error(&self, op: &str) -> Unavailable {
        let codes: Vec<&str> = (0..self.0.len()).map(|i| self.code(i)).collect();
        Unavailable::new(SERVICE, format!("{op} cancelled: {}", codes.join(", ")))
    }
}

impl DynamoStore {
    /// All pages of a query, or stop once `want` items were collected.
    pub(super) async fn query_pages(
        &self,
        query: QueryFluentBuilder,
        want: Option<usize>,
        op: &'static str,
    ) -> Result<Vec<Item>, Unavailable> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let resp = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(op, &e))?;
            out.extend(resp.items.unwrap_or_default());
            if want.is_some_and(|w| out.len() >= w) {
                break;
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A `BatchGetItem`, sending unprocessed keys again with back-off.
    pub(super) async fn batch_get(
        &self,
        mut request: HashMap<String, KeysAndAttributes>,
        backoff: Backoff,
        op: &'static str,
    ) -> Result<HashMap<String, Vec<Item>>, Unavailable> {
        let mut out: HashMap<String, Vec<Item>> = HashMap::new();
        for round in 0..backoff.rounds {
            if round > 0 {
                tokio::time::sleep(backoff.delay(round)).await;
            }
            let resp = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| unavailable(op, &e))?;
            for (table, items) in resp.responses.unwrap_or_default() {
                out.entry(table).or_default().extend(items);
            }
            match resp.unprocessed_keys {
                Some(u) if !u.is_empty() => request = u,
                _ => return Ok(out),
            }
        }
        Err(Unavailable::new(
            SERVICE,
            format!(
                "{op}: keys still unprocessed after {} attempts (throttled)",
                backoff.rounds
            ),
        ))
    }

    /// One `BatchWriteItem` of at most 25 requests, sending unprocessed
    /// items again with back-off.
    pub(super) async fn batch_write_chunk(
        &self,
        mut requests: Vec<WriteRequest>,
    ) -> Result<(), Unavailable> {
        let backoff = IMPORT_BACKOFF;
        for round in 0..backoff.rounds {
            if round > 0 {
                tokio::time::sleep(backoff.delay(round)).await;
            }
            let resp = self
                .client
                .batch_write_item()
                .request_items(self.devices.clone(), requests)
                .send()
                .await
                .map_err(|e| unavailable("BatchWriteItem", &e))?;
            match resp
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.devices))
            {
                Some(left) if !left.is_empty() => requests = left,
                _ => return Ok(()),
            }
        }
        Err(Unavailable::new(
            SERVICE,
            format!(
                "BatchWriteItem: items still unprocessed after {} attempts (throttled)",
                backoff.rounds
            ),
        ))
    }

    /// Writes to the devices table in chunks of 25, a few chunks at a time.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), Unavailable> {
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        stream::iter(chunks)
            .map(|c| self.batch_write_chunk(c))
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// One `TransactWriteItems`: `Ok(Err(_))` when it was cancelled.
    pub(super) async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
        op: &'static str,
    ) -> Result<Result<(), Cancelled>, Unavailable> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Ok(())),
            Err(e) => e,
        };
        if let SdkError::ServiceError(se) = &err
            && let TransactWriteItemsError::TransactionCanceledException(tc) = se.err()
        {
            return Ok(Err(Cancelled(tc.cancellation_reasons().to_vec())));
        }
        Err(unavailable(op, &err))
    }
}
