//! Cloud-to-device and module input messages on their way to the
//! application: **acknowledged only once the application has them**.
//!
//! A QoS 1 message from the hub gets an [`AckToken`]; its PUBACK goes out
//! when the application reports it taken ([`Session::taken`]; in
//! manual-ack mode, [`Session::ack`]). Until then the hub keeps the
//! message, and sends it again on the next connection if this one ends.
//!
//! A message for a feature the application has not asked for (not
//! [`enable`](Session::enable)d, for example one the hub redelivers on a
//! subscription kept by a CleanSession 0 session; or whose stream went
//! away, [`Session::hold_inbound`]) is **held**, unacknowledged, and
//! delivered when the feature is enabled. A message a stream could not
//! hand out ([`Session::return_inbound`]) goes to the feature's current
//! stream, or is held. Every message waiting for the
//! application counts against [`Config::max_inbound_pending`]; one more is
//! neither delivered nor acknowledged ([`Event::InboundOverflow`]).
//!
//! [`Config::max_inbound_pending`]: super::Config::max_inbound_pending

use alloc::collections::VecDeque;
use alloc::string::ToString;
use alloc::vec::Vec;

use super::Session;
use super::error::CommandError;
use super::event::{AckToken, Event, Subscription};
use crate::mqtt::{Packet, Pid};

/// The messages from the hub that wait for the application.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    /// QoS 1 packet ids of the current connection whose PUBACK has not
    /// gone out (delivered and not taken, or held).
    unacked: Vec<Pid>,
    /// Messages for a feature not being delivered, in arrival order.
    held: VecDeque<Held>,
    /// [`Subscription::bit`]s of the features whose messages are
    /// delivered as events.
    delivering: u8,
    /// The arrival number of the next message.
    next_seq: u64,
}

/// A message held for a feature the application has not asked for.
#[derive(Debug)]
struct Held {
    feature: Subscription,
    event: Event,
    /// A QoS 1 message of the current connection (dropped when it ends:
    /// the hub sends it again).
    qos1: bool,
}

impl Delivery {
    /// Messages waiting for the application: every unacknowledged QoS 1
    /// message plus the QoS 0 ones held.
    fn pending(&self) -> usize {
        let held_qos0 = self.held.iter().filter(|h| !h.qos1).count();
        self.unacked.len().saturating_add(held_qos0)
    }

    pub(super) fn shrink(&mut self) {
        crate::connection::keep_small_vec(&mut self.unacked);
        crate::connection::keep_small_deque(&mut self.held);
    }
}

/// The feature a cloud-to-device or module input event belongs to.
fn feature_of(event: &Event) -> Option<Subscription> {
    match event {
        Event::C2dMessage(_) => Some(Subscription::C2d),
        Event::InputMessage { .. } => Some(Subscription::ModuleInputs),
        _ => None,
    }
}

/// The PUBACK token an inbound event carries, if any.
fn token_of(event: &Event) -> Option<AckToken> {
    match event {
        Event::C2dMessage(m) | Event::InputMessage { message: m, .. } => m.ack,
        _ => None,
    }
}

/// The arrival number of an inbound event (0 for other events).
fn seq_of(event: &Event) -> u64 {
    match event {
        Event::C2dMessage(m) | Event::InputMessage { message: m, .. } => m.seq,
        _ => 0,
    }
}

impl Session {
    /// A cloud-to-device or module input message arrived (`pid` for QoS
    /// 1): delivered as the event `make` builds from its token and arrival
    /// number, or held, or refused over the limit. A resend of a packet id
    /// still waiting on this connection is the same message: dropped, it is
    /// already here.
    pub(super) fn inbound_message(
        &mut self,
        feature: Subscription,
        pid: Option<Pid>,
        topic: &str,
        make: impl FnOnce(Option<AckToken>, u64) -> Event,
    ) {
        if pid.is_some_and(|p| self.delivery.unacked.contains(&p)) {
            return;
        }
        let limit = self.config.max_inbound_pending;
        if self.delivery.pending() >= limit {
            self.emit(Event::InboundOverflow {
                topic: topic.to_string(),
                limit,
            });
            return;
        }
        let token = pid.map(|pid| self.track_unacked(pid));
        let seq = self.delivery.next_seq;
        self.delivery.next_seq = seq.wrapping_add(1);
        let event = make(token, seq);
        if self.delivery.delivering & feature.bit() != 0 {
            self.emit(event);
        } else {
            self.delivery.held.push_back(Held {
                feature,
                event,
                qos1: pid.is_some(),
            });
        }
    }

