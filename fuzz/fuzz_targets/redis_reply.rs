//! Arbitrary bytes read as a RESP reply, through every decoder of the Redis
//! store's script replies: a damaged or hostile server's answer is a value
//! or a corrupt-store error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sessionkit::fuzzing::redis_reply(data);
});
