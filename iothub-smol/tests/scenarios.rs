//! The client scenarios every adapter runs (`iothub_testkit::scenarios`),
//! twice: under smol (`smol::block_on`, every driver a task of smol's
//! executor) and under async-std (`async_std::task::block_on`, every
//! driver an async-std task). The emulator runs on its own runtime in
//! background threads; the client never sees tokio.

mod under_smol {
    iothub_testkit::scenarios!(iothub_smol::Client, iothub_testkit::scenarios::run_smol);
    iothub_testkit::scenarios!(@async iothub_smol::AsyncIo, iothub_testkit::scenarios::run_smol);
}

mod under_async_std {
    iothub_testkit::scenarios!(
        iothub_smol::Client,
        iothub_testkit::scenarios::run_async_std
    );
    iothub_testkit::scenarios!(@async iothub_smol::AsyncIo, iothub_testkit::scenarios::run_async_std);
}

/// `build()` runs the driver on a thread of its own: no executor's task.
#[test]
fn the_driver_on_a_thread_of_its_own() {
    iothub_testkit::scenarios::run_block_on(iothub_testkit::scenarios::hub::every_api_over_tls::<
        iothub_smol::Client,
    >());
}
