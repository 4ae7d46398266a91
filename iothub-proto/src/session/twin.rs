//! Twin requests (GET and reported PATCH) correlated by `$rid`, with
//! timeouts and retries, and the desired-properties version tracking: a
//! full read after every connection, stale notifications dropped, gaps
//! closed by another full read.

use alloc::string::String;
use alloc::vec::Vec;
use core::mem;
use core::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::error::{CommandError, HubStatus, JsonError, RequestError};
use super::event::{Event, RequestToken, Subscription, Twin};
use super::timer::TimerKind;
use super::{MAX_REPORTED_SIZE, Session};
use crate::connection::backoff::{millis, random_between};
use crate::mqtt::{Packet, Publish, QosPid};
use crate::time::Instant;
use crate::topic::RequestId;

/// How many desired-property notifications are kept while a full read is
/// in flight; beyond, they are dropped and another read follows.
const MAX_BUFFERED_PATCHES: usize = 16;

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// GET for the application.
    Get,
    /// Reported PATCH with this JSON body.
    Patch(Bytes),
    /// GET for the session's own desired-properties sync.
    Resync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestState {
    /// Waiting for a connection with the twin-response subscription.
    Waiting,
    /// Sent with this `$rid`.
    Sent(u64),
    /// Answered 429 or 5xx; send again then.
    RetryAt(Instant),
}

/// A twin request in progress.
#[derive(Debug)]
pub(crate) struct Request {
    token: RequestToken,
    kind: RequestKind,
    state: RequestState,
    /// Acceptance + `request_timeout`: retries and reconnections included.
    deadline: Instant,
    retries: u32,
    prev_delay_ms: u64,
}

impl Request {
    pub(crate) fn is_resync(&self) -> bool {
        self.kind == RequestKind::Resync
    }
}

/// Desired-properties tracking.
#[derive(Debug)]
pub(crate) struct Desired {
    /// The last `$version` applied.
    pub(crate) version: Option<u64>,
    /// Notifications received while a full read is in flight.
    buffered: Vec<(u64, Bytes)>,
    /// Some were dropped from a full buffer: read again afterwards.
    overflowed: bool,
}

impl Desired {
    pub(crate) fn new(version: Option<u64>) -> Desired {
        Desired {
            version,
            buffered: Vec::new(),
            overflowed: false,
        }
    }

    pub(crate) fn shrink(&mut self) {
        if self.buffered.is_empty() && self.buffered.capacity() > 0 {
            self.buffered = Vec::new();
        }
    }
}

/// Checks a reported-properties patch: a JSON object of at most 32 KB.
pub(crate) fn check_reported(json: &[u8]) -> Result<(), CommandError> {
    if json.len() > MAX_REPORTED_SIZE {
        return Err(CommandError::PayloadTooLarge {
            size: json.len(),
            max: MAX_REPORTED_SIZE,
        });
    }
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| CommandError::InvalidJson(JsonError::from_serde(&e)))?;
    if value.is_object() {
        Ok(())
    } else {
        Err(CommandError::NotJsonObject)
    }
}

fn parse_patch(body: &[u8]) -> Result<Value, JsonError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| JsonError::from_serde(&e))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(JsonError::Shape)
    }
}

impl Session {
    pub(super) fn accept_request(
        &mut self,
        now: Instant,
        kind: RequestKind,
    ) -> Result<RequestToken, CommandError> {
        self.accepting()?;
        if self.pending_requests_len() >= self.config.max_pending_requests {
            return Err(CommandError::TooManyRequests {
                max: self.config.max_pending_requests,
            });
        }
        Ok(self.push_request(now, kind))
    }

