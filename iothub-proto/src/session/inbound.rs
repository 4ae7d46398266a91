//! What the hub sends: packet routing, subscriptions, direct methods,
//! cloud-to-device and module input messages.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bytes::Bytes;

use super::error::CommandError;
use super::event::{Event, Feature, InboundMessage, MethodId, Subscription};
use super::state::Trigger;
use super::{MAX_METHOD_PAYLOAD, Session};
use crate::connection::{DisconnectReason, Phase, ProtocolError};
use crate::mqtt::{Packet, Publish, QoS, QosPid, Suback, Subscribe, SubscribeReturnCode};
use crate::time::Instant;
use crate::topic::{self, HubTopic, RequestId, TopicError};

impl Session {
    fn protocol_error(&mut self, now: Instant, e: ProtocolError) {
        self.apply(now, Trigger::ConnectionEnded(DisconnectReason::Protocol(e)));
    }

    /// One decoded packet from the hub.
    pub(super) fn on_packet(&mut self, now: Instant, packet: Packet) {
        if self.link.phase() == Phase::AwaitingConnack {
            match packet {
                Packet::Connack(c) => match self.link.connack(&c) {
                    Ok(session_present) => {
                        self.apply(now, Trigger::ConnackAccepted { session_present });
                    }
                    Err(refused) => self.apply(
                        now,
                        Trigger::ConnectionEnded(DisconnectReason::Refused(refused)),
                    ),
                },
                other => {
                    self.protocol_error(now, ProtocolError::UnexpectedPacket(other.packet_type()));
                }
            }
            return;
        }
        match packet {
            Packet::Publish(p) => self.on_publish(now, p),
            Packet::Puback(pid) => self.on_puback(now, pid),
            Packet::Suback(s) => self.on_suback(now, &s),
            Packet::Pingresp => self.link.pingresp(),
            other @ (Packet::Connect(_)
            | Packet::Connack(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::Unsuback(_)
            | Packet::Pingreq
            | Packet::Disconnect) => {
                self.protocol_error(now, ProtocolError::UnexpectedPacket(other.packet_type()));
            }
        }
    }

    fn on_publish(&mut self, now: Instant, publish: Publish) {
        let pid = match publish.qospid() {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(pid) => Some(pid),
            QosPid::ExactlyOnce(_) => {
                self.protocol_error(now, ProtocolError::Qos2Publish);
                return;
            }
        };
        let (topic_name, payload) = publish.into_parts();
        let topic_str = topic_name.as_str();
        let identity = &self.config.identity;
        // Cloud-to-device and module input messages are acknowledged when
        // the application has them (see `delivery`), an unreadable topic
        // never; everything else at once, once handled.
        match topic::parse(topic_str) {
            Ok(HubTopic::C2d {
                device_id,
                properties,
            }) if identity.module_id().is_none() && device_id == identity.device_id().as_str() => {
                self.inbound_message(Subscription::C2d, pid, topic_str, |ack, seq| {
                    Event::C2dMessage(Box::new(InboundMessage {
                        properties,
                        payload,
                        ack,
                        seq,
                    }))
                });
            }
            Ok(HubTopic::ModuleInput {
                device_id,
                module_id,
                input,
                properties,
            }) if device_id == identity.device_id().as_str()
                && identity
                    .module_id()
                    .is_some_and(|m| m.as_str() == module_id) =>
            {
                let input = input.into_owned();
                self.inbound_message(Subscription::ModuleInputs, pid, topic_str, |ack, seq| {
                    Event::InputMessage {
                        input,
                        message: Box::new(InboundMessage {
                            properties,
                            payload,
                            ack,
                            seq,
                        }),
                    }
                });
            }
            Ok(HubTopic::TwinResponse {
                status,
                request_id,
                version,
            }) => {
                self.on_twin_response(now, status, request_id, version, payload);
                self.puback_now(pid);
            }
            Ok(HubTopic::DesiredPatch { version }) => {
                // Without the feature (a subscription left over in a
                // persistent session), notifications are not tracked.
                if self.subs.is_enabled(Subscription::DesiredProperties) {
                    self.on_desired_patch(now, version, payload);
                }
                self.puback_now(pid);
            }
            Ok(HubTopic::MethodRequest { name, request_id }) => {
                self.emit(Event::MethodRequest {
                    id: MethodId {
                        generation: self.link.generation(),
                        request_id: RequestId::from_wire(request_id),
                    },
                    name: name.into_owned(),
                    payload,
                });
                self.puback_now(pid);
            }
            Ok(_) => self.unexpected(topic_str, TopicError::NoMatch, payload, pid),
            Err(e) => self.unexpected(topic_str, e, payload, pid),
        }
    }

    /// The PUBACK of a QoS 1 message handled in full.
    fn puback_now(&mut self, pid: Option<crate::mqtt::Pid>) {
        if let (Some(pid), true) = (pid, self.link.is_up()) {
            self.send_packet(&Packet::Puback(pid));
        }
    }

    /// A PUBLISH the session does not handle or cannot read: reported with
    /// its bytes, not acknowledged.
    fn unexpected(
        &mut self,
        topic: &str,
        error: TopicError,
        payload: Bytes,
        pid: Option<crate::mqtt::Pid>,
    ) {
        let ack = self.unreadable_message(pid);
        self.emit(Event::UnexpectedPublish {
            topic: topic.to_string(),
            payload,
            error,
            ack,
        });
    }

    pub(super) fn send_method_response(
        &mut self,
        id: MethodId,
        status: i32,
        payload: Bytes,
    ) -> Result<(), CommandError> {
        if matches!(self.mode, super::state::Mode::Stopped(_)) {
            return Err(CommandError::SessionClosed);
        }
        if payload.len() > MAX_METHOD_PAYLOAD {
            return Err(CommandError::PayloadTooLarge {
                size: payload.len(),
                max: MAX_METHOD_PAYLOAD,
            });
        }
        if id.generation != self.link.generation() || !self.link.is_up() {
            return Err(CommandError::MethodResponseUndeliverable);
        }
        let topic = topic::method_response(status, &id.request_id);
        let publish = Publish::new(topic, QosPid::AtMostOnce, payload)
            .map_err(|_| CommandError::MethodResponseUndeliverable)?;
        self.send_packet(&Packet::Publish(publish));
        Ok(())
    }

    // -----------------------------------------------------------------
    // Subscriptions

    pub(super) fn enable_feature(
        &mut self,
        now: Instant,
        feature: Feature,
    ) -> Result<(), CommandError> {
        self.accepting()?;
        let is_module = self.config.identity.module_id().is_some();
        match feature {
            Feature::C2d if is_module => return Err(CommandError::FeatureNotAvailable(feature)),
            Feature::ModuleInputs if !is_module => {
                return Err(CommandError::FeatureNotAvailable(feature));
            }
            _ => {}
        }
        let sub = Subscription::from(feature);
        if matches!(feature, Feature::C2d | Feature::ModuleInputs) {
            self.start_delivery(sub);
        }
        if self.subs.is_enabled(sub) {
            return Ok(());
        }
        self.subs.enabled |= sub.bit();
        if feature == Feature::DesiredProperties {
            self.subs.enabled |= Subscription::TwinResponses.bit();
        }
        if self.link.is_up() {
            self.subscribe_missing();
            if feature == Feature::DesiredProperties {
                self.start_resync(now);
            }
        }
        Ok(())
    }

    /// Subscribes (in one SUBSCRIBE) to everything enabled that this
    /// connection has neither granted nor asked for yet.
    pub(super) fn subscribe_missing(&mut self) {
        if !self.link.is_up() {
            return;
        }
        let asked = self
            .subs
            .pending
            .iter()
            .flat_map(|(_, subs)| subs.iter())
            .fold(0u8, |acc, s| acc | s.bit());
        let missing: Vec<Subscription> = Subscription::ALL
            .into_iter()
            .filter(|s| {
                self.subs.is_enabled(*s) && !self.subs.is_subscribed(*s) && asked & s.bit() == 0
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let Some(pid) = self.alloc_pid() else {
            return;
        };
        let filters: Vec<(String, QoS)> = missing.iter().map(|s| self.filter(*s)).collect();
        if let Ok(subscribe) = Subscribe::new(pid, filters) {
            self.subs.pending.push((pid, missing));
            self.send_packet(&Packet::Subscribe(subscribe));
        }
    }

    /// The topic filter and requested QoS of a subscription.
    fn filter(&self, s: Subscription) -> (String, QoS) {
        let identity = &self.config.identity;
        match s {
            Subscription::C2d => (topic::c2d_filter(identity.device_id()), QoS::AtLeastOnce),
            Subscription::ModuleInputs => match identity.module_id() {
                Some(m) => (
                    topic::module_inputs_filter(identity.device_id(), m),
                    QoS::AtLeastOnce,
                ),
                // Refused by `enable` for a device identity.
                None => (topic::c2d_filter(identity.device_id()), QoS::AtLeastOnce),
            },
            Subscription::Methods => (topic::METHOD_REQUEST_FILTER.into(), QoS::AtMostOnce),
            Subscription::DesiredProperties => {
                (topic::DESIRED_PATCH_FILTER.into(), QoS::AtMostOnce)
            }
            Subscription::TwinResponses => (topic::TWIN_RESPONSE_FILTER.into(), QoS::AtMostOnce),
        }
    }

    fn on_suback(&mut self, now: Instant, suback: &Suback) {
        let Some(pos) = self
            .subs
            .pending
            .iter()
            .position(|(p, _)| *p == suback.pid())
        else {
            return; // A SUBACK for no SUBSCRIBE of ours: ignored.
        };
        let (_, subs) = self.subs.pending.swap_remove(pos);
        let mut failed = 0u8;
        for (sub, code) in subs.iter().zip(suback.return_codes()) {
            match code {
                SubscribeReturnCode::Success(_) => self.subs.subscribed |= sub.bit(),
                SubscribeReturnCode::Failure => {
                    failed |= sub.bit();
                    self.emit(Event::SubscriptionFailed { subscription: *sub });
                }
            }
        }
        if failed & Subscription::TwinResponses.bit() != 0 {
            // No twin request can be answered on this connection.
            self.twin_subscription_failed(now, false);
        } else if failed & Subscription::DesiredProperties.bit() != 0 {
            // The desired sync would miss notifications: give it up until
            // the next connection.
            self.twin_subscription_failed(now, true);
        }
        self.dispatch_requests();
    }
}
