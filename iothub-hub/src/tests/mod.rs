//! Tests of the fake hub, driven by a tiny raw client built on the codec.

mod c2d;
mod connect;
mod dps;
mod durable;
mod faults;
mod publish;
mod registry;
mod routes;
mod twin_methods;

use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::*;
use iothub_proto::auth::{ConnectCredentials, Credential, HostName, UsernameOptions};
use iothub_proto::mqtt::MAX_PACKET_SIZE;
// The device's topic grammar (builders and hub→device parser), not this
// crate's server-side `topic`.
pub(super) use iothub_proto::topic;

pub(super) const HOST: &str = "hub.example.net";
/// Wall-clock Unix seconds at simulated time 0.
pub(super) const T0: u64 = 1_700_000_000;

pub(super) fn key(b: u8) -> SharedAccessKey {
    SharedAccessKey::from_bytes([b; 32]).unwrap()
}

/// A CONNECT for `identity` signed with `key`, token expiring at
/// `expiry`; keep-alive 60 s, CleanSession 0.
pub(super) fn connect_with(
    identity: &Identity,
    key: &SharedAccessKey,
    expiry: u64,
    options: &UsernameOptions,
) -> Connect {
    let credential = Credential::SharedAccessKey {
        key: key.clone(),
        key_name: None,
    };
    let creds = ConnectCredentials::new(
        identity,
        &HostName::new(HOST).unwrap(),
        &credential,
        options,
        expiry,
    );
    Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(60)
        .with_clean_session(false)
        .with_username(creds.username.as_str())
        .unwrap()
        .with_password(creds.expose_password().unwrap().to_vec())
        .unwrap()
}

/// The test world: a hub and the simulated clocks.
pub(super) struct World {
    pub(super) hub: Hub,
    pub(super) now_ms: u64,
    next_pid: u16,
}

impl World {
    pub(super) fn new() -> World {
        World {
            hub: Hub::new(HOST),
            now_ms: 0,
            next_pid: 0,
        }
    }

    pub(super) fn unix(&self) -> u64 {
        T0 + self.now_ms / 1000
    }

    /// Registers a device with key `[b; 32]`.
    pub(super) fn device(&mut self, id: &str, b: u8) -> (Identity, SharedAccessKey) {
        let identity = self.hub.add_device(DeviceId::new(id).unwrap(), key(b));
        (identity, key(b))
    }

    /// Registers a module with key `[b; 32]`.
    pub(super) fn module(&mut self, d: &str, m: &str, b: u8) -> (Identity, SharedAccessKey) {
        let identity =
            self.hub
                .add_module(DeviceId::new(d).unwrap(), ModuleId::new(m).unwrap(), key(b));
        (identity, key(b))
    }

    /// A CONNECT valid for an hour from now.
    pub(super) fn connect_packet(&self, identity: &Identity, key: &SharedAccessKey) -> Connect {
        connect_with(
            identity,
            key,
            self.unix() + 3600,
            &UsernameOptions::default(),
        )
    }

    pub(super) fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    pub(super) fn pid(&mut self) -> Pid {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        Pid::new(self.next_pid).unwrap()
    }

    pub(super) fn send_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        let (now, unix) = (Instant::from_millis(self.now_ms), self.unix());
        self.hub.handle_input(conn, now, unix, bytes);
    }

    pub(super) fn send(&mut self, conn: ConnId, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        self.send_bytes(conn, &bytes);
    }

    /// Everything the hub sent on `conn`, decoded. First checks the
    /// [`Hub::poll_ready`] contract: every connection with bytes queued
    /// is among the ready ones.
    pub(super) fn recv(&mut self, conn: ConnId) -> Vec<Packet> {
        for (id, c) in &self.hub.conns {
            assert!(
                c.tx.is_empty() || self.hub.touched.contains(id),
                "{id} has output but is not ready"
            );
        }
        let mut buf = BytesMut::new();
        while let Some(b) = self.hub.poll_transmit(conn) {
            buf.extend_from_slice(&b);
        }
        let mut out = Vec::new();
        while let Some(p) = mqtt::decode(&mut buf, MAX_PACKET_SIZE).unwrap() {
            out.push(p);
        }
        assert!(buf.is_empty(), "a partial packet was left: {buf:?}");
        out
    }

    /// Opens a connection, sends `connect`, returns the CONNACK.
    pub(super) fn open(&mut self, connect: Connect) -> (ConnId, Connack) {
        let conn = self.hub.accept(Instant::ZERO, None);
        self.send(conn, connect);
        let mut packets = self.recv(conn).into_iter();
        let Some(Packet::Connack(ack)) = packets.next() else {
            panic!("no CONNACK");
        };
        (conn, ack)
    }

    /// Connects `identity`, which must be accepted.
    pub(super) fn connect(&mut self, identity: &Identity, key: &SharedAccessKey) -> ConnId {
        let connect = self.connect_packet(identity, key);
        let (conn, ack) = self.open(connect);
        assert_eq!(ack.code(), ConnectReturnCode::Accepted);
        conn
    }

    /// Subscribes and returns the SUBACK codes (other packets are dropped).
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        filters: &[(&str, QoS)],
    ) -> Vec<SubscribeReturnCode> {
        let pid = self.pid();
        let sub = Subscribe::new(pid, filters.iter().map(|&(f, q)| (f, q))).unwrap();
        self.send(conn, sub);
        let packets = self.recv(conn);
        let Some(Packet::Suback(ack)) = packets.first() else {
            panic!("no SUBACK: {packets:?}");
        };
        assert_eq!(ack.pid(), pid);
        ack.return_codes().to_vec()
    }

    /// Subscribes to every filter an identity may use, all accepted; the
    /// packets that follow the SUBACK are returned.
    pub(super) fn subscribe_all(&mut self, conn: ConnId, identity: &Identity) -> Vec<Packet> {
        let own = match identity.module_id() {
            None => topic::c2d_filter(identity.device_id()),
            Some(m) => topic::module_inputs_filter(identity.device_id(), m),
        };
        let pid = self.pid();
        let sub = Subscribe::new(
            pid,
            [
                (TWIN_RESPONSE_FILTER, QoS::AtMostOnce),
                (DESIRED_PATCH_FILTER, QoS::AtMostOnce),
                (METHOD_REQUEST_FILTER, QoS::AtMostOnce),
                (own.as_str(), QoS::AtLeastOnce),
            ],
        )
        .unwrap();
        self.send(conn, sub);
        let mut packets = self.recv(conn).into_iter();
        let Some(Packet::Suback(ack)) = packets.next() else {
            panic!("no SUBACK");
        };
        assert!(
            ack.return_codes()
                .iter()
                .all(|c| *c != SubscribeReturnCode::Failure)
        );
        packets.collect()
    }

    pub(super) fn publish(&mut self, conn: ConnId, topic: &str, qospid: QosPid, payload: &[u8]) {
        let p = Publish::new(topic, qospid, Bytes::copy_from_slice(payload)).unwrap();
        self.send(conn, p);
    }
}

/// The PUBLISH packets among `packets`.
pub(super) fn publishes(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// The one PUBLISH among `packets`.
pub(super) fn one_publish(packets: &[Packet]) -> Publish {
    let mut p = publishes(packets);
    assert_eq!(p.len(), 1, "{packets:?}");
    p.remove(0)
}

pub(super) fn json(p: &Publish) -> Value {
    serde_json::from_slice(p.payload()).unwrap()
}

pub(super) fn s(x: &str) -> String {
    String::from(x)
}
