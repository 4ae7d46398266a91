//! Telemetry: the bounded queue of messages waiting to be sent, the
//! in-flight window of QoS 1 messages awaiting their PUBACK, packet id
//! allocation, timeouts and time-to-live, and re-sending after a
//! reconnection.

use alloc::vec::Vec;
use core::mem;

use super::config::check_message_properties;
use super::error::{CommandError, MessageFailure};
use super::event::{Event, Message, MessageId, Qos};
use super::timer::TimerKind;
use super::{MAX_MESSAGE_SIZE, Session};
use crate::mqtt::{Pid, Publish, QosPid, TopicName};
use crate::properties::MessageProperties;
use crate::time::Instant;

/// An accepted telemetry message.
#[derive(Debug)]
pub(crate) struct OutMessage {
    pub(crate) id: MessageId,
    /// The PUBLISH, built once at acceptance; its packet id and DUP flag
    /// are set as it is sent, and it is encoded in place (no copy of the
    /// topic or the payload per send).
    publish: Publish,
    qos: Qos,
    /// Acceptance + `message_timeout`.
    deadline: Instant,
    /// Acceptance + time-to-live, while unsent.
    expires: Option<Instant>,
    /// The packet id while in flight (QoS 1).
    pub(crate) pid: Option<Pid>,
    /// The serial of `pid` (see `Session::alloc_pid_serial`).
    pub(crate) pid_serial: u64,
    /// The connection it was last sent on.
    sent_generation: u64,
}

impl OutMessage {
    /// Gives the message its packet id (QoS 1) and DUP flag for a send.
    fn set_pid(&mut self, pid: Option<(Pid, u64)>, dup: bool) {
        let qospid = match pid {
            Some((pid, serial)) => {
                self.pid = Some(pid);
                self.pid_serial = serial;
                QosPid::AtLeastOnce(pid)
            }
            None => QosPid::AtMostOnce,
        };
        self.publish.set_qospid(qospid, dup);
    }
}

impl Session {
    pub(super) fn accept_telemetry(
        &mut self,
        now: Instant,
        msg: Message,
    ) -> Result<MessageId, CommandError> {
        self.accepting()?;
        let topic = self.telemetry_topic(&msg.properties)?;
        let size = topic.as_str().len().saturating_add(msg.payload.len());
        if size > MAX_MESSAGE_SIZE {
            return Err(CommandError::MessageTooLarge {
                size,
                max: MAX_MESSAGE_SIZE,
            });
        }
        let sends_now = self.link.is_up()
            && self.queue.is_empty()
            && (msg.qos == Qos::AtMostOnce || self.in_flight.len() < self.config.max_in_flight);
        if !sends_now && self.queue.len() >= self.config.queue_capacity {
            return Err(CommandError::QueueFull {
                capacity: self.config.queue_capacity,
            });
        }
        // Cannot fail: far below the MQTT maximum.
        let publish = Publish::new(topic, QosPid::AtMostOnce, msg.payload).map_err(|_| {
            CommandError::MessageTooLarge {
                size,
                max: MAX_MESSAGE_SIZE,
            }
        })?;
        let id = MessageId(self.next_message_id);
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.ttl_queued |= msg.ttl.is_some();
        self.queue.push_back(OutMessage {
            id,
            publish,
            qos: msg.qos,
            deadline: now + self.config.message_timeout,
            expires: msg.ttl.map(|ttl| now + ttl),
            pid: None,
            pid_serial: 0,
            sent_generation: 0,
        });
        self.pump_outbox(now);
        self.update_message_timer();
        Ok(id)
    }

    /// Sends queued messages while connected and the window has room.
    pub(super) fn pump_outbox(&mut self, now: Instant) {
        if !self.link.is_up() {
            return;
        }
        while let Some(front) = self.queue.front() {
            if front.expires.is_some_and(|e| e <= now) {
                if let Some(m) = self.queue.pop_front() {
                    self.fail(m.id, MessageFailure::Expired);
                }
                continue;
            }
            let pid = match front.qos {
                Qos::AtMostOnce => None,
                Qos::AtLeastOnce => {
                    if self.in_flight.len() >= self.config.max_in_flight {
                        break;
                    }
                    match self.alloc_pid_serial() {
                        Some(pid) => Some(pid),
                        None => break,
                    }
                }
            };
            let Some(mut m) = self.queue.pop_front() else {
                break;
            };
            m.set_pid(pid, false);
            match pid {
                None => self.link.send_publish(&m.publish, Some(m.id)),
                Some(_) => {
                    m.expires = None;
                    m.sent_generation = self.link.generation();
                    self.link.send_publish(&m.publish, None);
                    self.in_flight.push_back(m);
                }
            }
        }
        self.update_message_timer();
    }

