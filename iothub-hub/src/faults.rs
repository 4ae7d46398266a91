//! Fault injection: what a test (or the emulator's API) makes the hub do
//! wrong, and the answers it holds back.

use super::*;

/// Fault-injection switches that are not tied to one identity.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) refuse_connects: (u32, Option<ConnectReturnCode>),
    pub(crate) silence_pingresp: bool,
    pub(crate) withhold_pubacks: bool,
}

/// Something held back by an injected delay.
#[derive(Debug)]
pub(crate) struct Delayed {
    pub(crate) at_ms: u64,
    pub(crate) what: DelayedWhat,
}

#[derive(Debug)]
pub(crate) enum DelayedWhat {
    TwinAnswer {
        conn: ConnId,
        topic: String,
        body: Bytes,
    },
    MethodResult(MethodResult),
}

impl Hub {
    /// The identity's next `n` twin requests (GET or PATCH) are answered
    /// with `status` (429, 500, …) and a small JSON error body instead of
    /// the real result; a failed PATCH is not applied.
    pub fn fail_next_twin_ops(
        &mut self,
        identity: &Identity,
        n: u32,
        status: u16,
    ) -> Result<(), HubError> {
        self.record_mut(identity)?.twin_failures = (n, status);
        Ok(())
    }

    /// The identity's next twin GET is answered 200 with a body that is not
    /// JSON.
    pub fn malformed_twin_body_next(&mut self, identity: &Identity) -> Result<(), HubError> {
        self.record_mut(identity)?.malformed_get_next = true;
        Ok(())
    }

    /// CONNECTs of this identity are refused with `code` until monotonic
    /// `until` (checked once the username names the identity, before the
    /// credentials). `ConnectReturnCode::Accepted` turns this off.
    pub fn refuse_connects_until(
        &mut self,
        identity: &Identity,
        until: Instant,
        code: ConnectReturnCode,
    ) -> Result<(), HubError> {
        let until_ms = until.as_millis();
        self.record_mut(identity)?.refuse_until = (!code.is_accepted()).then_some((until_ms, code));
        Ok(())
    }

    /// Holds back the identity's twin answers, and the results of
    /// deadline-tracked method calls to it, by `delay` (zero turns this
    /// off): a slow hub. A delayed method result still counts as answered
    /// if the answer itself arrived before the deadline.
    pub fn delay_answers(&mut self, identity: &Identity, delay: Duration) -> Result<(), HubError> {
        self.record_mut(identity)?.answer_delay_ms = millis(delay);
        Ok(())
    }

    /// The hub closes the connection without a word (a network failure as
    /// the hub sees it); the will is published.
    pub fn drop_connection(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::Dropped);
    }

    /// The next `n` CONNECTs are refused with `code` (before any other
    /// check). `ConnectReturnCode::Accepted` or `n == 0` turns this off.
    pub fn refuse_connects(&mut self, n: u32, code: ConnectReturnCode) {
        self.faults.refuse_connects = (n, (!code.is_accepted()).then_some(code));
    }

    /// While `true`, PINGREQs are counted but not answered.
    pub fn silence_pingresp(&mut self, silent: bool) {
        self.faults.silence_pingresp = silent;
    }

    /// While `true`, no PUBACK is sent for any QoS 1 PUBLISH from a client:
    /// telemetry is still stored and twin and method messages still
    /// processed.
    pub fn withhold_pubacks(&mut self, withhold: bool) {
        self.faults.withhold_pubacks = withhold;
    }

    /// Queues arbitrary bytes for the client (a QoS 2 PUBLISH, garbage, a
    /// stray PUBACK, …), after anything already queued. Ignored on a closed
    /// connection.
    pub fn send_raw(&mut self, conn: ConnId, bytes: Bytes) {
        if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.is_open()) {
            c.tx.extend_from_slice(&bytes);
            self.touched.insert(conn);
        }
    }
}