    fn push_request(&mut self, now: Instant, kind: RequestKind) -> RequestToken {
        let token = RequestToken(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        self.requests.push(Request {
            token,
            kind,
            state: RequestState::Waiting,
            deadline: now + self.config.request_timeout,
            retries: 0,
            prev_delay_ms: millis(self.config.backoff_min),
        });
        // Twin responses need their subscription before the first request.
        self.subs.enabled |= Subscription::TwinResponses.bit();
        self.subscribe_missing();
        self.dispatch_requests();
        self.update_request_timer();
        token
    }

    /// Sends every waiting request, once the twin-response subscription is
    /// granted on this connection (and, for the desired sync, the
    /// desired-properties one too).
    pub(super) fn dispatch_requests(&mut self) {
        if !self.link.is_up() || !self.subs.is_subscribed(Subscription::TwinResponses) {
            return;
        }
        let desired_ready = self.subs.is_subscribed(Subscription::DesiredProperties);
        let mut out = Vec::new();
        let mut topic = String::new();
        for req in &mut self.requests {
            if req.state != RequestState::Waiting || (req.is_resync() && !desired_ready) {
                continue;
            }
            let rid = self.next_rid;
            self.next_rid = self.next_rid.wrapping_add(1);
            let request_id = RequestId::from(rid);
            topic.clear();
            let body = match &req.kind {
                RequestKind::Get | RequestKind::Resync => {
                    crate::topic::twin_get_into(&request_id, &mut topic);
                    Bytes::new()
                }
                RequestKind::Patch(json) => {
                    crate::topic::twin_patch_reported_into(&request_id, &mut topic);
                    json.clone()
                }
            };
            if let Ok(publish) = Publish::new(topic.as_str(), QosPid::AtMostOnce, body) {
                req.state = RequestState::Sent(rid);
                out.push(Packet::Publish(publish));
            }
        }
        for packet in out {
            self.send_packet(&packet);
        }
    }

    /// A twin response: `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
    pub(super) fn on_twin_response(
        &mut self,
        now: Instant,
        status: u16,
        rid: &str,
        version: Option<u64>,
        body: Bytes,
    ) {
        let Ok(rid) = rid.parse::<u64>() else {
            return;
        };
        let Some(pos) = self
            .requests
            .iter()
            .position(|r| r.state == RequestState::Sent(rid))
        else {
            // An answer to a timed-out or retried attempt.
            return;
        };
        let hub = HubStatus { status };
        if (200..300).contains(&status) {
            let req = self.requests.remove(pos);
            match req.kind {
                RequestKind::Get => match Twin::from_json(&body) {
                    Ok(twin) => self.emit(Event::TwinReceived {
                        token: req.token,
                        twin,
                    }),
                    Err(e) => self.emit(Event::RequestFailed {
                        token: req.token,
                        error: RequestError::MalformedResponse(e),
                    }),
                },
                RequestKind::Patch(_) => self.emit(Event::ReportedUpdated {
                    token: req.token,
                    version,
                }),
                RequestKind::Resync => {
                    let result = Twin::from_json(&body).map_err(RequestError::MalformedResponse);
                    self.on_resync_result(now, result);
                }
            }
        } else if hub.is_retriable()
            && self
                .requests
                .get(pos)
                .is_some_and(|r| r.retries < self.config.request_retries)
        {
            let min = millis(self.config.backoff_min);
            let max = millis(self.config.backoff_max);
            if let Some(req) = self.requests.get_mut(pos) {
                let high = req.prev_delay_ms.max(min).saturating_mul(3);
                let delay = random_between(self.link.rng(), min, high).min(max);
                req.prev_delay_ms = delay;
                req.retries = req.retries.saturating_add(1);
                req.state = RequestState::RetryAt(now + Duration::from_millis(delay));
            }
        } else {
            let req = self.requests.remove(pos);
            self.fail_request(now, req, RequestError::Hub(hub));
        }
        self.update_request_timer();
    }

    /// Fails requests past their deadline and releases those whose retry
    /// delay is over.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.requests.len() {
            let Some(req) = self.requests.get_mut(i) else {
                break;
            };
            if req.deadline <= now {
                expired.push(self.requests.remove(i));
                continue;
            }
            if let RequestState::RetryAt(at) = req.state {
                if at <= now {
                    req.state = RequestState::Waiting;
                }
            }
            i += 1;
        }
        for req in expired {
            self.fail_request(now, req, RequestError::Timeout);
        }
        self.dispatch_requests();
        self.update_request_timer();
    }

    /// The connection is gone: requests sent on it are sent again after the
    /// next CONNACK (with new `$rid`s), their deadlines unchanged.
    pub(super) fn requests_connection_lost(&mut self) {
        for req in &mut self.requests {
            if matches!(req.state, RequestState::Sent(_)) {
                req.state = RequestState::Waiting;
            }
        }
    }

    /// A subscription the waiting requests need was refused: fail them
    /// (only the desired sync when `only_resync`).
    pub(super) fn twin_subscription_failed(&mut self, now: Instant, only_resync: bool) {
        let (failed, kept): (Vec<Request>, Vec<Request>) = mem::take(&mut self.requests)
            .into_iter()
            .partition(|r| r.state == RequestState::Waiting && (r.is_resync() || !only_resync));
        self.requests = kept;
        for req in failed {
            self.fail_request(now, req, RequestError::SubscriptionFailed);
        }
        self.update_request_timer();
    }

    /// The session stops: every request fails.
    pub(super) fn fail_all_requests(&mut self) {
        for req in mem::take(&mut self.requests) {
            if !req.is_resync() {
                self.emit(Event::RequestFailed {
                    token: req.token,
                    error: RequestError::SessionClosed,
                });
            }
        }
        self.desired.buffered = Vec::new();
        self.desired.overflowed = false;
        self.timers.clear(TimerKind::Request);
    }

    fn fail_request(&mut self, now: Instant, req: Request, error: RequestError) {
        if req.is_resync() {
            self.on_resync_result(now, Err(error));
        } else {
            self.emit(Event::RequestFailed {
                token: req.token,
                error,
            });
        }
    }

    /// The request slot of the timer table: the earliest deadline or retry.
    pub(super) fn update_request_timer(&mut self) {
        let earliest = self
            .requests
            .iter()
            .map(|r| match r.state {
                RequestState::RetryAt(at) => at.min(r.deadline),
                _ => r.deadline,
            })
            .min();
        self.timers.put(TimerKind::Request, earliest);
    }

    // -----------------------------------------------------------------
    // Desired properties

    fn resync_pending(&self) -> bool {
        self.requests.iter().any(Request::is_resync)
    }

    /// Reads the full twin (once: nothing happens if a read is pending).
    pub(super) fn start_resync(&mut self, now: Instant) {
        if !self.resync_pending() {
            self.push_request(now, RequestKind::Resync);
        }
    }

    /// A desired-properties notification.
    pub(super) fn on_desired_patch(&mut self, now: Instant, version: u64, body: Bytes) {
        if self.resync_pending() {
            self.buffer_patch(version, body);
        } else {
            self.apply_patch(now, version, body);
        }
    }

    fn buffer_patch(&mut self, version: u64, body: Bytes) {
        if self.desired.buffered.len() < MAX_BUFFERED_PATCHES {
            self.desired.buffered.push((version, body));
        } else {
            self.desired.overflowed = true;
        }
    }

    /// Applies one notification by the version rules.
    fn apply_patch(&mut self, now: Instant, version: u64, body: Bytes) {
        match self.desired.version {
            Some(last) if version <= last => {} // stale: already applied
            Some(last) if Some(version) == last.checked_add(1) => match parse_patch(&body) {
                Ok(patch) => {
                    self.desired.version = Some(version);
                    self.emit(Event::DesiredPatch { patch, version });
                }
                Err(error) => {
                    self.emit(Event::InvalidDesiredPatch { version, error });
                    self.start_resync(now);
                }
            },
            // A gap, or no version known yet: read the full state and apply
            // this one after it if it is still new.
            _ => {
                self.start_resync(now);
                self.buffer_patch(version, body);
            }
        }
    }

    /// The session's own full read finished.
    fn on_resync_result(&mut self, now: Instant, result: Result<Twin, RequestError>) {
        let result = result.and_then(|twin| match twin.desired_version {
            Some(v) => Ok((twin.desired, v)),
            None => Err(RequestError::MalformedResponse(JsonError::MissingVersion)),
        });
        match result {
            Ok((desired, version)) => {
                if self.desired.version != Some(version) {
                    self.desired.version = Some(version);
                    self.emit(Event::DesiredState { desired, version });
                }
            }
            Err(error) => self.emit(Event::DesiredSyncFailed { error }),
        }
        // Notifications that came meanwhile, by the same rules.
        let buffered = mem::take(&mut self.desired.buffered);
        for (version, body) in buffered {
            if self.resync_pending() {
                self.buffer_patch(version, body);
            } else if self.desired.version.is_some() {
                self.apply_patch(now, version, body);
            }
        }
        if mem::take(&mut self.desired.overflowed) {
            self.start_resync(now);
        }
    }
}