    /// After CONNACK: re-sends every unacknowledged message in order. With
    /// clean session off, with DUP and the same packet ids; with clean
    /// session on, as new publishes with new ids.
    pub(super) fn resend_in_flight(&mut self) {
        let clean = self.config.clean_session;
        if clean {
            for m in &mut self.in_flight {
                m.pid = None;
            }
        }
        for i in 0..self.in_flight.len() {
            let old = self
                .in_flight
                .get(i)
                .and_then(|m| m.pid.map(|p| (p, m.pid_serial)));
            // A message without an id stays in the window and times out
            // (cannot happen: the window is far smaller than the id space).
            let Some((pid, serial)) = old.or_else(|| self.alloc_pid_serial()) else {
                continue;
            };
            if let Some(m) = self.in_flight.get_mut(i) {
                m.set_pid(Some((pid, serial)), !clean);
                m.sent_generation = self.link.generation();
                self.link.send_publish(&m.publish, None);
            }
        }
    }

    pub(super) fn on_puback(&mut self, now: Instant, pid: Pid) {
        if let Some(pos) = self.in_flight.iter().position(|m| m.pid == Some(pid)) {
            if let Some(m) = self.in_flight.remove(pos) {
                self.emit(Event::MessageAcknowledged { id: m.id });
            }
            self.pump_outbox(now);
        } else if let Some(pos) = self.reserved_pids.iter().position(|p| *p == pid) {
            // The late PUBACK of a timed-out message: its id is free again.
            self.reserved_pids.swap_remove(pos);
        }
        // A PUBACK for nothing we sent is ignored.
    }

    /// Fails messages past their deadline or time-to-live.
    pub(super) fn expire_messages(&mut self, now: Instant) {
        let mut failed: Vec<(MessageId, MessageFailure)> = Vec::new();
        self.queue.retain(|m| {
            if m.expires.is_some_and(|e| e <= now) {
                failed.push((m.id, MessageFailure::Expired));
                false
            } else if m.deadline <= now {
                failed.push((m.id, MessageFailure::Timeout));
                false
            } else {
                true
            }
        });
        let connected = self.link.is_up();
        let generation = self.link.generation();
        let mut reserve: Vec<Pid> = Vec::new();
        self.in_flight.retain(|m| {
            if m.deadline <= now {
                failed.push((m.id, MessageFailure::Timeout));
                // Sent on this connection: a late PUBACK may still come,
                // so its id must not be given to another message.
                if let (true, true, Some(pid)) = (connected, m.sent_generation == generation, m.pid)
                {
                    reserve.push(pid);
                }
                false
            } else {
                true
            }
        });
        self.reserved_pids.extend(reserve);
        failed.sort_by_key(|(id, _)| *id);
        for (id, reason) in failed {
            self.fail(id, reason);
        }
        self.pump_outbox(now);
        self.update_message_timer();
    }

    /// Fails every message (the session stops).
    pub(super) fn fail_all_messages(&mut self, reason: MessageFailure) {
        let in_flight = mem::take(&mut self.in_flight);
        let queue = mem::take(&mut self.queue);
        for m in in_flight.into_iter().chain(queue) {
            self.fail(m.id, reason);
        }
        self.reserved_pids = Vec::new();
        self.timers.clear(TimerKind::Message);
    }

    fn fail(&mut self, id: MessageId, reason: MessageFailure) {
        self.emit(Event::MessageFailed { id, reason });
    }

    /// The message slot of the timer table: the earliest deadline or
    /// expiry of any message.
    ///
    /// O(1) unless a queued message has a time-to-live: deadlines are the
    /// acceptance time plus one `message_timeout`, so both the queue and
    /// the in-flight window (filled from the queue's front, in order) hold
    /// them in ascending order, and their fronts are the earliest.
    pub(super) fn update_message_timer(&mut self) {
        if self.queue.is_empty() {
            self.ttl_queued = false;
        }
        let queued = if self.ttl_queued {
            self.queue
                .iter()
                .map(|m| m.expires.map_or(m.deadline, |e| e.min(m.deadline)))
                .min()
        } else {
            self.queue.front().map(|m| m.deadline)
        };
        let in_flight = self.in_flight.front().map(|m| m.deadline);
        let earliest = match (queued, in_flight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.timers.put(TimerKind::Message, earliest);
    }

    /// The topic of a telemetry message with `properties`: built and
    /// checked once for a message without properties (the common case)
    /// and cloned from then on, built for each message otherwise.
    fn telemetry_topic(
        &mut self,
        properties: &MessageProperties,
    ) -> Result<TopicName, CommandError> {
        if properties.is_empty() {
            if let Some(t) = &self.bare_topic {
                return Ok(t.clone());
            }
        } else {
            check_message_properties(properties).map_err(CommandError::InvalidProperties)?;
        }
        let topic = crate::topic::telemetry(&self.config.identity, properties);
        let topic_len = topic.len();
        let topic = TopicName::try_from(topic).map_err(|_| CommandError::MessageTooLarge {
            size: topic_len,
            max: crate::mqtt::MAX_STRING_LEN,
        })?;
        if properties.is_empty() {
            self.bare_topic = Some(topic.clone());
        }
        Ok(topic)
    }
}
