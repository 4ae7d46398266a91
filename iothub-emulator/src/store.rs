//! Durable state in redb: four tables, each key → JSON or text:
//! identity client id → the identity's [`IdentityState`]; DPS enrollment
//! (`individual/{id}` or `group/{id}`) → the enrollment; route name → the
//! route's text; DPS registration id → its latest registration record.
//! Writes go through a channel to one storage thread that commits them in
//! batches, so the hub's lock is never held across a disk write.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use iothub_hub::{Authentication, IdentityState, QueuedMessage, Twin};
use iothub_proto::auth::{Identity, SharedAccessKey};
use iothub_proto::mqtt::QoS;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde_json::{Map, Value, json};

use crate::EmulatorError;

const IDENTITIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("identities");
const ENROLLMENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("enrollments");
const ROUTES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("routes");
const REGISTRATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("registrations");

/// Which table an operation is on.
#[derive(Debug, Clone, Copy)]
enum Table {
    Identities,
    Enrollments,
    Routes,
    Registrations,
}

enum Op {
    Put(Table, String, Vec<u8>),
    Delete(Table, String),
    Flush(mpsc::Sender<()>),
}

/// What the database held at start.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// Every identity's durable state.
    pub(crate) identities: Vec<IdentityState>,
    /// Every DPS enrollment, as stored (the DPS module reads them).
    pub(crate) enrollments: Vec<(String, Vec<u8>)>,
    /// Every route between modules: name → route text.
    pub(crate) routes: Vec<(String, String)>,
    /// Every DPS registration record, as stored (the DPS module reads them).
    pub(crate) registrations: Vec<(String, Vec<u8>)>,
}

/// The handle the driver writes through.
#[derive(Debug)]
pub(crate) struct Store {
    tx: mpsc::Sender<Op>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Op")
    }
}

/// The database holds every device's and enrollment's keys: on Unix it is
/// created readable and writable by its owner only (`0600`), and an
/// existing one is narrowed to that. (redb initialises an empty file.)
fn owner_only(path: &Path) -> Result<(), EmulatorError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(storage_error)?;
            }
            Err(e) => return Err(storage_error(e)),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn storage_error(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Storage(e.to_string())
}

impl Store {
    /// Opens (or creates) `path`, reads every stored identity, and starts
    /// the storage thread.
    pub(crate) fn open(path: &Path) -> Result<(Store, Stored), EmulatorError> {
        owner_only(path)?;
        let db = Database::create(path).map_err(storage_error)?;
        {
            let w = db.begin_write().map_err(storage_error)?;
            w.open_table(IDENTITIES).map_err(storage_error)?;
            w.open_table(ENROLLMENTS).map_err(storage_error)?;
            w.open_table(ROUTES).map_err(storage_error)?;
            w.open_table(REGISTRATIONS).map_err(storage_error)?;
            w.commit().map_err(storage_error)?;
        }
        let mut stored = Stored::default();
        {
            let r = db.begin_read().map_err(storage_error)?;
            let table = r.open_table(IDENTITIES).map_err(storage_error)?;
            for entry in table.iter().map_err(storage_error)? {
                let (k, v) = entry.map_err(storage_error)?;
                match decode(v.value()) {
                    Some(state) => stored.identities.push(state),
                    None => {
                        tracing::warn!(identity = k.value(), "unreadable stored identity skipped");
                    }
                }
            }
            let table = r.open_table(ENROLLMENTS).map_err(storage_error)?;
            for entry in table.iter().map_err(storage_error)? {
                let (k, v) = entry.map_err(storage_error)?;
                stored
                    .enrollments
                    .push((k.value().to_owned(), v.value().to_vec()));
            }
            let table = r.open_table(ROUTES).map_err(storage_error)?;
            for entry in table.iter().map_err(storage_error)? {
                let (k, v) = entry.map_err(storage_error)?;
                stored.routes.push((
                    k.value().to_owned(),
                    String::from_utf8_lossy(v.value()).into_owned(),
                ));
            }
            let table = r.open_table(REGISTRATIONS).map_err(storage_error)?;
            for entry in table.iter().map_err(storage_error)? {
                let (k, v) = entry.map_err(storage_error)?;
                stored
                    .registrations
                    .push((k.value().to_owned(), v.value().to_vec()));
            }
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("iothub-emulator-store".into())
            .spawn(move || run(&db, &rx))?;
        Ok((
            Store {
                tx,
                thread: Some(thread),
            },
            stored,
        ))
    }

    pub(crate) fn put(&self, state: &IdentityState) {
        let _ = self.tx.send(Op::Put(
            Table::Identities,
            state.identity.client_id(),
            encode(state),
        ));
    }

    pub(crate) fn delete(&self, identity: &Identity) {
        let _ = self
            .tx
            .send(Op::Delete(Table::Identities, identity.client_id()));
    }

    /// Stores a DPS enrollment under `key` (`individual/{id}` or
    /// `group/{id}`).
    pub(crate) fn put_enrollment(&self, key: String, value: Vec<u8>) {
        let _ = self.tx.send(Op::Put(Table::Enrollments, key, value));
    }

    pub(crate) fn delete_enrollment(&self, key: String) {
        let _ = self.tx.send(Op::Delete(Table::Enrollments, key));
    }

    /// Stores a route between modules (its canonical text).
    pub(crate) fn put_route(&self, name: &str, text: &str) {
        let _ = self.tx.send(Op::Put(
            Table::Routes,
            name.to_owned(),
            text.as_bytes().to_vec(),
        ));
    }

    pub(crate) fn delete_route(&self, name: &str) {
        let _ = self.tx.send(Op::Delete(Table::Routes, name.to_owned()));
    }

    /// Stores the DPS registration record of a registration id.
    pub(crate) fn put_registration(&self, registration_id: &str, value: Vec<u8>) {
        let _ = self.tx.send(Op::Put(
            Table::Registrations,
            registration_id.to_owned(),
            value,
        ));
    }

    /// Waits until everything sent before is committed.
    pub(crate) fn flush(&self) {
        self.flusher().flush();
    }

    /// A handle that can wait for commits without holding the store.
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher(self.tx.clone())
    }

