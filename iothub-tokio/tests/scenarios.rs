//! The client scenarios every adapter runs (`iothub_testkit::scenarios`),
//! on a tokio runtime, the driver a task of it.

iothub_testkit::scenarios!(iothub_tokio::Client, iothub_testkit::scenarios::run_tokio);
iothub_testkit::scenarios!(@async iothub_tokio::Tokio, iothub_testkit::scenarios::run_tokio);
