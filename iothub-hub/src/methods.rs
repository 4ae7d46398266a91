//! Direct methods: the service's calls and the devices' answers.

use super::*;

/// A method call awaiting its answer.
#[derive(Debug)]
pub(crate) struct Call {
    /// The identity key.
    pub(crate) key: String,
    /// The monotonic ms at which it times out, for
    /// [`Hub::invoke_method_until`]; `None` for [`Hub::invoke_method`].
    pub(crate) deadline: Option<u64>,
}

impl Hub {
    /// The service calls a direct method: sends
    /// `$iothub/methods/POST/{name}/?$rid={rid}` and returns the request id
    /// under which the answer will appear in
    /// [`method_responses`](Self::method_responses).
    ///
    /// Errors: [`HubError::NotConnected`] unless the identity is connected
    /// and subscribed to `$iothub/methods/POST/#`; [`HubError::InvalidName`];
    /// [`HubError::TooLarge`] over 128 KB.
    pub fn invoke_method(
        &mut self,
        identity: &Identity,
        name: &str,
        payload: Bytes,
    ) -> Result<RequestId, HubError> {
        self.invoke(identity, name, payload, None)
    }

    /// The service calls a direct method and waits until monotonic
    /// `deadline` (the caller's `now` plus the response timeout,
    /// which the service API keeps within 5–300 s). The call ends in
    /// exactly one [`MethodResult`] from [`poll_method_result`](Self::poll_method_result):
    /// the device's answer, or [`MethodOutcome::TimedOut`] from the first
    /// [`handle_timeout`](Self::handle_timeout) at or after the deadline
    /// (also when the device went away meanwhile). Errors as
    /// [`invoke_method`](Self::invoke_method); then there is no result.
    pub fn invoke_method_until(
        &mut self,
        identity: &Identity,
        name: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<RequestId, HubError> {
        self.invoke(identity, name, payload, Some(deadline.as_millis()))
    }

    /// The next ended deadline-tracked method call, or `None`. Drain after
    /// input and after [`handle_timeout`](Self::handle_timeout).
    #[must_use = "a method result that is not taken never reaches its caller"]
    pub fn poll_method_result(&mut self) -> Option<MethodResult> {
        self.method_results.pop_front()
    }

    pub(crate) fn invoke(
        &mut self,
        identity: &Identity,
        name: &str,
        payload: Bytes,
        deadline: Option<u64>,
    ) -> Result<RequestId, HubError> {
        if payload.len() > MAX_METHOD_PAYLOAD {
            return Err(HubError::TooLarge {
                size: payload.len(),
                max: MAX_METHOD_PAYLOAD,
            });
        }
        check_name(name)?;
        let request_id = RequestId::from(self.next_request.saturating_add(1));
        let topic = hub::method_request(name, &request_id).map_err(|_| HubError::InvalidName)?;
        // A topic that cannot be sent (a wildcard, U+0000, over 65,535
        // bytes) would make a call whose request never leaves: refused.
        iothub_proto::mqtt::TopicName::new(&topic).map_err(|_| HubError::InvalidName)?;
        let k = key(identity);
        let r = self.identities.get(&k).ok_or(HubError::UnknownIdentity)?;
        let c = r
            .granted(METHOD_REQUEST_FILTER)
            .and(r.conn)
            .and_then(|id| self.conns.get_mut(&id))
            .ok_or(HubError::NotConnected)?;
        c.send_publish(topic, QosPid::AtMostOnce, payload, false);
        if let Some(id) = r.conn {
            self.touched.insert(id);
        }
        self.next_request = self.next_request.saturating_add(1);
        self.method_calls
            .insert(String::from(request_id.as_str()), Call { key: k, deadline });
        Ok(request_id)
    }

    /// The method answers received, in order.
    #[must_use]
    pub fn method_responses(&self) -> &[MethodResponse] {
        &self.method_responses
    }

    /// Takes the answer to one method call: its status and body.
    pub fn take_method_response(&mut self, request_id: &RequestId) -> Option<(i32, Bytes)> {
        let i = self
            .method_responses
            .iter()
            .position(|m| m.request_id == *request_id)?;
        let m = self.method_responses.remove(i);
        Some((m.status, m.payload))
    }
}
