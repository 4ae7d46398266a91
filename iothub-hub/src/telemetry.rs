//! Device-to-cloud messages: PUBLISH from the device, stored telemetry.

use super::*;

impl Hub {
    /// The telemetry received (and wills published), in order.
    #[must_use]
    pub fn telemetry(&self) -> &[Telemetry] {
        &self.telemetry
    }

    /// Takes the telemetry received so far.
    pub fn take_telemetry(&mut self) -> Vec<Telemetry> {
        core::mem::take(&mut self.telemetry)
    }

    pub(crate) fn on_publish(&mut self, conn: ConnId, now_ms: u64, publish: Publish) {
        if publish.qos() == QoS::ExactlyOnce {
            return self.violation(conn, Violation::Qos2);
        }
        let Some(k) = self.conns.get(&conn).and_then(|c| c.client_id.clone()) else {
            return;
        };
        let Some(identity) = self.identities.get(&k).map(|r| r.identity.clone()) else {
            return;
        };
        let (dup, qos, retain, pid) = (
            publish.dup(),
            publish.qos(),
            publish.retain(),
            publish.pid(),
        );
        let (topic, payload) = publish.into_parts();
        match crate::topic::parse_device_topic(topic.as_str()) {
            Ok(DeviceTopic::Telemetry {
                device_id,
                module_id,
                mut properties,
            }) if is_own(&identity, device_id, module_id) => {
                let size = payload.len().saturating_add(properties.encoded_len());
                if size > MAX_TELEMETRY_SIZE {
                    return self.violation(conn, Violation::MessageTooLarge { size });
                }
                if retain {
                    let _ = properties.add_application(self.retain_property.name(), "true");
                }
                stamp_sender(&identity, &mut properties);
                let upstream = self.route(&identity, &properties, &payload);
                if upstream {
                    self.telemetry.push(Telemetry {
                        identity,
                        properties,
                        payload,
                        qos,
                        dup,
                        conn,
                    });
                }
                self.puback(conn, pid);
            }
            Ok(DeviceTopic::TwinGet { request_id }) => {
                self.puback(conn, pid);
                self.on_twin_request(conn, now_ms, &k, request_id, None);
            }
            Ok(DeviceTopic::TwinPatchReported { request_id }) => {
                self.puback(conn, pid);
                self.on_twin_request(conn, now_ms, &k, request_id, Some(&payload));
            }
            Ok(DeviceTopic::MethodResponse { status, request_id }) => {
                self.puback(conn, pid);
                if self
                    .method_calls
                    .get(request_id)
                    .is_some_and(|c| c.key == k)
                {
                    let call = self.method_calls.remove(request_id);
                    let request_id = RequestId::from_wire(request_id);
                    if call.is_some_and(|c| c.deadline.is_some()) {
                        let result = MethodResult {
                            request_id,
                            identity,
                            outcome: MethodOutcome::Answered { status, payload },
                        };
                        let delay = self.identities.get(&k).map_or(0, |r| r.answer_delay_ms);
                        if delay > 0 {
                            self.delayed.push(Delayed {
                                at_ms: now_ms.saturating_add(delay),
                                what: DelayedWhat::MethodResult(result),
                            });
                        } else {
                            self.method_results.push_back(result);
                        }
                    } else {
                        self.method_responses.push(MethodResponse {
                            request_id,
                            identity,
                            status,
                            payload,
                        });
                    }
                }
            }
            _ => self.violation(conn, Violation::ForeignTopic),
        }
    }

    pub(crate) fn puback(&mut self, conn: ConnId, pid: Option<Pid>) {
        let Some(pid) = pid else { return };
        if self.faults.withhold_pubacks {
            self.counters.pubacks_withheld = self.counters.pubacks_withheld.saturating_add(1);
        } else {
            self.send(conn, &Packet::Puback(pid));
        }
    }
}

/// The hub's own stamp of who sent a device-to-cloud message: `$.cdid`
/// (`iothub-connection-device-id`) and `$.cmid`
/// (`iothub-connection-module-id`) name the authenticated sender, whatever
/// the device put there (the service sets these system properties; a
/// device cannot, so it cannot pose as another).
pub(crate) fn stamp_sender(identity: &Identity, properties: &mut MessageProperties) {
    properties.connection_device_id = Some(String::from(identity.device_id().as_str()));
    properties.connection_module_id = identity.module_id().map(|m| String::from(m.as_str()));
}
