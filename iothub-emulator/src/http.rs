//! The service API over HTTP (axum), shaped like the IoT Hub service REST
//! API: JSON bodies, `?api-version=` accepted and ignored.
//!
//! | method and path | what |
//! |---|---|
//! | `PUT /devices/{id}` | create or update a device (keys generated when absent) |
//! | `GET /devices/{id}`, `DELETE /devices/{id}`, `GET /devices` | read, delete, list |
//! | `PUT/GET/DELETE /devices/{id}/modules/{mid}`, `GET /devices/{id}/modules` | modules |
//! | `GET /twins/{id}`, `PATCH /twins/{id}` | twin; patch `{"properties":{"desired":{…}},"tags":{…}}` |
//! | `GET/PATCH /twins/{id}/modules/{mid}` | module twin |
//! | `POST /twins/{id}/methods`, `POST /twins/{id}/modules/{mid}/methods` | direct method |
//! | `POST /devices/{id}/messages/deviceBound` | C2D: body, `iothub-messageid`, `iothub-app-{name}` headers |
//! | `POST /devices/{id}/modules/{mid}/messages/inputs/{input}` | a message for a module's input: body and headers as C2D |
//! | `PUT/GET/DELETE /routes/{name}`, `GET /routes` | IoT Edge routes between modules: `{"route":"FROM … INTO …"}` |
//! | `GET /devices/{id}/messages/events`, `GET /devices/{id}/modules/{mid}/messages/events` | stored telemetry (`?base64=true` forces base64 bodies) |
//! | `POST /devices/{id}/faults`, `POST /devices/{id}/modules/{mid}/faults` | fault injection |
//! | `PUT/GET/DELETE /enrollments/{registrationId}`, `GET /enrollments` | DPS individual enrollments |
//! | `PUT/GET/DELETE /enrollmentGroups/{id}`, `GET /enrollmentGroups` | DPS enrollment groups |
//! | `GET /registrations/{registrationId}` | the latest DPS assignment of a registration id |
//! | `POST /dps/faults` | DPS fault injection |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use iothub_hub::Authentication;
use iothub_hub::routes::Route;
use iothub_proto::auth::Identity;
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::properties::{Ack, MessageProperties};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::core::Core;
use crate::service::twin_json;
use crate::{
    DeviceInfo, DpsRegistration, EmulatorError, EnrollmentAttestation, EnrollmentInfo,
    EnrollmentKind, EnrollmentSpec, key_from_base64, thumbprint,
};

type Shared = State<Arc<Core>>;
type Reply = Result<Response, ApiError>;

