//! IoT Edge routes between modules, as the edge hub (`edgeHub`) reads
//! them, in the one form the [`Hub`] applies:
//!
//! ```text
//! FROM /messages/modules/{module}/outputs/{output} INTO BrokeredEndpoint("/modules/{module2}/inputs/{input}")
//! FROM /messages/modules/{module}/outputs/*        INTO BrokeredEndpoint("/modules/{module2}/inputs/{input}")
//! FROM /messages/modules/{module}/outputs/{output} INTO $upstream
//! ```
//!
//! Keywords are case-insensitive, white space between the parts is free,
//! the endpoint path is in double quotes. A `WHERE` condition, another
//! source (`/messages/*`, `/twinChangeNotifications`) or another sink is a
//! [`RouteError`], not a silently different route.

use super::*;
use core::fmt;
use std::string::String;

use iothub_proto::auth::ModuleId;

/// The longest output or input name a route accepts.
pub const MAX_ENDPOINT_NAME: usize = 128;

/// Where a route sends the messages it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteSink {
    /// `BrokeredEndpoint("/modules/{module}/inputs/{input}")`: the input of
    /// a module of the same device.
    ModuleInput {
        /// The receiving module.
        module: ModuleId,
        /// Its input name.
        input: String,
    },
    /// `$upstream`: to the IoT hub, as telemetry of the sending module.
    Upstream,
}

/// One route: messages a module sends on an output (or on any output) go
/// to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The sending module.
    pub module: ModuleId,
    /// The output name; `None` for `outputs/*`, any output.
    pub output: Option<String>,
    /// Where the messages go.
    pub sink: RouteSink,
}

/// Why a route was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// The route does not start with `FROM`.
    MissingFrom,
    /// No `INTO` after the source.
    MissingInto,
    /// The source is not `/messages/modules/{module}/outputs/{output or *}`.
    UnsupportedSource(String),
    /// The sink is neither `BrokeredEndpoint("/modules/{m}/inputs/{i}")`
    /// nor `$upstream`.
    UnsupportedSink(String),
    /// A `WHERE` condition: not supported by this hub.
    ConditionUnsupported,
    /// A module id that is not a valid module id.
    InvalidModuleId(String),
    /// An output or input name that is empty, longer than
    /// [`MAX_ENDPOINT_NAME`], or holds `/`, `#`, `+`, `*`, `"`, white space
    /// or a control character.
    InvalidName(String),
    /// Something after the sink.
    TrailingText(String),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::MissingFrom => f.write_str("a route starts with FROM"),
            RouteError::MissingInto => f.write_str("a route needs INTO after its source"),
            RouteError::UnsupportedSource(s) => write!(
                f,
                "source {s:?}: only /messages/modules/{{module}}/outputs/{{output or *}} is supported"
            ),
            RouteError::UnsupportedSink(s) => write!(
                f,
                "sink {s:?}: only BrokeredEndpoint(\"/modules/{{module}}/inputs/{{input}}\") or $upstream is supported"
            ),
            RouteError::ConditionUnsupported => {
                f.write_str("WHERE conditions are not supported by this hub")
            }
            RouteError::InvalidModuleId(m) => write!(f, "{m:?} is not a valid module id"),
            RouteError::InvalidName(n) => write!(
                f,
                "{n:?} is not a valid output or input name (1 to {MAX_ENDPOINT_NAME} characters, none of / # + * \" or white space)"
            ),
            RouteError::TrailingText(t) => write!(f, "unexpected text after the sink: {t:?}"),
        }
    }
}

impl core::error::Error for RouteError {}

/// Splits off the first word (up to white space); `None` when empty.
fn first_word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn check_name(name: &str) -> Result<String, RouteError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_ENDPOINT_NAME
        && !name.chars().any(|c| {
            matches!(c, '/' | '#' | '+' | '*' | '"') || c.is_whitespace() || c.is_control()
        });
    if ok {
        Ok(String::from(name))
    } else {
        Err(RouteError::InvalidName(String::from(name)))
    }
}

fn module_id(m: &str) -> Result<ModuleId, RouteError> {
    ModuleId::new(m).map_err(|_| RouteError::InvalidModuleId(String::from(m)))
}

