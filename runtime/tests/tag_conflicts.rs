//! A program whose `message_tag!` declarations conflict refuses to tag any message: the
//! first lookup panics, naming both sides of each conflict and where they were declared.
//! (A test binary of its own: the declarations are the whole program's.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use greenroom::{AnyMessage, Message};

mod shop {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Order;
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Twice;
}

mod billing {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Invoice;
}

greenroom::message_tag!(shop::Order = "shop.Document");
greenroom::message_tag!(billing::Invoice = "shop.Document");
greenroom::message_tag!(shop::Twice = "shop.Twice/v1");
greenroom::message_tag!(shop::Twice = "shop.Twice/v2");
greenroom::message_tag!(greenroom::PoisonMessage = "shop.Poison");

fn panic_text(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("conflicting declarations must panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn conflicting_declarations_panic_at_first_use_naming_both_sides() {
    let text = panic_text(|| {
        let _ = AnyMessage::new(&shop::Order);
    });
    let order = std::any::type_name::<shop::Order>();
    let invoice = std::any::type_name::<billing::Invoice>();
    assert!(text.contains("tag `shop.Document` is declared for two types"), "{text}");
    assert!(
        text.contains(&format!("`{order}`")) && text.contains(&format!("`{invoice}`")),
        "{text}"
    );
    let twice = std::any::type_name::<shop::Twice>();
    assert!(text.contains(&format!("type `{twice}` is given two tags")), "{text}");
    assert!(
        text.contains("`shop.Twice/v1`") && text.contains("`shop.Twice/v2`"),
        "{text}"
    );
    assert!(
        text.contains("`greenroom.PoisonMessage` (at the Greenroom runtime) and `shop.Poison`"),
        "a runtime type keeps its tag: {text}"
    );
    assert_eq!(
        text.matches("tag_conflicts.rs:").count(),
        5,
        "both sites of each conflict but the runtime's: {text}"
    );
}

#[test]
fn every_later_lookup_and_the_startup_check_refuse_too() {
    // Not only the first: a failed gathering leaves nothing half set up.
    for _ in 0..2 {
        let text = panic_text(|| {
            let _ = u64::type_tag();
        });
        assert!(text.contains("conflicting message tag declarations"), "{text}");
    }
    let text = panic_text(greenroom::tag::check_tags);
    assert!(text.contains("shop.Document"), "{text}");
    // The runtime's own tags need no gathering and still answer.
    assert_eq!(greenroom::ActorExitRequest::type_tag(), "greenroom.ActorExitRequest");
}
