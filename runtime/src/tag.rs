//! Message type tags: which string names a message type on the wire, and the declarations
//! ([`message_tag!`](crate::message_tag)) that give a type a stable one.
//!
//! By default a type's tag is its path ([`std::any::type_name`]), which is the same only in
//! binaries built from the same source: moving the type to another module, or building the
//! client and the host apart, changes it. A declared tag does not depend on the path.
//!
//! Every type is a message through a blanket impl, so a tag cannot be a trait method a type
//! overrides. Instead each `message_tag!` submits a record at link time (`inventory`); the
//! first lookup gathers them into one map, refusing conflicts. The runtime's own message
//! types have fixed tags (`greenroom.*`) matched by `TypeId` comparisons that the compiler
//! folds away, so a program that declares nothing pays one atomic load per lookup over the
//! plain `type_name`, and a program that declares tags one hash lookup.

use std::{
    any::{type_name, TypeId},
    sync::OnceLock,
};

use rustc_hash::FxHashMap;

use crate::{
    message::{
        ActorExitRequest, ActorSystemConventionUpdate, ChildActorExited, ChildRestarted, DeadEnvelope, PoisonMessage,
        Unanswered, WakeupMessage,
    },
    troupe::{
        ConfigureTroupe, ReapIdle, TroupeDone, TroupeReport, TroupeStatus, TroupeWork, TroupeWorkInProgress,
        UpdateTroupeSettings,
    },
};

/// Declares the stable wire tag of one or more message types, so that binaries built apart
/// (a client and a host, or two versions of one program) agree on them whatever the types'
/// module paths.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use greenroom::{AnyMessage, Message};
///
/// mod my_app {
///     #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
///     pub struct Greeting { pub text: String }
///     #[derive(serde::Serialize, serde::Deserialize)]
///     pub struct Farewell;
/// }
///
/// greenroom::message_tag!(my_app::Greeting = "my_app.Greeting/v1");
///
/// let msg = AnyMessage::new(&my_app::Greeting { text: "hi".into() })?;
/// assert_eq!(msg.tag(), "my_app.Greeting/v1");
/// assert_eq!(my_app::Greeting::type_tag(), "my_app.Greeting/v1");
/// assert_eq!(msg.downcast::<my_app::Greeting>(), Some(my_app::Greeting { text: "hi".into() }));
/// // A type without a declaration keeps its path.
/// assert!(my_app::Farewell::type_tag().ends_with("my_app::Farewell"));
/// # Ok::<(), greenroom::Error>(())
/// ```
///
/// Several at once: `message_tag!(a::Ping = "app.Ping", a::Pong = "app.Pong");`. A generic
/// type is declared per instantiation (`Wrapper<u32> = "app.Wrapper.u32"`).
///
/// Declare each tag once, next to the type, in a crate both sides link: the declaration is
/// what makes the tag, so a binary without it sends and expects the path. Rules, checked at
/// compile time: a tag has 1 to 128 bytes of ASCII letters, digits and `. _ - /`, with at
/// least one `.`, and does not begin with `greenroom.` (the runtime's own). A tag therefore
/// never equals a type's path (which has `::`) or a primitive's name (which has no `.`).
/// Rules checked at the first lookup (or at startup, in [`check_tags`]): one tag names one
/// type, and a type has one tag; a conflict is a programming error and panics, naming both
/// types (or both tags) and where each was declared.
///
/// A path is not a tag, and neither is a type that is not a message:
///
/// ```compile_fail
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Greeting;
/// greenroom::message_tag!(Greeting = "my_app::Greeting");
/// ```
///
/// ```compile_fail
/// struct NotSerde;
/// greenroom::message_tag!(NotSerde = "my_app.NotSerde");
/// ```
#[macro_export]
macro_rules! message_tag {
    ($($ty:ty = $tag:expr),+ $(,)?) => {
        $(
            const _: () = {
                fn must_be_a_message<M: $crate::Message>() {}
                let _ = must_be_a_message::<$ty>;
                $crate::tag::check_declared_tag($tag);
            };
            $crate::__private::inventory::submit! {
                $crate::tag::Declaration::new(
                    ::std::any::TypeId::of::<$ty>,
                    ::std::any::type_name::<$ty>,
                    $tag,
                    ::std::concat!(::std::file!(), ":", ::std::line!()),
                )
            }
        )+
    };
}

