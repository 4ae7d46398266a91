//! The driver future of a client: `iothub-net`'s [`rt::Driver`] (the
//! one async driver loop, shared with `iothub-tokio`) on `async-io`,
//! publishing its status to a [`StatusWatch`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use iothub_net::handle::Inbox;
use iothub_net::rt;
use iothub_net::watch::StatusWatch;
use iothub_net::{ClientOptions, Error};

use crate::rt::AsyncIo;

/// The driver of one client: a future to spawn on any executor (smol,
/// async-std, …). It ends when the client has stopped.
#[must_use = "the client does nothing until its driver is spawned"]
pub struct Driver {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.future.as_mut().poll(cx)
    }
}

impl Driver {
    pub(crate) fn new(
        options: ClientOptions,
        inbox: Inbox,
    ) -> Result<(Driver, Arc<StatusWatch>), Error> {
        let driver = rt::Driver::<AsyncIo>::new(options, inbox)?;
        let status = Arc::new(StatusWatch::new(driver.status()));
        let publish = status.clone();
        let future = Box::pin(driver.run(move |s| publish.set(s)));
        Ok((Driver { future }, status))
    }
}
