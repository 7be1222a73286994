//! The host binary of the CLI walk-through: it links the demo actor types and serves as
//! admin and host for `greenroom start --host-bin target/debug/demo_host --name demo`.
//! Run by hand, it says what it is and exits with status 2.

fn main() {
    greenroom_host::serve(greenroom_examples::demo::registry())
}