    /// A QoS 1 message the session cannot read: tracked (unacknowledged)
    /// while there is room, so the application may still acknowledge it.
    pub(super) fn unreadable_message(&mut self, pid: Option<Pid>) -> Option<AckToken> {
        let pid = pid?;
        if self.delivery.unacked.contains(&pid) {
            return Some(AckToken {
                generation: self.link.generation(),
                pid,
            });
        }
        (self.delivery.pending() < self.config.max_inbound_pending).then(|| self.track_unacked(pid))
    }

    fn track_unacked(&mut self, pid: Pid) -> AckToken {
        self.delivery.unacked.push(pid);
        AckToken {
            generation: self.link.generation(),
            pid,
        }
    }

    /// The feature's messages are delivered from now on, the held ones
    /// first, in their order.
    pub(super) fn start_delivery(&mut self, feature: Subscription) {
        self.delivery.delivering |= feature.bit();
        let held = core::mem::take(&mut self.delivery.held);
        for h in held {
            if h.feature == feature {
                self.emit(h.event);
            } else {
                self.delivery.held.push_back(h);
            }
        }
    }

    /// The connection ended: no PUBACK can go out any more. The hub sends
    /// its unacknowledged messages again, so the held QoS 1 ones are
    /// dropped; held QoS 0 messages stay.
    pub(super) fn delivery_connection_ended(&mut self) {
        self.delivery.unacked.clear();
        self.delivery.held.retain(|h| !h.qos1);
    }

    /// [`Session::taken`].
    pub(super) fn message_taken(&mut self, token: AckToken) {
        if !self.config.manual_ack {
            // Only a message of this connection that waits can be
            // acknowledged; anything else the hub sends again.
            let _ = self.ack_inbound(token);
        }
    }

    /// [`Session::ack`].
    pub(super) fn ack_inbound(&mut self, token: AckToken) -> Result<(), CommandError> {
        if token.generation != self.link.generation() || !self.link.is_up() {
            return Err(CommandError::AckUndeliverable);
        }
        let unacked = &mut self.delivery.unacked;
        let Some(pos) = unacked.iter().position(|p| *p == token.pid) else {
            return Err(CommandError::AckUndeliverable);
        };
        unacked.swap_remove(pos);
        self.send_packet(&Packet::Puback(token.pid));
        Ok(())
    }

    /// [`Session::hold_inbound`].
    pub(super) fn stop_delivery(&mut self, feature: Subscription) {
        self.delivery.delivering &= !feature.bit();
    }

    /// [`Session::return_inbound`].
    pub(super) fn message_returned(&mut self, event: Event) {
        let Some(feature) = feature_of(&event) else {
            return;
        };
        let token = token_of(&event);
        let live = token.is_some_and(|t| {
            t.generation == self.link.generation() && self.delivery.unacked.contains(&t.pid)
        });
        // A QoS 1 message of an ended connection comes again from the hub.
        if !live && token.is_some() {
            return;
        }
        if self.delivery.delivering & feature.bit() != 0 {
            // Another stream of the feature is open: it gets the message.
            self.emit(event);
        } else {
            // In its arrival place: a later message may have been held
            // before this one came back.
            let seq = seq_of(&event);
            let pos = self
                .delivery
                .held
                .iter()
                .position(|h| seq_of(&h.event) > seq)
                .unwrap_or(self.delivery.held.len());
            self.delivery.held.insert(
                pos,
                Held {
                    feature,
                    event,
                    qos1: live,
                },
            );
        }
    }

    /// Messages waiting for the application (see
    /// [`Config::max_inbound_pending`](super::Config::max_inbound_pending)).
    #[must_use]
    pub fn inbound_pending_len(&self) -> usize {
        self.delivery.pending()
    }

    /// Messages held for a feature the application has not asked for.
    #[must_use]
    pub fn held_len(&self) -> usize {
        self.delivery.held.len()
    }
}
