//! "What caused this?": the event-log exchange of the request being handled, for anything the
//! request sets off (a pushed `transcriptChanged` frame links back to the POST that caused it).
//! Set around each request by the capture layer; read by whoever publishes a consequence.

tokio::task_local! {
    static CURRENT: u64;
}

/// The exchange id of the request this task is handling, if it is one that was recorded.
pub fn current() -> Option<u64> {
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `fut` as the handling of exchange `exchange`.
pub async fn scope<F: Future>(exchange: u64, fut: F) -> F::Output {
    CURRENT.scope(exchange, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cause_is_known_inside_the_scope_only() {
        assert_eq!(current(), None);
        assert_eq!(scope(7, async { current() }).await, Some(7));
        assert_eq!(current(), None);
    }
}
