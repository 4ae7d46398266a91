//! Cloud-to-device and module input messages: queued per identity,
//! delivered at the granted QoS, removed on PUBACK.

use super::*;

/// One message waiting for delivery to an identity (C2D for a device,
/// module input for a module), until PUBACK.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    /// The packet id it is in flight under on the current connection.
    pub(crate) pid: Option<Pid>,
    /// Whether it was sent before (then it is resent with DUP).
    pub(crate) sent_before: bool,
}

pub(crate) fn check_c2d_size(
    properties: &MessageProperties,
    payload: &Bytes,
) -> Result<(), HubError> {
    let size = payload.len().saturating_add(properties.encoded_len());
    if size > MAX_C2D_SIZE {
        return Err(HubError::TooLarge {
            size,
            max: MAX_C2D_SIZE,
        });
    }
    Ok(())
}

/// A method or input name the hub sends as it is: not empty, and without
/// `/`, `+`, `#` or U+0000 (the topic builders could percent-encode them,
/// but the official SDKs other than Python's do not decode names, so the
/// hub keeps to names every device reads the same).
pub(crate) fn check_name(name: &str) -> Result<(), HubError> {
    if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
        return Err(HubError::InvalidName);
    }
    Ok(())
}

impl Hub {
    /// How many C2D (device) or module input (module) messages wait for the
    /// identity's PUBACK, in flight or not yet sent.
    #[must_use]
    pub fn pending_messages(&self, identity: &Identity) -> usize {
        self.identities
            .get(&key(identity))
            .map_or(0, |r| r.queue.len())
    }

    /// The service sends a cloud-to-device message. `$.mid` and `$.to` are
    /// filled in when absent. It is queued for the device and delivered on
    /// `devices/{d}/messages/devicebound/{bag}` while the device is
    /// connected and subscribed; it stays queued until PUBACK.
    ///
    /// Errors: [`HubError::TooLarge`] over 64 KB (payload plus property
    /// bag), or with a topic over the 65,535 bytes MQTT allows (the bag
    /// with the properties added here), [`HubError::QueueFull`] with 50 pending,
    /// [`HubError::UnknownIdentity`].
    pub fn send_c2d(
        &mut self,
        device_id: &DeviceId,
        mut properties: MessageProperties,
        payload: Bytes,
    ) -> Result<(), HubError> {
        check_c2d_size(&properties, &payload)?;
        self.next_message = self.next_message.saturating_add(1);
        if properties.message_id.is_none() {
            let mut mid = String::from("hub-");
            topic_push_u64(self.next_message, &mut mid);
            properties.message_id = Some(mid);
        }
        if properties.to.is_none() {
            let mut to = String::from("/devices/");
            to.push_str(device_id.as_str());
            to.push_str("/messages/deviceBound");
            properties.to = Some(to);
        }
        let identity = Identity::device(device_id.clone());
        let topic = hub::c2d(device_id, &properties);
        // The bag fits 64 KB but, with the prefix and the properties added
        // here, not an MQTT topic: a PUBLISH that cannot be built would
        // wait in the queue for ever.
        if topic.len() > iothub_proto::mqtt::MAX_STRING_LEN {
            return Err(HubError::TooLarge {
                size: topic.len(),
                max: iothub_proto::mqtt::MAX_STRING_LEN,
            });
        }
        self.enqueue(&identity, topic, payload)
    }

    /// The service (an IoT Edge route) sends a message to a module's input
    /// `input`, on `devices/{d}/modules/{m}/inputs/{input}/{bag}`; queued and
    /// delivered like [`send_c2d`](Self::send_c2d) (without adding
    /// properties), with the same limits, plus [`HubError::InvalidName`]
    /// for an input name that is empty, holds `/`, `+`, `#` or U+0000, or
    /// makes the topic longer than MQTT allows.
    pub fn send_module_input(
        &mut self,
        device_id: &DeviceId,
        module_id: &ModuleId,
        input: &str,
        properties: MessageProperties,
        payload: Bytes,
    ) -> Result<(), HubError> {
        check_c2d_size(&properties, &payload)?;
        check_name(input)?;
        let topic = hub::module_input(device_id, module_id, input, &properties)
            .map_err(|_| HubError::InvalidName)?;
        // A topic that cannot be sent (a wildcard, U+0000, over 65,535
        // bytes) would wait in the queue for ever: refused here.
        iothub_proto::mqtt::TopicName::new(&topic).map_err(|_| HubError::InvalidName)?;
        let identity = Identity::module(device_id.clone(), module_id.clone());
        self.enqueue(&identity, topic, payload)
    }

    pub(crate) fn enqueue(
        &mut self,
        identity: &Identity,
        topic: String,
        payload: Bytes,
    ) -> Result<(), HubError> {
        let r = self.record_mut(identity)?;
        if r.queue.len() >= MAX_PENDING_C2D {
            return Err(HubError::QueueFull {
                max: MAX_PENDING_C2D,
            });
        }
        r.queue.push_back(Queued {
            topic,
            payload,
            pid: None,
            sent_before: false,
        });
        let k = key(identity);
        self.changed(&k);
        self.deliver(&k);
        Ok(())
    }

    pub(crate) fn on_puback(&mut self, conn: ConnId, pid: Pid) {
        let Some(r) = self
            .conns
            .get(&conn)
            .and_then(|c| c.client_id.as_ref())
            .and_then(|k| self.identities.get_mut(k))
        else {
            return;
        };
        let before = r.queue.len();
        r.queue.retain(|q| q.pid != Some(pid));
        if r.queue.len() != before {
            let identity = r.identity.clone();
            self.changes.insert(key(&identity), identity);
        }
    }

    /// Sends the identity's queued messages that are not in flight, if it
    /// is connected and subscribed to its delivery filter.
    pub(crate) fn deliver(&mut self, k: &str) {
        let Some(r) = self.identities.get_mut(k) else {
            return;
        };
        let (Some(granted), Some(c)) = (
            r.granted(&r.delivery_filter()),
            r.conn.and_then(|id| self.conns.get_mut(&id)),
        ) else {
            return;
        };
        let mut in_use: Vec<Pid> = r.queue.iter().filter_map(|q| q.pid).collect();
        let mut first_sends = false;
        if let Some(id) = r.conn {
            if r.queue.iter().any(|q| q.pid.is_none()) {
                self.touched.insert(id);
            }
        }
        for q in r.queue.iter_mut().filter(|q| q.pid.is_none()) {
            first_sends |= !q.sent_before;
            let qospid = if granted == QoS::AtMostOnce {
                QosPid::AtMostOnce
            } else {
                let pid = c.alloc_pid(&in_use);
                in_use.push(pid);
                q.pid = Some(pid);
                QosPid::AtLeastOnce(pid)
            };
            c.send_publish(q.topic.clone(), qospid, q.payload.clone(), q.sent_before);
            q.sent_before = true;
        }
        // At QoS 0 there is no PUBACK to wait for.
        let before = r.queue.len();
        r.queue.retain(|q| q.pid.is_some());
        if first_sends || r.queue.len() != before {
            let identity = r.identity.clone();
            self.changes.insert(key(&identity), identity);
        }
    }
}