/// The runtime's own message types and their tags, fixed so that two builds of Greenroom
/// agree on them whatever the modules they live in.
macro_rules! builtin_tags {
    ($($ty:ty => $tag:literal,)+) => {
        /// The tag of one of the runtime's own message types. Each comparison is of two
        /// constants once `T` is known, so this compiles to a constant.
        #[inline(always)]
        fn builtin<T: ?Sized + 'static>() -> Option<&'static str> {
            let id = TypeId::of::<T>();
            $(
                if id == TypeId::of::<$ty>() {
                    return Some($tag);
                }
            )+
            None
        }

        /// The builtin tags as entries, for the conflict check.
        fn builtin_entries() -> Vec<Entry> {
            vec![$(Entry {
                type_id: TypeId::of::<$ty>(),
                type_name: type_name::<$ty>(),
                tag: $tag,
                site: "the Greenroom runtime",
            },)+]
        }
    };
}

builtin_tags! {
    ActorExitRequest => "greenroom.ActorExitRequest",
    ChildActorExited => "greenroom.ChildActorExited",
    ChildRestarted => "greenroom.ChildRestarted",
    DeadEnvelope => "greenroom.DeadEnvelope",
    WakeupMessage => "greenroom.WakeupMessage",
    PoisonMessage => "greenroom.PoisonMessage",
    Unanswered => "greenroom.Unanswered",
    ActorSystemConventionUpdate => "greenroom.ActorSystemConventionUpdate",
    TroupeStatus => "greenroom.TroupeStatus",
    UpdateTroupeSettings => "greenroom.UpdateTroupeSettings",
    TroupeReport => "greenroom.TroupeReport",
    TroupeWork => "greenroom.TroupeWork",
    TroupeDone => "greenroom.TroupeDone",
    TroupeWorkInProgress => "greenroom.TroupeWorkInProgress",
    ConfigureTroupe => "greenroom.ConfigureTroupe",
    ReapIdle => "greenroom.TroupeReapIdle",
}

/// The wire tag of `T`: the runtime's fixed tag for its own types, the tag declared with
/// [`message_tag!`](crate::message_tag), or else `T`'s path.
///
/// ```
/// assert_eq!(greenroom::tag::of::<greenroom::ActorExitRequest>(), "greenroom.ActorExitRequest");
/// assert_eq!(greenroom::tag::of::<u64>(), "u64");
/// ```
///
/// # Panics
/// If the program's declarations conflict (see [`check_tags`]).
#[inline]
pub fn of<T: ?Sized + 'static>() -> &'static str {
    if let Some(tag) = builtin::<T>() {
        return tag;
    }
    match declared() {
        None => type_name::<T>(),
        Some(map) => map.get(&TypeId::of::<T>()).copied().unwrap_or_else(type_name::<T>),
    }
}

/// Whether `tag` is `T`'s wire tag: `tag == of::<T>()`, written so that a program without
/// declarations compares against `T`'s path as a constant (which the compiler inlines)
/// rather than against a string it fetched.
///
/// ```
/// assert!(greenroom::tag::matches::<u64>("u64"));
/// assert!(!greenroom::tag::matches::<u64>("u32"));
/// ```
///
/// # Panics
/// If the program's declarations conflict (see [`check_tags`]).
#[inline]
pub fn matches<T: ?Sized + 'static>(tag: &str) -> bool {
    if let Some(builtin) = builtin::<T>() {
        return tag == builtin;
    }
    match declared() {
        None => tag == type_name::<T>(),
        Some(map) => tag == map.get(&TypeId::of::<T>()).copied().unwrap_or_else(type_name::<T>),
    }
}

/// Gathers the program's tag declarations now, and panics if they conflict: two types
/// declared with one tag, a type declared with two tags, or a tag given to a runtime type.
///
/// The first tag lookup does the same, so this only moves the failure to a known place:
/// `greenroom_host::init` and `serve` call it, so a build with conflicting declarations
/// fails at startup in every role (client, admin, host) rather than on its first message.
pub fn check_tags() {
    declared();
}

/// Every declaration with its site, for diagnostics: `(type path, tag, file:line)`.
pub fn declarations() -> Vec<(&'static str, &'static str, &'static str)> {
    inventory::iter::<Declaration>
        .into_iter()
        .map(|d| ((d.type_name)(), d.tag, d.site))
        .collect()
}

/// The declared tags by type, or `None` when the program declares none (the common case,
/// which then costs one atomic load).
#[inline]
fn declared() -> Option<&'static FxHashMap<TypeId, &'static str>> {
    static DECLARED: OnceLock<Option<FxHashMap<TypeId, &'static str>>> = OnceLock::new();
    DECLARED.get_or_init(gather).as_ref()
}