/// An error answer: `{"errorCode":…,"message":…}` with the HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl From<EmulatorError> for ApiError {
    fn from(e: EmulatorError) -> ApiError {
        let status = match &e {
            EmulatorError::NotFound(_) | EmulatorError::NotConnected => StatusCode::NOT_FOUND,
            EmulatorError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            EmulatorError::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            EmulatorError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EmulatorError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EmulatorError::QueueFull { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = u32::from(self.0.as_u16()) * 1000 + 1;
        (
            self.0,
            axum::Json(json!({"errorCode": code, "message": self.1})),
        )
            .into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// An optional non-negative integer member: absent or `null` gives
/// `default`; any other kind of value is a 400 naming `what`.
fn int_or(v: &Value, what: &str, default: u64) -> Result<u64, ApiError> {
    match v {
        Value::Null => Ok(default),
        v => v
            .as_u64()
            .ok_or_else(|| bad(format!("{what} must be a non-negative integer"))),
    }
}

fn ok_json(v: Value) -> Reply {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

fn identity(device: &str, module: Option<&str>) -> Result<Identity, ApiError> {
    Identity::parse(device, module).map_err(|e| bad(e.to_string()))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))
}

/// The registry's JSON for a device or module.
fn device_json(d: &DeviceInfo) -> Value {
    let auth = match &d.authentication {
        Authentication::X509 {
            primary_thumbprint,
            secondary_thumbprint,
        } => json!({
            "type": "selfSigned",
            "symmetricKey": {"primaryKey": null, "secondaryKey": null},
            "x509Thumbprint": {"primaryThumbprint": primary_thumbprint,
                               "secondaryThumbprint": secondary_thumbprint},
        }),
        _ => json!({
            "type": "sas",
            "symmetricKey": {"primaryKey": d.primary_key(), "secondaryKey": d.secondary_key()},
            "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
        }),
    };
    let mut v = json!({
        "deviceId": d.identity.device_id().as_str(),
        "generationId": "0",
        "etag": "AAAAAAAAAAE=",
        "status": "enabled",
        "connectionState": if d.connected { "Connected" } else { "Disconnected" },
        "cloudToDeviceMessageCount": d.pending_c2d,
        "authentication": auth,
        "connectionString": d.connection_string(),
    });
    if let Some(m) = d.identity.module_id() {
        v["moduleId"] = m.as_str().into();
    }
    v
}

/// Reads the `authentication` member of a registry PUT body.
fn authentication(body: &Value) -> Result<Option<Authentication>, ApiError> {
    let a = &body["authentication"];
    if a.is_null() {
        return Ok(None);
    }
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match a["type"].as_str().unwrap_or("sas") {
        "sas" => {
            let k = &a["symmetricKey"];
            let key = |v: &Value| -> Result<Option<_>, ApiError> {
                text(v)
                    .map(|s| key_from_base64(&s).map_err(ApiError::from))
                    .transpose()
            };
            match (key(&k["primaryKey"])?, key(&k["secondaryKey"])?) {
                (Some(primary), secondary) => Ok(Some(Authentication::Sas { primary, secondary })),
                (None, Some(_)) => Err(bad("a secondaryKey needs a primaryKey")),
                (None, None) => Ok(None),
            }
        }
        "selfSigned" | "certificateAuthority" => {
            let t = &a["x509Thumbprint"];
            let primary = text(&t["primaryThumbprint"])
                .ok_or_else(|| bad("x509Thumbprint.primaryThumbprint is required"))?;
            Ok(Some(Authentication::X509 {
                primary_thumbprint: primary,
                secondary_thumbprint: text(&t["secondaryThumbprint"]),
            }))
        }
        other => Err(bad(format!("unknown authentication type {other:?}"))),
    }
}

async fn put_identity(core: &Core, id: Identity, body: &Bytes) -> Reply {
    let body = parse_body(body)?;
    for (field, want) in [
        ("deviceId", Some(id.device_id().as_str())),
        ("moduleId", id.module_id().map(|m| m.as_str())),
    ] {
        if let (Some(given), Some(want)) = (body[field].as_str(), want) {
            if given != want {
                return Err(bad(format!("{field} {given:?} does not match the path")));
            }
        }
    }
    let info = core.create_identity(&id, authentication(&body)?)?;
    ok_json(device_json(&info))
}

async fn put_device(State(core): Shared, Path(d): Path<String>, body: Bytes) -> Reply {
    put_identity(&core, identity(&d, None)?, &body).await
}

async fn put_module(
    State(core): Shared,
    Path((d, m)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    put_identity(&core, identity(&d, Some(&m))?, &body).await
}

async fn get_device(State(core): Shared, Path(d): Path<String>) -> Reply {
    ok_json(device_json(&core.get_identity(&identity(&d, None)?)?))
}

async fn get_module(State(core): Shared, Path((d, m)): Path<(String, String)>) -> Reply {
    ok_json(device_json(&core.get_identity(&identity(&d, Some(&m))?)?))
}

async fn delete_device(State(core): Shared, Path(d): Path<String>) -> Reply {
    core.delete_identity(&identity(&d, None)?)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_module(State(core): Shared, Path((d, m)): Path<(String, String)>) -> Reply {
    core.delete_identity(&identity(&d, Some(&m))?)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_devices(State(core): Shared) -> Reply {
    ok_json(Value::Array(
        core.list(None).iter().map(device_json).collect(),
    ))
}

async fn list_modules(State(core): Shared, Path(d): Path<String>) -> Reply {
    let device = identity(&d, None)?;
    core.get_identity(&device)?;
    ok_json(Value::Array(
        core.list(Some(device.device_id()))
            .iter()
            .map(device_json)
            .collect(),
    ))
}

fn twin_reply(core: &Core, id: &Identity) -> Reply {
    let (twin, connected) = core.twin(id)?;
    ok_json(twin_json(
        id,
        &twin,
        connected,
        core.model_id(id).as_deref(),
    ))
}

async fn patch_twin(core: &Core, id: Identity, body: &Bytes) -> Reply {
    let body = parse_body(body)?;
    if !body.is_object() {
        return Err(bad("a twin patch is a JSON object"));
    }
    let desired = body["properties"]["desired"].clone();
    let tags = body["tags"].clone();
    let some = |v: Value| (!v.is_null()).then_some(v);
    let (twin, connected) = core.patch_twin(&id, some(desired), some(tags))?;
    ok_json(twin_json(
        &id,
        &twin,
        connected,
        core.model_id(&id).as_deref(),
    ))
}

async fn get_twin(State(core): Shared, Path(d): Path<String>) -> Reply {
    twin_reply(&core, &identity(&d, None)?)
}

async fn get_module_twin(State(core): Shared, Path((d, m)): Path<(String, String)>) -> Reply {
    twin_reply(&core, &identity(&d, Some(&m))?)
}

async fn patch_device_twin(State(core): Shared, Path(d): Path<String>, body: Bytes) -> Reply {
    patch_twin(&core, identity(&d, None)?, &body).await
}

async fn patch_module_twin(
    State(core): Shared,
    Path((d, m)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    patch_twin(&core, identity(&d, Some(&m))?, &body).await
}

async fn invoke(core: &Core, id: Identity, body: &Bytes) -> Reply {
    let body = parse_body(body)?;
    let name = body["methodName"]
        .as_str()
        .ok_or_else(|| bad("methodName is required"))?;
    let timeout = match &body["responseTimeoutInSeconds"] {
        Value::Null => 30,
        v => v
            .as_u64()
            .ok_or_else(|| bad("responseTimeoutInSeconds must be an integer"))?,
    };
    let reply = core
        .invoke_method(&id, name, &body["payload"], Duration::from_secs(timeout))
        .await?;
    ok_json(json!({"status": reply.status, "payload": reply.payload}))
}

async fn invoke_device(State(core): Shared, Path(d): Path<String>, body: Bytes) -> Reply {
    invoke(&core, identity(&d, None)?, &body).await
}

async fn invoke_module(
    State(core): Shared,
    Path((d, m)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    invoke(&core, identity(&d, Some(&m))?, &body).await
}

/// The properties of a C2D or module input message from the request
/// headers: `iothub-messageid`, `iothub-correlationid`, `iothub-userid`,
/// `iothub-contenttype`, `iothub-contentencoding`, `iothub-expiry`,
/// `iothub-ack` set system properties and every `iothub-app-{name}`
/// header an application property.
fn message_properties(headers: &HeaderMap) -> Result<MessageProperties, ApiError> {
    let mut p = MessageProperties::new();
    for (name, value) in headers {
        let value = value
            .to_str()
            .map_err(|_| bad(format!("header {name} is not text")))?
            .to_owned();
        let name = name.as_str();
        match name {
            "iothub-messageid" => p.message_id = Some(value),
            "iothub-correlationid" => p.correlation_id = Some(value),
            "iothub-userid" => p.user_id = Some(value),
            "iothub-contenttype" => p.content_type = Some(value),
            "iothub-contentencoding" => p.content_encoding = Some(value),
            "iothub-expiry" => p.absolute_expiry_time = Some(value),
            "iothub-ack" => {
                p.ack = Some(
                    Ack::known(&value)
                        .ok_or_else(|| bad("iothub-ack: none, positive, negative or full"))?,
                );
            }
            _ => {
                if let Some(app) = name.strip_prefix("iothub-app-") {
                    p.add_application(app, value)
                        .map_err(|e| bad(format!("application property {app:?}: {e}")))?;
                }
            }
        }
    }
    Ok(p)
}

/// C2D: the body is the payload, the headers the properties
/// ([`message_properties`]).
async fn send_c2d(
    State(core): Shared,
    Path(d): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let id = identity(&d, None)?;
    let p = message_properties(&headers)?;
    core.send_c2d(id.device_id(), p, body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A message for a module's input, as an IoT Edge route would send it:
/// the body is the payload, the headers the properties
/// ([`message_properties`]).
async fn send_module_input(
    State(core): Shared,
    Path((d, m, input)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let id = identity(&d, Some(&m))?;
    let p = message_properties(&headers)?;
    core.send_module_input(&id, &input, p, body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------
// IoT Edge routes between modules

fn route_json(name: &str, route: &Route) -> Value {
    json!({"name": name, "route": route.to_string()})
}

/// `PUT /routes/{name}` with `{"route":"FROM … INTO …"}`.
async fn put_route(State(core): Shared, Path(name): Path<String>, body: Bytes) -> Reply {
    let body = parse_body(&body)?;
    let text = body["route"]
        .as_str()
        .ok_or_else(|| bad(r#"the body is {"route":"FROM … INTO …"}"#))?;
    let route = core.set_route(&name, text)?;
    ok_json(route_json(&name, &route))
}

async fn get_route(State(core): Shared, Path(name): Path<String>) -> Reply {
    let routes = core.routes();
    let (n, r) = routes
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no route {name:?}")))?;
    ok_json(route_json(n, r))
}

async fn delete_route(State(core): Shared, Path(name): Path<String>) -> Reply {
    core.remove_route(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_routes(State(core): Shared) -> Reply {
    ok_json(Value::Array(
        core.routes()
            .iter()
            .map(|(n, r)| route_json(n, r))
            .collect(),
    ))
}

fn events(core: &Core, id: &Identity, q: &HashMap<String, String>) -> Reply {
    core.get_identity(id)?;
    let force = q.get("base64").is_some_and(|v| v == "true" || v == "1");
    let st = core.lock();
    let list: Vec<Value> = st
        .telemetry
        .iter()
        .filter(|m| m.identity == *id)
        .map(|m| m.to_json(force))
        .collect();
    drop(st);
    ok_json(Value::Array(list))
}

async fn device_events(
    State(core): Shared,
    Path(d): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    events(&core, &identity(&d, None)?, &q)
}

async fn module_events(
    State(core): Shared,
    Path((d, m)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    events(&core, &identity(&d, Some(&m))?, &q)
}

/// `{"dropConnection":true, "failTwinOps":{"count":n,"status":429},
/// "refuseConnects":{"seconds":s,"returnCode":3}, "delayAnswersMs":ms}`;
/// any subset. Answers `{"dropped": bool}`.
async fn faults(core: &Core, id: Identity, body: &Bytes) -> Reply {
    let body = parse_body(body)?;
    core.get_identity(&id)?;
    let mut dropped = false;
    if let Some(f) = body.get("failTwinOps") {
        let n = int_or(&f["count"], "failTwinOps.count", 1)?;
        let status = int_or(&f["status"], "failTwinOps.status", 429)?;
        let n = u32::try_from(n).map_err(|_| bad("failTwinOps.count is too large"))?;
        let status =
            u16::try_from(status).map_err(|_| bad("failTwinOps.status is not a status"))?;
        core.fail_next_twin_ops(&id, n, status)?;
    }
    if let Some(f) = body.get("refuseConnects") {
        let secs = match &f["seconds"] {
            Value::Null => 10.0,
            v => v
                .as_f64()
                .ok_or_else(|| bad("refuseConnects.seconds must be a number"))?,
        };
        let code = int_or(&f["returnCode"], "refuseConnects.returnCode", 3)?;
        let code = u8::try_from(code)
            .ok()
            .and_then(ConnectReturnCode::from_u8)
            .filter(|c| !c.is_accepted())
            .ok_or_else(|| bad("refuseConnects.returnCode must be 1-5"))?;
        let d = Duration::try_from_secs_f64(secs).map_err(|_| bad("refuseConnects.seconds"))?;
        core.refuse_connects(&id, d, code)?;
    }
    if let Some(ms) = body.get("delayAnswersMs") {
        let ms = ms
            .as_u64()
            .ok_or_else(|| bad("delayAnswersMs must be an integer"))?;
        core.delay_answers(&id, Duration::from_millis(ms))?;
    }
    if body["dropConnection"].as_bool() == Some(true) {
        dropped = core.drop_connection(&id)?;
    }
    ok_json(json!({"dropped": dropped}))
}

async fn device_faults(State(core): Shared, Path(d): Path<String>, body: Bytes) -> Reply {
    faults(&core, identity(&d, None)?, &body).await
}

async fn module_faults(
    State(core): Shared,
    Path((d, m)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    faults(&core, identity(&d, Some(&m))?, &body).await
}

// ---------------------------------------------------------------------------
// DPS enrollments, shaped like the DPS service API

/// The DPS service's JSON for an enrollment.
fn enrollment_json(e: &EnrollmentInfo) -> Value {
    let attestation = match &e.attestation {
        EnrollmentAttestation::SymmetricKey { .. } => json!({
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": e.primary_key(), "secondaryKey": e.secondary_key()},
        }),
        EnrollmentAttestation::X509 {
            primary_thumbprint,
            secondary_thumbprint,
        } => {
            let cert =
                |t: &Option<String>| t.as_ref().map(|t| json!({"info": {"sha256Thumbprint": t}}));
            json!({
                "type": "x509",
                "x509": {"clientCertificates": {
                    "primary": cert(&Some(primary_thumbprint.clone())),
                    "secondary": cert(secondary_thumbprint),
                }},
            })
        }
        EnrollmentAttestation::X509Ca { ca_pem } => {
            let thumb = crate::x509ca::ca_certificate(ca_pem)
                .ok()
                .map(|der| thumbprint(&der));
            json!({
                "type": "x509",
                "x509": {"signingCertificates": {
                    "primary": {"certificate": ca_pem, "info": {"sha256Thumbprint": thumb}},
                }},
            })
        }
    };
    let mut v = json!({
        "attestation": attestation,
        "iotHubHostName": e.iot_hub_host_name,
        "provisioningStatus": if e.enabled { "enabled" } else { "disabled" },
        "initialTwin": e.initial_twin,
        "idScope": e.id_scope,
        "etag": "AAAAAAAAAAE=",
    });
    match e.kind {
        EnrollmentKind::Individual => {
            v["registrationId"] = e.id.clone().into();
            v["deviceId"] = e.device_id.clone().unwrap_or_else(|| e.id.clone()).into();
        }
        EnrollmentKind::Group => v["enrollmentGroupId"] = e.id.clone().into(),
    }
    v
}

/// A client certificate of an `x509` attestation: its `info.sha256Thumbprint`,
/// or the thumbprint of its `certificate` (PEM, or base64 of PEM or DER).
fn certificate_thumbprint(c: &Value) -> Result<Option<String>, ApiError> {
    if c.is_null() {
        return Ok(None);
    }
    if let Some(t) = c["info"]["sha256Thumbprint"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(t.to_ascii_lowercase()));
    }
    let text = c["certificate"]
        .as_str()
        .ok_or_else(|| bad("a client certificate needs certificate or info.sha256Thumbprint"))?;
    let from_pem = |pem: &[u8]| CertificateDer::from_pem_slice(pem).ok();
    let der = from_pem(text.as_bytes())
        .map(|c| c.to_vec())
        .or_else(|| {
            let raw = STANDARD.decode(text.trim()).ok()?;
            Some(from_pem(&raw).map_or(raw, |c| c.to_vec()))
        })
        .ok_or_else(|| bad("certificate is neither PEM nor base64"))?;
    Ok(Some(thumbprint(&der)))
}

/// Reads an enrollment PUT body into a spec.
fn enrollment_spec(core: &Core, body: &Value) -> Result<EnrollmentSpec, ApiError> {
    let mut spec = EnrollmentSpec::default();
    let a = &body["attestation"];
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match a["type"].as_str() {
        None if a.is_null() => {}
        Some("symmetricKey") => {
            let k = &a["symmetricKey"];
            let key = |v: &Value| -> Result<Option<_>, ApiError> {
                text(v)
                    .map(|s| key_from_base64(&s).map_err(ApiError::from))
                    .transpose()
            };
            match (key(&k["primaryKey"])?, key(&k["secondaryKey"])?) {
                (Some(p), s) => spec = spec.with_keys(p, s),
                (None, Some(_)) => return Err(bad("a secondaryKey needs a primaryKey")),
                (None, None) => {}
            }
        }
        Some("x509") if !a["x509"]["signingCertificates"].is_null() => {
            if !a["x509"]["clientCertificates"].is_null() {
                return Err(bad(
                    "x509: clientCertificates (individual) or signingCertificates (group), not both",
                ));
            }
            let ca = a["x509"]["signingCertificates"]["primary"]["certificate"]
                .as_str()
                .ok_or_else(|| bad("x509.signingCertificates.primary.certificate is required"))?;
            let der = crate::x509ca::ca_certificate(ca)?;
            spec = spec.with_x509_ca_pem(&crate::x509ca::pem(&der));
        }
        Some("x509") => {
            let certs = &a["x509"]["clientCertificates"];
            let primary = certificate_thumbprint(&certs["primary"])?
                .ok_or_else(|| bad("x509.clientCertificates.primary is required"))?;
            let secondary = certificate_thumbprint(&certs["secondary"])?;
            spec = spec.with_x509_thumbprints(&primary, secondary.as_deref());
        }
        other => {
            return Err(bad(format!(
                "attestation type {other:?}: symmetricKey or x509"
            )));
        }
    }
    if let Some(d) = text(&body["deviceId"]) {
        spec = spec.with_device_id(&d);
    }
    match body["provisioningStatus"].as_str() {
        None | Some("enabled") => {}
        Some("disabled") => spec = spec.with_enabled(false),
        Some(other) => return Err(bad(format!("provisioningStatus {other:?}"))),
    }
    let twin = &body["initialTwin"];
    if !twin.is_null() {
        if !twin.is_object() {
            return Err(bad("initialTwin is a JSON object"));
        }
        spec = spec.with_initial_twin(twin.clone());
    }
    if let Some(h) = body["iotHubHostName"].as_str() {
        let hub = core.lock().hub.host_name().to_owned();
        if !h.is_empty() && !h.eq_ignore_ascii_case(&hub) {
            return Err(bad(format!(
                "iotHubHostName {h:?}: this emulator assigns to its own hub, {hub:?}"
            )));
        }
    }
    Ok(spec)
}

async fn put_enrollment_of(core: &Core, kind: EnrollmentKind, id: &str, body: &Bytes) -> Reply {
    let body = parse_body(body)?;
    let field = match kind {
        EnrollmentKind::Individual => "registrationId",
        EnrollmentKind::Group => "enrollmentGroupId",
    };
    if let Some(given) = body[field].as_str() {
        if given != id {
            return Err(bad(format!("{field} {given:?} does not match the path")));
        }
    }
    let spec = enrollment_spec(core, &body)?;
    ok_json(enrollment_json(&core.put_enrollment(kind, id, spec)?))
}

async fn put_enrollment(State(core): Shared, Path(id): Path<String>, body: Bytes) -> Reply {
    put_enrollment_of(&core, EnrollmentKind::Individual, &id, &body).await
}

async fn put_enrollment_group(State(core): Shared, Path(id): Path<String>, body: Bytes) -> Reply {
    put_enrollment_of(&core, EnrollmentKind::Group, &id, &body).await
}

async fn get_enrollment(State(core): Shared, Path(id): Path<String>) -> Reply {
    ok_json(enrollment_json(
        &core.get_enrollment(EnrollmentKind::Individual, &id)?,
    ))
}

async fn get_enrollment_group(State(core): Shared, Path(id): Path<String>) -> Reply {
    ok_json(enrollment_json(
        &core.get_enrollment(EnrollmentKind::Group, &id)?,
    ))
}

async fn delete_enrollment(State(core): Shared, Path(id): Path<String>) -> Reply {
    core.delete_enrollment(EnrollmentKind::Individual, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_enrollment_group(State(core): Shared, Path(id): Path<String>) -> Reply {
    core.delete_enrollment(EnrollmentKind::Group, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_enrollments(State(core): Shared) -> Reply {
    ok_json(Value::Array(
        core.list_enrollments(EnrollmentKind::Individual)
            .iter()
            .map(enrollment_json)
            .collect(),
    ))
}

async fn list_enrollment_groups(State(core): Shared) -> Reply {
    ok_json(Value::Array(
        core.list_enrollments(EnrollmentKind::Group)
            .iter()
            .map(enrollment_json)
            .collect(),
    ))
}

fn registration_json(r: &DpsRegistration) -> Value {
    json!({
        "registrationId": r.registration_id,
        "deviceId": r.device_id,
        "assignedHub": r.assigned_hub,
        "status": "assigned",
        "substatus": r.substatus,
        "operationId": r.operation_id,
        "enrollmentGroupId": r.enrollment_group_id,
        "payload": r.request_payload,
    })
}

async fn get_registration(State(core): Shared, Path(id): Path<String>) -> Reply {
    let r = core
        .dps_registration(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("{id} has not registered")))?;
    ok_json(registration_json(&r))
}

/// `POST /dps/faults`: any subset of `{"throttle":{"count":n,"retryAfter":s},
/// "failRequests":{"count":n,"status":500}, "refuseConnects":{"count":n,
/// "returnCode":3}, "delayAssignmentPolls":n, "silence":bool,
/// "dropConnections":true | "{registrationId}"}`. Unknown members are
/// refused. Answers `{"dropped": n}`.
async fn dps_faults(State(core): Shared, body: Bytes) -> Reply {
    let body = parse_body(&body)?;
    let Some(f) = body.as_object() else {
        return Err(bad("the body is a JSON object of faults"));
    };
    const KNOWN: [&str; 6] = [
        "throttle",
        "failRequests",
        "refuseConnects",
        "delayAssignmentPolls",
        "silence",
        "dropConnections",
    ];
    if let Some(k) = f.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!("unknown fault {k:?}: one of {KNOWN:?}")));
    }
    let count = |v: &Value, what: &str| -> Result<u32, ApiError> {
        match &v["count"] {
            Value::Null => Ok(1),
            c => c
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| bad(format!("{what}.count must be an integer"))),
        }
    };
    // Read everything first, so that a bad member applies nothing.
    let throttle = f
        .get("throttle")
        .map(|t| -> Result<_, ApiError> {
            let retry = match &t["retryAfter"] {
                Value::Null => None,
                r => Some(
                    r.as_u64()
                        .and_then(|r| u32::try_from(r).ok())
                        .ok_or_else(|| bad("throttle.retryAfter must be an integer"))?,
                ),
            };
            Ok((count(t, "throttle")?, retry))
        })
        .transpose()?;
    let fail = f
        .get("failRequests")
        .map(|t| -> Result<_, ApiError> {
            let status = t["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (400..=599).contains(s))
                .ok_or_else(|| bad("failRequests.status must be 400 to 599"))?;
            Ok((count(t, "failRequests")?, status))
        })
        .transpose()?;
    let refuse = f
        .get("refuseConnects")
        .map(|t| -> Result<_, ApiError> {
            let code = int_or(&t["returnCode"], "refuseConnects.returnCode", 3)?;
            let code = u8::try_from(code)
                .ok()
                .and_then(ConnectReturnCode::from_u8)
                .filter(|c| !c.is_accepted())
                .ok_or_else(|| bad("refuseConnects.returnCode must be 1-5"))?;
            Ok((count(t, "refuseConnects")?, code))
        })
        .transpose()?;
    let delay = f
        .get("delayAssignmentPolls")
        .map(|d| {
            d.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| bad("delayAssignmentPolls must be an integer"))
        })
        .transpose()?;
    let silence = f
        .get("silence")
        .map(|s| {
            s.as_bool()
                .ok_or_else(|| bad("silence must be true or false"))
        })
        .transpose()?;
    let drop_which = match f.get("dropConnections") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(None),
        Some(Value::String(r)) => Some(Some(r.clone())),
        Some(_) => return Err(bad("dropConnections is true or a registration id")),
    };
    if let Some((n, retry)) = throttle {
        core.dps_throttle_next(n, retry);
    }
    if let Some((n, status)) = fail {
        core.dps_fail_next_requests(n, status)?;
    }
    if let Some((n, code)) = refuse {
        core.dps_refuse_connects(n, code);
    }
    if let Some(polls) = delay {
        core.dps_delay_assignments(polls);
    }
    if let Some(silent) = silence {
        core.dps_silence(silent);
    }
    let dropped = drop_which.map_or(0, |r| core.dps_drop_connections(r.as_deref()));
    ok_json(json!({"dropped": dropped}))
}

/// The router of the service API.
pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/devices", get(list_devices))
        .route(
            "/devices/{id}",
            put(put_device).get(get_device).delete(delete_device),
        )
        .route("/devices/{id}/modules", get(list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            put(put_module).get(get_module).delete(delete_module),
        )
        .route("/twins/{id}", get(get_twin).patch(patch_device_twin))
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_module_twin).patch(patch_module_twin),
        )
        .route("/twins/{id}/methods", post(invoke_device))
        .route("/twins/{id}/modules/{mid}/methods", post(invoke_module))
        .route("/devices/{id}/messages/deviceBound", post(send_c2d))
        .route(
            "/devices/{id}/modules/{mid}/messages/inputs/{input}",
            post(send_module_input),
        )
        .route("/routes", get(list_routes))
        .route(
            "/routes/{name}",
            put(put_route).get(get_route).delete(delete_route),
        )
        .route("/devices/{id}/messages/events", get(device_events))
        .route(
            "/devices/{id}/modules/{mid}/messages/events",
            get(module_events),
        )
        .route("/devices/{id}/faults", post(device_faults))
        .route("/devices/{id}/modules/{mid}/faults", post(module_faults))
        .route("/enrollments", get(list_enrollments))
        .route(
            "/enrollments/{id}",
            put(put_enrollment)
                .get(get_enrollment)
                .delete(delete_enrollment),
        )
        .route("/enrollmentGroups", get(list_enrollment_groups))
        .route(
            "/enrollmentGroups/{id}",
            put(put_enrollment_group)
                .get(get_enrollment_group)
                .delete(delete_enrollment_group),
        )
        .route("/registrations/{id}", get(get_registration))
        .route("/dps/faults", post(dps_faults))
        .with_state(core)
}

/// Serves the API until `stop` changes.
pub(crate) async fn serve(core: Arc<Core>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = router(core);
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("HTTP server failed: {e}");
    }
}