    /// Commits what is pending, stops the thread and closes the database.
    pub(crate) fn close(&mut self) {
        self.flush();
        let (tx, _) = mpsc::channel();
        self.tx = tx;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for the storage thread to commit what was sent before.
#[derive(Debug, Clone)]
pub(crate) struct Flusher(mpsc::Sender<Op>);

impl Flusher {
    pub(crate) fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.0.send(Op::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

fn run(db: &Database, rx: &mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut acks = Vec::new();
        let result = (|| -> Result<(), EmulatorError> {
            let w = db.begin_write().map_err(storage_error)?;
            {
                let mut identities = w.open_table(IDENTITIES).map_err(storage_error)?;
                let mut enrollments = w.open_table(ENROLLMENTS).map_err(storage_error)?;
                let mut routes = w.open_table(ROUTES).map_err(storage_error)?;
                let mut registrations = w.open_table(REGISTRATIONS).map_err(storage_error)?;
                for op in batch {
                    match op {
                        Op::Put(t, k, v) => {
                            let table = match t {
                                Table::Identities => &mut identities,
                                Table::Enrollments => &mut enrollments,
                                Table::Routes => &mut routes,
                                Table::Registrations => &mut registrations,
                            };
                            table
                                .insert(k.as_str(), v.as_slice())
                                .map_err(storage_error)?;
                        }
                        Op::Delete(t, k) => {
                            let table = match t {
                                Table::Identities => &mut identities,
                                Table::Enrollments => &mut enrollments,
                                Table::Routes => &mut routes,
                                Table::Registrations => &mut registrations,
                            };
                            table.remove(k.as_str()).map_err(storage_error)?;
                        }
                        Op::Flush(ack) => acks.push(ack),
                    }
                }
            }
            w.commit().map_err(storage_error)
        })();
        if let Err(e) = result {
            tracing::error!("storage write failed: {e}");
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// JSON encoding of an identity's durable state

pub(crate) fn encode(state: &IdentityState) -> Vec<u8> {
    let key = |k: &SharedAccessKey| STANDARD.encode(k.expose_secret());
    let auth = match &state.authentication {
        Some(Authentication::Sas { primary, secondary }) => json!({
            "type": "sas", "primaryKey": key(primary), "secondaryKey": secondary.as_ref().map(key),
        }),
        Some(Authentication::X509 {
            primary_thumbprint,
            secondary_thumbprint,
        }) => json!({
            "type": "x509", "primaryThumbprint": primary_thumbprint,
            "secondaryThumbprint": secondary_thumbprint,
        }),
        _ => Value::Null,
    };
    let t = &state.twin;
    let doc = json!({
        "deviceId": state.identity.device_id().as_str(),
        "moduleId": state.identity.module_id().map(|m| m.as_str()),
        "authentication": auth,
        "twin": {
            "desired": t.desired, "desiredVersion": t.desired_version,
            "reported": t.reported, "reportedVersion": t.reported_version,
            "tags": t.tags, "version": t.version,
        },
        "session": state.session.as_ref().map(|subs| subs.iter()
            .map(|(f, q)| json!([f, q.as_u8()])).collect::<Vec<_>>()),
        "queue": state.queue.iter().map(|q| json!({
            "topic": q.topic, "payload": STANDARD.encode(&q.payload), "sentBefore": q.sent_before,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

pub(crate) fn decode(bytes: &[u8]) -> Option<IdentityState> {
    let doc: Value = serde_json::from_slice(bytes).ok()?;
    let identity = Identity::parse(doc["deviceId"].as_str()?, doc["moduleId"].as_str()).ok()?;
    let key = |v: &Value| {
        v.as_str()
            .and_then(|s| SharedAccessKey::from_base64(s).ok())
    };
    let a = &doc["authentication"];
    let authentication = match a["type"].as_str() {
        Some("sas") => Some(Authentication::Sas {
            primary: key(&a["primaryKey"])?,
            secondary: key(&a["secondaryKey"]),
        }),
        Some("x509") => Some(Authentication::X509 {
            primary_thumbprint: a["primaryThumbprint"].as_str()?.to_owned(),
            secondary_thumbprint: a["secondaryThumbprint"].as_str().map(str::to_owned),
        }),
        _ => None,
    };
    let mut state = IdentityState::new(identity, authentication);
    let t = &doc["twin"];
    let map = |v: &Value| v.as_object().cloned().unwrap_or_else(Map::new);
    let mut twin = Twin::new();
    twin.desired = map(&t["desired"]);
    twin.desired_version = t["desiredVersion"].as_u64()?;
    twin.reported = map(&t["reported"]);
    twin.reported_version = t["reportedVersion"].as_u64()?;
    twin.tags = map(&t["tags"]);
    twin.version = t["version"].as_u64()?;
    state.twin = twin;
    state.session = doc["session"].as_array().map(|subs| {
        subs.iter()
            .filter_map(|s| {
                let f = s[0].as_str()?.to_owned();
                let q = QoS::from_u8(u8::try_from(s[1].as_u64()?).ok()?)?;
                Some((f, q))
            })
            .collect()
    });
    for q in doc["queue"].as_array()? {
        let payload = STANDARD.decode(q["payload"].as_str()?).ok()?;
        state.queue.push(QueuedMessage::new(
            q["topic"].as_str()?.to_owned(),
            Bytes::from(payload),
            q["sentBefore"].as_bool()?,
        ));
    }
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::auth::{DeviceId, ModuleId};

    #[test]
    fn identity_state_round_trips_through_json() {
        let id = Identity::module(DeviceId::new("d").unwrap(), ModuleId::new("m").unwrap());
        let mut s = IdentityState::new(
            id,
            Some(Authentication::Sas {
                primary: SharedAccessKey::from_bytes([1u8; 32]).unwrap(),
                secondary: Some(SharedAccessKey::from_bytes([2u8; 32]).unwrap()),
            }),
        );
        s.twin.desired.insert("a".into(), json!({"b": [1, 2]}));
        s.twin.desired_version = 4;
        s.twin.tags.insert("t".into(), json!("x"));
        s.session = Some(vec![("$iothub/twin/res/#".into(), QoS::AtMostOnce)]);
        s.queue.push(QueuedMessage::new(
            "devices/d/messages/devicebound/".into(),
            Bytes::from_static(b"\x00\xffbin"),
            true,
        ));
        assert_eq!(decode(&encode(&s)), Some(s));
        let x = IdentityState::new(
            Identity::device(DeviceId::new("cam").unwrap()),
            Some(Authentication::X509 {
                primary_thumbprint: "ab".into(),
                secondary_thumbprint: None,
            }),
        );
        assert_eq!(decode(&encode(&x)), Some(x));
    }

    #[test]
    fn the_store_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let s = IdentityState::new(
            Identity::device(DeviceId::new("d1").unwrap()),
            Some(Authentication::sas(
                SharedAccessKey::from_bytes([3u8; 32]).unwrap(),
            )),
        );
        {
            let (mut store, stored) = Store::open(&path).unwrap();
            assert!(stored.identities.is_empty() && stored.enrollments.is_empty());
            store.put(&s);
            store.put_enrollment("individual/r1".into(), b"{}".to_vec());
            store.put_route("r", "FROM x");
            store.put_registration("reg", b"{}".to_vec());
            store.close();
        }
        let (mut store, stored) = Store::open(&path).unwrap();
        assert_eq!(stored.identities, vec![s.clone()]);
        assert_eq!(
            stored.enrollments,
            vec![("individual/r1".to_owned(), b"{}".to_vec())]
        );
        assert_eq!(stored.routes, vec![("r".to_owned(), "FROM x".to_owned())]);
        assert_eq!(
            stored.registrations,
            vec![("reg".to_owned(), b"{}".to_vec())]
        );
        store.delete(&s.identity);
        store.delete_enrollment("individual/r1".into());
        store.delete_route("r");
        store.close();
        let (_store, stored) = Store::open(&path).unwrap();
        assert!(stored.identities.is_empty() && stored.enrollments.is_empty());
        assert!(stored.routes.is_empty());
    }
}