#[cold]
fn gather() -> Option<FxHashMap<TypeId, &'static str>> {
    let declared = inventory::iter::<Declaration>.into_iter().map(|d| Entry {
        type_id: (d.type_id)(),
        type_name: (d.type_name)(),
        tag: d.tag,
        site: d.site,
    });
    match index(builtin_entries(), declared) {
        Ok(map) if map.is_empty() => None,
        Ok(map) => Some(map),
        // A build that names one thing two ways cannot send messages correctly: which
        // meaning would win is arbitrary, and a message read as the wrong type is worse
        // than a program that refuses to start.
        Err(conflicts) => panic!(
            "conflicting message tag declarations (greenroom::message_tag!; one tag names one type, \
             and a type has one tag):\n  {}",
            conflicts.join("\n  ")
        ),
    }
}

/// One tag given to one type, and where.
#[derive(Clone, Copy, Debug)]
struct Entry {
    type_id: TypeId,
    type_name: &'static str,
    tag: &'static str,
    site: &'static str,
}

/// The declared tags by type, checked against each other and against the runtime's own
/// (`builtin`, which stay out of the map: [`of`] answers them first). Every conflict is
/// reported, not just the first.
fn index(
    builtin: Vec<Entry>,
    declared: impl Iterator<Item = Entry>,
) -> Result<FxHashMap<TypeId, &'static str>, Vec<String>> {
    let mut by_type: FxHashMap<TypeId, Entry> = FxHashMap::default();
    let mut by_tag: FxHashMap<&'static str, Entry> = FxHashMap::default();
    for e in &builtin {
        by_type.insert(e.type_id, *e);
        by_tag.insert(e.tag, *e);
    }
    let mut map = FxHashMap::default();
    let mut conflicts = Vec::new();
    for e in declared {
        if let Some(had) = by_type.get(&e.type_id) {
            if had.tag != e.tag {
                conflicts.push(format!(
                    "type `{}` is given two tags: `{}` (at {}) and `{}` (at {})",
                    e.type_name, had.tag, had.site, e.tag, e.site
                ));
            }
            // The same declaration twice (say, in two crates) is harmless.
            continue;
        }
        if let Some(had) = by_tag.get(e.tag) {
            conflicts.push(format!(
                "tag `{}` is declared for two types: `{}` (at {}) and `{}` (at {})",
                e.tag, had.type_name, had.site, e.type_name, e.site
            ));
            continue;
        }
        by_type.insert(e.type_id, e);
        by_tag.insert(e.tag, e);
        map.insert(e.type_id, e.tag);
    }
    if conflicts.is_empty() {
        Ok(map)
    } else {
        Err(conflicts)
    }
}

/// One [`message_tag!`](crate::message_tag) declaration, gathered at link time. Built only
/// by the macro.
#[doc(hidden)]
pub struct Declaration {
    type_id: fn() -> TypeId,
    type_name: fn() -> &'static str,
    tag: &'static str,
    site: &'static str,
}

impl Declaration {
    #[doc(hidden)]
    pub const fn new(
        type_id: fn() -> TypeId,
        type_name: fn() -> &'static str,
        tag: &'static str,
        site: &'static str,
    ) -> Self {
        Declaration {
            type_id,
            type_name,
            tag,
            site,
        }
    }
}

inventory::collect!(Declaration);

/// The longest tag, in bytes: a tag travels with every message.
pub const MAX_TAG_LEN: usize = 128;

