//! What a user sees when a typed reference is used wrongly: compile errors, not silent
//! timeouts. The expected messages are in `tests/ui/*.stderr`.

#[test]
fn typed_references_refuse_what_their_actor_does_not_handle() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
