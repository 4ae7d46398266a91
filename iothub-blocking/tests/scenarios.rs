//! The client scenarios every adapter runs (`iothub_testkit::scenarios`),
//! with the blocking client: the scenario's `block_on` waits out each
//! blocking call; the drivers run on threads of their own.

iothub_testkit::scenarios!(
    iothub_blocking::Client,
    iothub_testkit::scenarios::run_block_on
);