/// Refuses, at compile time, a tag that could be confused with a type's path or with the
/// runtime's own tags (see [`message_tag!`](crate::message_tag)).
#[doc(hidden)]
pub const fn check_declared_tag(tag: &str) {
    let b = tag.as_bytes();
    if b.is_empty() || b.len() > MAX_TAG_LEN {
        panic!("a message tag has 1 to 128 bytes");
    }
    let mut dot = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'/' => {}
            b'.' => dot = true,
            _ => panic!(
                "a message tag has only ASCII letters, digits and `. _ - /` (never `::`, so it cannot equal a type's path)"
            ),
        }
        i += 1;
    }
    if !dot {
        panic!("a message tag has at least one `.` (e.g. \"my_app.Greeting\"), so it cannot equal a primitive's name");
    }
    let reserved = b"greenroom.";
    if b.len() >= reserved.len() {
        let mut i = 0;
        let mut same = true;
        while i < reserved.len() {
            if b[i] != reserved[i] {
                same = false;
            }
            i += 1;
        }
        if same {
            panic!("message tags beginning with `greenroom.` are the runtime's own");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::{message::is_system_tag, AnyMessage, Message};

    mod v1 {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct Greeting {
            pub text: String,
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Undeclared {
        text: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Wrapper<T>(T);

    crate::message_tag!(v1::Greeting = "test.Greeting/v1", Wrapper<u32> = "test.Wrapper.u32",);

    #[test]
    fn a_declared_tag_is_sent_and_matched() {
        let hi = v1::Greeting { text: "hi".into() };
        let msg = AnyMessage::new(&hi).unwrap();
        assert_eq!(msg.tag(), "test.Greeting/v1");
        assert_eq!(v1::Greeting::type_tag(), "test.Greeting/v1");
        assert!(msg.is::<v1::Greeting>());
        assert!(!msg.is::<Undeclared>(), "same shape, other tag");
        assert_eq!(msg.downcast::<v1::Greeting>(), Some(hi));
        assert_eq!(msg.downcast::<Undeclared>(), None);
    }

    #[test]
    fn a_declared_tag_is_what_a_receiver_matches_not_the_path() {
        // What a peer that declares the same tag sends: recognised whatever its path.
        let bytes = postcard::to_allocvec(&v1::Greeting { text: "peer".into() }).unwrap();
        let from_peer = AnyMessage::from_payload(greenroom_protocol::Payload {
            tag: "test.Greeting/v1".into(),
            bytes: bytes.clone(),
        });
        assert_eq!(from_peer.downcast::<v1::Greeting>().unwrap().text, "peer");
        // What a peer without the declaration sends (the path) is another type here.
        let by_path = AnyMessage::from_payload(greenroom_protocol::Payload {
            tag: std::any::type_name::<v1::Greeting>().into(),
            bytes,
        });
        assert!(!by_path.is::<v1::Greeting>());
        assert_eq!(by_path.try_downcast::<v1::Greeting>().unwrap(), None);
    }

    #[test]
    fn undeclared_types_keep_their_path() {
        assert_eq!(Undeclared::type_tag(), std::any::type_name::<Undeclared>());
        assert_eq!(String::type_tag(), "alloc::string::String");
        assert_eq!(<(u8, u64)>::type_tag(), "(u8, u64)");
        // A generic type's declaration covers only the instantiation declared.
        assert_eq!(Wrapper::<u32>::type_tag(), "test.Wrapper.u32");
        assert_eq!(Wrapper::<u64>::type_tag(), std::any::type_name::<Wrapper<u64>>());
        let msg = AnyMessage::new(&Undeclared { text: "x".into() }).unwrap();
        assert!(msg.tag().ends_with("tag::tests::Undeclared"), "{}", msg.tag());
        assert!(msg.is::<Undeclared>());
    }

    #[test]
    fn runtime_types_have_fixed_tags_and_system_tags_still_work() {
        for (tag, expected) in [
            (crate::ActorExitRequest::type_tag(), "greenroom.ActorExitRequest"),
            (crate::ChildActorExited::type_tag(), "greenroom.ChildActorExited"),
            (crate::ChildRestarted::type_tag(), "greenroom.ChildRestarted"),
            (crate::DeadEnvelope::type_tag(), "greenroom.DeadEnvelope"),
            (crate::PoisonMessage::type_tag(), "greenroom.PoisonMessage"),
            (crate::WakeupMessage::type_tag(), "greenroom.WakeupMessage"),
            (crate::TroupeStatus::type_tag(), "greenroom.TroupeStatus"),
            (ReapIdle::type_tag(), "greenroom.TroupeReapIdle"),
        ] {
            assert_eq!(tag, expected);
        }
        let exit = AnyMessage::new(&crate::ActorExitRequest).unwrap();
        assert_eq!(exit.tag(), "greenroom.ActorExitRequest");
        assert!(exit.is::<crate::ActorExitRequest>());
        assert!(is_system_tag(exit.tag()));
        assert!(!is_system_tag(std::any::type_name::<crate::ActorExitRequest>()));
        assert!(!is_system_tag("test.Greeting/v1"));
        // Each fixed tag obeys the rules a declared one does, bar the reserved prefix, and
        // names one type.
        let entries = builtin_entries();
        let tags: std::collections::BTreeSet<_> = entries.iter().map(|e| e.tag).collect();
        assert_eq!(tags.len(), entries.len());
        for e in &entries {
            let rest = e.tag.strip_prefix("greenroom.").unwrap();
            check_declared_tag(&format!("x.{rest}"));
            assert_eq!(of_entry(e), e.tag);
        }
    }

    /// What [`of`] answers for a builtin entry, through its `TypeId`.
    fn of_entry(e: &Entry) -> &'static str {
        macro_rules! find {
            ($($ty:ty),+) => {{ $(if e.type_id == TypeId::of::<$ty>() { return of::<$ty>(); })+ unreachable!() }};
        }
        find!(
            ActorExitRequest,
            ChildActorExited,
            ChildRestarted,
            DeadEnvelope,
            WakeupMessage,
            PoisonMessage,
            Unanswered,
            ActorSystemConventionUpdate,
            TroupeStatus,
            UpdateTroupeSettings,
            TroupeReport,
            TroupeWork,
            TroupeDone,
            TroupeWorkInProgress,
            ConfigureTroupe,
            ReapIdle
        )
    }

    #[test]
    fn this_programs_declarations_are_gathered_without_conflict() {
        check_tags();
        let declared = declarations();
        assert_eq!(declared.len(), 2, "{declared:?}");
        let (path, _, site) = declared.iter().find(|d| d.1 == "test.Greeting/v1").unwrap();
        assert_eq!(*path, type_name::<v1::Greeting>());
        assert!(site.contains("tag.rs:"), "the site of the macro call: {site}");
    }

    fn entry<T: 'static>(tag: &'static str, site: &'static str) -> Entry {
        Entry {
            type_id: TypeId::of::<T>(),
            type_name: type_name::<T>(),
            tag,
            site,
        }
    }

    #[test]
    fn two_types_with_one_tag_are_refused_naming_both() {
        let conflicts = index(
            builtin_entries(),
            [entry::<u8>("app.X", "a.rs:1"), entry::<u16>("app.X", "b.rs:2")].into_iter(),
        )
        .unwrap_err();
        assert_eq!(
            conflicts,
            ["tag `app.X` is declared for two types: `u8` (at a.rs:1) and `u16` (at b.rs:2)"]
        );
    }

    #[test]
    fn one_type_with_two_tags_is_refused_naming_both() {
        let conflicts = index(
            Vec::new(),
            [entry::<u8>("app.X", "a.rs:1"), entry::<u8>("app.Y", "b.rs:2")].into_iter(),
        )
        .unwrap_err();
        assert_eq!(
            conflicts,
            ["type `u8` is given two tags: `app.X` (at a.rs:1) and `app.Y` (at b.rs:2)"]
        );
    }

    #[test]
    fn a_tag_for_a_runtime_type_is_refused() {
        let conflicts = index(
            builtin_entries(),
            [entry::<crate::PoisonMessage>("app.Poison", "a.rs:1")].into_iter(),
        )
        .unwrap_err();
        assert_eq!(conflicts.len(), 1);
        assert!(
            conflicts[0].contains("`greenroom.PoisonMessage` (at the Greenroom runtime) and `app.Poison` (at a.rs:1)"),
            "{conflicts:?}"
        );
    }

    #[test]
    fn every_conflict_is_reported_and_a_repeated_declaration_is_not_one() {
        let map = index(
            builtin_entries(),
            [
                entry::<u8>("app.X", "a.rs:1"),
                entry::<u8>("app.X", "b.rs:1"),
                entry::<u16>("app.Y", "a.rs:2"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(map.len(), 2, "builtins stay out of the map");
        assert_eq!(map[&TypeId::of::<u8>()], "app.X");
        let conflicts = index(
            Vec::new(),
            [
                entry::<u8>("app.X", "a.rs:1"),
                entry::<u16>("app.X", "a.rs:2"),
                entry::<u8>("app.Z", "a.rs:3"),
            ]
            .into_iter(),
        )
        .unwrap_err();
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    }

    #[test]
    fn tags_that_could_be_a_path_or_the_runtimes_are_refused() {
        for good in ["my_app.Greeting", "my_app.Greeting/v1", "a.b-c_d/2", "x.Y"] {
            check_declared_tag(good);
        }
        let long = "a.".repeat(65);
        for bad in [
            "",
            "my_app::Greeting",
            "Greeting",
            "u32",
            "my app.Greeting",
            "(u8, u8).x",
            "greenroom.Greeting",
            "tagé.x",
            long.as_str(),
        ] {
            let refused = std::panic::catch_unwind(|| check_declared_tag(bad));
            assert!(refused.is_err(), "{bad:?} should be refused");
        }
    }
}