impl Route {
    /// Reads a route in one of the forms of the [module docs](self).
    ///
    /// ```
    /// use iothub_hub::routes::{Route, RouteSink};
    ///
    /// let r = Route::parse(r#"FROM /messages/modules/filter/outputs/* INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#)?;
    /// assert_eq!(r.module.as_str(), "filter");
    /// assert_eq!(r.output, None);
    /// assert!(matches!(r.sink, RouteSink::ModuleInput { ref input, .. } if input == "in1"));
    /// # Ok::<(), iothub_hub::routes::RouteError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Route, RouteError> {
        let (from, rest) = first_word(text).ok_or(RouteError::MissingFrom)?;
        if !from.eq_ignore_ascii_case("FROM") {
            return Err(RouteError::MissingFrom);
        }
        let (source, rest) = first_word(rest).ok_or(RouteError::MissingInto)?;
        let (module, output) = Self::parse_source(source)?;
        let (into, rest) = first_word(rest).ok_or(RouteError::MissingInto)?;
        if into.eq_ignore_ascii_case("WHERE") {
            return Err(RouteError::ConditionUnsupported);
        }
        if !into.eq_ignore_ascii_case("INTO") {
            return Err(RouteError::MissingInto);
        }
        let rest = rest.trim();
        let (sink, trailing) = Self::parse_sink(rest)?;
        let trailing = trailing.trim();
        if !trailing.is_empty() {
            return Err(RouteError::TrailingText(String::from(trailing)));
        }
        Ok(Route {
            module,
            output,
            sink,
        })
    }

    fn parse_source(source: &str) -> Result<(ModuleId, Option<String>), RouteError> {
        let unsupported = || RouteError::UnsupportedSource(String::from(source));
        let path = source
            .strip_prefix("/messages/modules/")
            .ok_or_else(unsupported)?;
        let mut parts = path.split('/');
        let (Some(m), Some(outputs), Some(o), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unsupported());
        };
        if outputs != "outputs" {
            return Err(unsupported());
        }
        let output = if o == "*" { None } else { Some(check_name(o)?) };
        Ok((module_id(m)?, output))
    }

    /// The sink and what follows it.
    fn parse_sink(rest: &str) -> Result<(RouteSink, &str), RouteError> {
        if let Some((word, after)) = first_word(rest) {
            if word.eq_ignore_ascii_case("$upstream") {
                return Ok((RouteSink::Upstream, after));
            }
        }
        let unsupported = || {
            let shown = rest.split_whitespace().next().unwrap_or(rest);
            RouteError::UnsupportedSink(String::from(shown))
        };
        let keyword = "BrokeredEndpoint";
        let head = rest.get(..keyword.len()).ok_or_else(unsupported)?;
        if !head.eq_ignore_ascii_case(keyword) {
            return Err(unsupported());
        }
        let args = rest[keyword.len()..].trim_start();
        let args = args.strip_prefix('(').ok_or_else(unsupported)?.trim_start();
        let args = args.strip_prefix('"').ok_or_else(unsupported)?;
        let (path, after) = args.split_once('"').ok_or_else(unsupported)?;
        let after = after
            .trim_start()
            .strip_prefix(')')
            .ok_or_else(unsupported)?;
        let bad_path = || RouteError::UnsupportedSink(String::from(path));
        let inner = path.strip_prefix("/modules/").ok_or_else(bad_path)?;
        let mut parts = inner.split('/');
        let (Some(m), Some(inputs), Some(i), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_path());
        };
        if inputs != "inputs" {
            return Err(bad_path());
        }
        let sink = RouteSink::ModuleInput {
            module: module_id(m)?,
            input: check_name(i)?,
        };
        Ok((sink, after))
    }

    /// Whether the route takes a message `module` sent on `output`.
    #[must_use]
    pub fn matches(&self, module: &ModuleId, output: &str) -> bool {
        self.module == *module && self.output.as_deref().is_none_or(|o| o == output)
    }
}

impl core::str::FromStr for Route {
    type Err = RouteError;
    fn from_str(s: &str) -> Result<Route, RouteError> {
        Route::parse(s)
    }
}

