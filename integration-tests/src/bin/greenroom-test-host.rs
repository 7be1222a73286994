//! The host (and admin) binary of the integration tests: every test actor type, linked in.

fn main() {
    greenroom_host::serve(greenroom_integration_tests::registry())
}