/// The canonical text of the route, which [`Route::parse`] reads back.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FROM /messages/modules/{}/outputs/{} INTO ",
            self.module,
            self.output.as_deref().unwrap_or("*")
        )?;
        match &self.sink {
            RouteSink::ModuleInput { module, input } => {
                write!(f, "BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
            }
            RouteSink::Upstream => f.write_str("$upstream"),
        }
    }
}

/// A routed message that could not be delivered to its input (the sending
/// module's PUBLISH was still acknowledged, as the edge hub does): see
/// [`Hub::take_route_failures`](super::Hub::take_route_failures).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteFailure {
    /// The name of the route.
    pub route: String,
    /// The module that sent the message.
    pub from: iothub_proto::auth::Identity,
    /// The module whose input it was for.
    pub to: iothub_proto::auth::Identity,
    /// Why it was not queued (unknown module, queue full, too large, …).
    pub error: super::HubError,
}

impl Hub {
    /// Adds or replaces the route called `name` (see [`routes`] for the
    /// forms). It applies to the modules of every device: a telemetry
    /// message that module `m` of device `D` sends with `$.on` = an output
    /// the route takes is queued, like [`send_module_input`](Self::send_module_input),
    /// for the route's input of the route's module of the same device `D`.
    /// The routed message keeps its properties, without `$.on`, and with
    /// `$.cdid` / `$.cmid` naming the sender. A message no route takes is
    /// stored as telemetry (as if the edge hub sent it `$upstream`); one
    /// that routes take is stored as telemetry only if one of them says
    /// `$upstream`. A message that cannot be queued (the module is not
    /// registered, its queue is full, it is over 64 KB) is journaled in
    /// [`take_route_failures`](Self::take_route_failures); the sender's
    /// PUBLISH is acknowledged either way. Returns the route it replaced.
    pub fn set_route(&mut self, name: &str, route: Route) -> Option<Route> {
        self.routes.insert(String::from(name), route)
    }

    /// Removes the route called `name`; returns it, if there was one.
    pub fn remove_route(&mut self, name: &str) -> Option<Route> {
        self.routes.remove(name)
    }

    /// The routes, by name.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Route)> + '_ {
        self.routes.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Takes the routed messages that could not be queued since the last
    /// call, in order.
    pub fn take_route_failures(&mut self) -> Vec<RouteFailure> {
        core::mem::take(&mut self.route_failures)
    }

    /// Applies the routes to a telemetry message of `identity`; whether it
    /// goes upstream (stored as telemetry): when no route takes it, or a
    /// route taking it says `$upstream`.
    pub(crate) fn route(
        &mut self,
        identity: &Identity,
        properties: &MessageProperties,
        payload: &Bytes,
    ) -> bool {
        let (Some(module), Some(output)) =
            (identity.module_id(), properties.output_name.as_deref())
        else {
            return true;
        };
        let taken: Vec<(String, RouteSink)> = self
            .routes
            .iter()
            .filter(|(_, r)| r.matches(module, output))
            .map(|(name, r)| (name.clone(), r.sink.clone()))
            .collect();
        if taken.is_empty() {
            return true;
        }
        let mut upstream = false;
        for (name, sink) in taken {
            let (to_module, input) = match sink {
                RouteSink::Upstream => {
                    upstream = true;
                    continue;
                }
                RouteSink::ModuleInput { module, input } => (module, input),
            };
            let mut routed = properties.clone();
            routed.output_name = None;
            routed.connection_device_id = Some(String::from(identity.device_id().as_str()));
            routed.connection_module_id = Some(String::from(module.as_str()));
            let device = identity.device_id().clone();
            let result =
                self.send_module_input(&device, &to_module, &input, routed, payload.clone());
            match result {
                Ok(()) => {
                    self.counters.messages_routed = self.counters.messages_routed.saturating_add(1);
                }
                Err(error) => {
                    self.counters.route_failures = self.counters.route_failures.saturating_add(1);
                    self.route_failures.push(RouteFailure {
                        route: name,
                        from: identity.clone(),
                        to: Identity::module(device, to_module),
                        error,
                    });
                }
            }
        }
        upstream
    }
}
