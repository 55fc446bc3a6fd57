//! Who may do what: the access rules as a table of role × call × owner or
//! not, and what callers see of other users' reservations.

use abi::{
    Caller, Error, Hold, InitialStatus, ListenFilter, NewBooking, NewReservation, Note,
    ReservationId, ReservationQuery, ReservationUpdate, ResourcePatch, ResourceSpec, Result, Role,
    StatusChange, UserId, pb,
};
use futures::TryStreamExt;
use reservation::Access;

use crate::support::{Env, hold, next};

conformance!(
    each_role_may_do_what_the_rules_say,
    a_user_reads_only_its_own_unless_it_administers_the_resource,
    others_reservations_are_redacted_in_conflicts_and_listen,
    tokens_are_kept_as_digests_and_revoked_once,
    a_users_narrowed_pages_follow_on_and_blocks_are_changed_by_admins_only,
    a_booking_with_a_block_is_cancelled_by_its_resources_admins_only,
);

/// A booking that blocks the room (an admin's closure, made for ann)
/// with a hold of ann's after it: ann and services may cancel bookings,
/// but only an admin of the room lifts the block.
async fn a_booking_with_a_block_is_cancelled_by_its_resources_admins_only(env: Env) {
    room(&env, 1).await;
    let cast = Cast::new();
    let access = Access::new(env.store.clone());
    let booking = NewBooking::new(
        UserId::parse("ann").unwrap(),
        vec![
            NewReservation {
                status: InitialStatus::Blocked,
                ..hold("ann", "room", 60, 120)
            },
            hold("ann", "room", 200, 260),
        ],
        Hold::Default,
        None,
    )
    .unwrap();
    let made = access.book(&cast.boss, booking).await.unwrap();
    for caller in [&cast.ann, &cast.svc] {
        assert!(
            matches!(
                access.cancel_booking(caller, made.id).await,
                Err(Error::PermissionDenied(_))
            ),
            "{caller}"
        );
    }
    assert!(
        access
            .get_booking(&cast.ann, made.id)
            .await
            .unwrap()
            .parts
            .iter()
            .all(|p| p.status.is_live()),
        "nothing was cancelled"
    );
    let lifted = access.cancel_booking(&cast.rita, made.id).await.unwrap();
    assert!(lifted.parts.iter().all(|p| !p.status.is_live()));
}

fn user(name: &str, role: Role) -> Caller {
    Caller::new(UserId::parse(name).unwrap(), role)
}

/// The cast: ann owns the reservations, bob is another user, rita
/// administers the room (a user otherwise), svc is a service, boss an admin.
struct Cast {
    ann: Caller,
    bob: Caller,
    rita: Caller,
    svc: Caller,
    boss: Caller,
}

impl Cast {
    fn new() -> Self {
        Cast {
            ann: user("ann", Role::User),
            bob: user("bob", Role::User),
            rita: user("rita", Role::User),
            svc: user("svc", Role::Service),
            boss: user("boss", Role::Admin),
        }
    }

    /// Each caller with its name.
    fn each(&self) -> [(&'static str, &Caller); 5] {
        [
            ("ann", &self.ann),
            ("bob", &self.bob),
            ("rita", &self.rita),
            ("svc", &self.svc),
            ("boss", &self.boss),
        ]
    }
}

async fn room(env: &Env, capacity: u32) {
    env.store
        .create_resource(
            ResourceSpec::try_from(pb::Resource {
                id: "room".into(),
                capacity,
                admins: vec!["rita".into()],
                ..Default::default()
            })
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Allowed (`true`) or denied, and never anything else.
fn judged<T: std::fmt::Debug>(result: Result<T>, case: &str) -> bool {
    match result {
        Ok(_) => true,
        Err(Error::PermissionDenied(_)) => false,
        Err(e) => panic!("{case}: neither done nor denied: {e:?}"),
    }
}

/// The calls on one of ann's reservations, and who may make each.
#[derive(Clone, Copy, Debug)]
enum Call {
    Get,
    Confirm,
    Cancel,
    Note,
    CheckInAfterConfirm,
    MarkNoShow,
}

impl Call {
    /// Who may, in the cast's order: ann, bob, rita, svc, boss.
    fn allowed(self) -> [bool; 5] {
        match self {
            Call::Get | Call::Confirm | Call::Cancel | Call::Note | Call::CheckInAfterConfirm => {
                [true, false, true, true, true]
            }
            Call::MarkNoShow => [false, false, true, false, true],
        }
    }
}

pub async fn each_role_may_do_what_the_rules_say(env: Env) {
    // Room enough for the reservations under way at once below.
    room(&env, 20).await;
    let access = Access::new(env.store.clone());
    let cast = Cast::new();

    // Calls on one of ann's reservations, each on a fresh one. Those that
    // need the reservation to have started are made on reservations of
    // [60, 180); the clock moves into them before they run.
    let calls = [
        Call::Get,
        Call::Confirm,
        Call::Cancel,
        Call::Note,
        Call::CheckInAfterConfirm,
        Call::MarkNoShow,
    ];
    let mut later = Vec::new();
    let mut slot = 0;
    for call in calls {
        for (i, (name, caller)) in cast.each().into_iter().enumerate() {
            let case = format!("{name} {call:?} on ann's reservation");
            slot += 1;
            let mine = env
                .store
                .reserve(hold("ann", "room", 1000 + slot * 10, 1005 + slot * 10))
                .await
                .unwrap();
            let result = match call {
                Call::Get => access.get(caller, mine.id).await,
                Call::Confirm => access.confirm(caller, mine.id).await,
                Call::Cancel => access.cancel(caller, mine.id).await,
                Call::Note => {
                    let update = ReservationUpdate {
                        note: Some(Note::parse("moved").unwrap()),
                        ..ReservationUpdate::status(mine.id, StatusChange::Confirm)
                    };
                    access
                        .update(
                            caller,
                            ReservationUpdate {
                                status: None,
                                ..update
                            },
                        )
                        .await
                }
                Call::CheckInAfterConfirm | Call::MarkNoShow => {
                    env.store.cancel(mine.id).await.unwrap();
                    let started = env
                        .store
                        .reserve(NewReservation {
                            status: InitialStatus::Confirmed,
                            ..hold("ann", "room", 60, 180)
                        })
                        .await
                        .unwrap();
                    later.push((call, i, case, started.id));
                    continue;
                }
            };
            assert_eq!(judged(result, &case), call.allowed()[i], "{case}");
        }
    }
    env.advance(70);
    let callers = cast.each();
    for (call, i, case, id) in later {
        let caller = callers[i].1;
        let result = match call {
            Call::CheckInAfterConfirm => access.check_in(caller, id).await,
            _ => {
                access
                    .update(caller, ReservationUpdate::status(id, StatusChange::NoShow))
                    .await
            }
        };
        assert_eq!(judged(result, &case), call.allowed()[i], "{case}");
    }

    // Reserving for ann, blocking the room, overriding its policy, and
    // changing resources: who may.
    let table: [(&str, [bool; 5]); 8] = [
        ("reserve as ann", [true, false, false, true, true]),
        ("block the room", [false, false, true, false, true]),
        ("override the policy", [false, false, true, false, true]),
        (
            "override the policy changing its own",
            [false, false, true, false, true],
        ),
        (
            "override the policy in a booking",
            [false, false, true, false, true],
        ),
        ("register a resource", [false, false, false, false, true]),
        ("change the room", [false, false, true, false, true]),
        ("delete another room", [false, false, false, false, true]),
    ];
    let mut start = 5000;
    for (what, allowed) in table {
        for (i, (name, caller)) in cast.each().into_iter().enumerate() {
            let case = format!("{name}: {what}");
            start += 10;
            let result = match what {
                "reserve as ann" => access
                    .reserve(caller, hold("ann", "room", start, start + 5))
                    .await
                    .map(drop),
                "block the room" => access
                    .reserve(
                        caller,
                        NewReservation {
                            status: InitialStatus::Blocked,
                            ..hold(name, "room", start, start + 5)
                        },
                    )
                    .await
                    .map(drop),
                "override the policy" => access
                    .reserve(
                        caller,
                        NewReservation {
                            override_policy: true,
                            ..hold(name, "room", start, start + 5)
                        },
                    )
                    .await
                    .map(drop),
                "override the policy changing its own" => {
                    let own = env
                        .store
                        .reserve(hold(name, "room", start, start + 5))
                        .await
                        .unwrap();
                    access
                        .update(
                            caller,
                            ReservationUpdate {
                                note: Some(Note::parse("moved by an admin").unwrap()),
                                override_policy: true,
                                ..ReservationUpdate::status(own.id, StatusChange::Confirm)
                            },
                        )
                        .await
                        .map(drop)
                }
                "override the policy in a booking" => {
                    let mut booking = NewBooking::new(
                        UserId::parse(name).unwrap(),
                        vec![hold(name, "room", start, start + 5)],
                        Hold::Default,
                        None,
                    )
                    .unwrap();
                    booking.override_policy = true;
                    access.book(caller, booking).await.map(drop)
                }
                "register a resource" => access
                    .create_resource(
                        caller,
                        ResourceSpec::try_from(pb::Resource {
                            id: format!("new-{name}"),
                            capacity: 1,
                            ..Default::default()
                        })
                        .unwrap(),
                    )
                    .await
                    .map(drop),
                "change the room" => access
                    .update_resource(
                        caller,
                        ResourcePatch::from_request(pb::UpdateResourceRequest {
                            resource: Some(pb::Resource {
                                id: "room".into(),
                                display_name: format!("changed by {name}"),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["display_name".into()],
                            }),
                        })
                        .unwrap(),
                    )
                    .await
                    .map(drop),
                _ => {
                    let id = format!("gone-{name}");
                    env.store
                        .create_resource(
                            ResourceSpec::try_from(pb::Resource {
                                id: id.clone(),
                                capacity: 1,
                                ..Default::default()
                            })
                            .unwrap(),
                        )
                        .await
                        .unwrap();
                    access
                        .delete_resource(caller, id.parse().unwrap(), false)
                        .await
                        .map(drop)
                }
            };
            assert_eq!(judged(result, &case), allowed[i], "{case}");
        }
    }

    // Bookings: ann's, read, confirmed and cancelled by whom.
    let booking_calls: [(&str, [bool; 5]); 3] = [
        ("read", [true, false, true, true, true]),
        ("confirm", [true, false, true, true, true]),
        ("cancel", [true, false, true, true, true]),
    ];
    for (what, allowed) in booking_calls {
        for (i, (name, caller)) in cast.each().into_iter().enumerate() {
            let case = format!("{name}: {what} ann's booking");
            start += 10;
            let made = env
                .store
                .book(
                    NewBooking::new(
                        UserId::parse("ann").unwrap(),
                        vec![hold("ann", "room", start, start + 5)],
                        Hold::Default,
                        None,
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
            let result = match what {
                "read" => access.get_booking(caller, made.id).await,
                "confirm" => access.confirm_booking(caller, made.id).await,
                _ => access.cancel_booking(caller, made.id).await,
            };
            assert_eq!(judged(result, &case), allowed[i], "{case}");
        }
    }
    let bobs = access
        .book(
            &cast.bob,
            NewBooking::new(
                UserId::parse("ann").unwrap(),
                vec![hold("ann", "room", start + 20, start + 25)],
                Hold::Default,
                None,
            )
            .unwrap(),
        )
        .await;
    assert!(!judged(bobs, "bob books as ann"), "bob books as ann");

    // An id never registered is not found, whoever asks to change or
    // delete it: not a refusal to change what is not there.
    for (name, caller) in cast.each() {
        let patch = ResourcePatch::from_request(pb::UpdateResourceRequest {
            resource: Some(pb::Resource {
                id: "nowhere".into(),
                capacity: 3,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["capacity".into()],
            }),
        })
        .unwrap();
        let changed = access.update_resource(caller, patch).await;
        assert!(
            matches!(changed, Err(Error::ResourceNotFound(_))),
            "{name} changes nowhere: {changed:?}"
        );
        let deleted = access
            .delete_resource(caller, "nowhere".parse().unwrap(), false)
            .await;
        assert!(
            matches!(deleted, Err(Error::ResourceNotFound(_))),
            "{name} deletes nowhere: {deleted:?}"
        );
    }
}

pub async fn a_user_reads_only_its_own_unless_it_administers_the_resource(env: Env) {
    room(&env, 1).await;
    let access = Access::new(env.store.clone());
    let cast = Cast::new();
    let anns = env.reserve("ann", "room", 0, 10).await.unwrap();
    env.reserve("bob", "room", 20, 30).await.unwrap();
    env.reserve("bob", "hall", 0, 10).await.unwrap();

    let users_of = |rows: Vec<abi::Reservation>| {
        let mut users: Vec<String> = rows.into_iter().map(|r| r.user_id.into_string()).collect();
        users.sort();
        users
    };
    let everything = ReservationQuery::default();
    let of_room = ReservationQuery {
        resource_id: Some("room".parse().unwrap()),
        ..ReservationQuery::default()
    };
    let cases: [(&Caller, &ReservationQuery, Vec<&str>, &str); 6] = [
        (
            &cast.ann,
            &everything,
            vec!["ann"],
            "a user's query is its own",
        ),
        (
            &cast.bob,
            &of_room,
            vec!["bob"],
            "a user's query of a room is its own there",
        ),
        (
            &cast.rita,
            &of_room,
            vec!["ann", "bob"],
            "a room's admin sees all of it",
        ),
        (
            &cast.rita,
            &everything,
            vec![],
            "and only its own elsewhere",
        ),
        (
            &cast.svc,
            &everything,
            vec!["ann", "bob", "bob"],
            "a service reads everything",
        ),
        (
            &cast.boss,
            &everything,
            vec!["ann", "bob", "bob"],
            "so does an admin",
        ),
    ];
    for (caller, query, users, case) in cases {
        let rows: Vec<_> = access
            .query(caller, query.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(users_of(rows), users, "{case}: query");
        let page = access
            .filter(
                caller,
                abi::ReservationFilter {
                    query: query.clone(),
                    page_size: 100,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(users_of(page.reservations), users, "{case}: filter");
    }

    let of_ann = ReservationQuery {
        user_id: Some("ann".parse().unwrap()),
        ..ReservationQuery::default()
    };
    assert!(matches!(
        access.query(&cast.bob, of_ann.clone()).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        access
            .listen(
                &cast.bob,
                ListenFilter {
                    user_id: Some("ann".parse().unwrap()),
                    ..ListenFilter::default()
                }
            )
            .await,
        Err(Error::PermissionDenied(_))
    ));
    assert_eq!(
        access.get(&cast.ann, anns.id).await.unwrap().id,
        anns.id,
        "the owner reads it"
    );

    // Asking for a reservation one may not read, or one that does not
    // exist, is the same answer for a user; NOT_FOUND for those who could
    // have read it.
    let nowhere = ReservationId::new();
    for call in ["get", "cancel"] {
        let (theirs, missing) = match call {
            "get" => (
                access.get(&cast.bob, anns.id).await,
                access.get(&cast.bob, nowhere).await,
            ),
            _ => (
                access.cancel(&cast.bob, anns.id).await,
                access.cancel(&cast.bob, nowhere).await,
            ),
        };
        let (Err(Error::PermissionDenied(a)), Err(Error::PermissionDenied(b))) = (theirs, missing)
        else {
            panic!("{call}: a user is denied both");
        };
        assert_eq!(
            a.replace(&anns.id.to_string(), "ID"),
            b.replace(&nowhere.to_string(), "ID"),
            "{call}: the two denials read alike"
        );
    }
    assert!(matches!(
        access.get(&cast.svc, nowhere).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        access.get(&cast.boss, nowhere).await,
        Err(Error::NotFound(_))
    ));
}

pub async fn others_reservations_are_redacted_in_conflicts_and_listen(env: Env) {
    room(&env, 1).await;
    let access = Access::new(env.store.clone());
    let cast = Cast::new();
    let mut bobs_feed = access
        .listen(&cast.bob, ListenFilter::default())
        .await
        .unwrap();
    let mut ritas_feed = access
        .listen(&cast.rita, ListenFilter::default())
        .await
        .unwrap();
    let anns = env
        .store
        .reserve(NewReservation {
            note: Note::parse("room for the board").unwrap(),
            ..hold("ann", "room", 0, 60)
        })
        .await
        .unwrap();

    let seen = next(&mut bobs_feed).await.reservation;
    assert!(seen.is_redacted(), "bob sees ann's change redacted");
    assert_eq!(
        (
            seen.id.uuid().is_nil(),
            seen.user_id.as_str(),
            seen.note.as_str(),
            seen.booking_id
        ),
        (true, "", "", None),
        "no id, user, note or booking"
    );
    assert_eq!(
        (seen.expires_at, seen.checked_in_at, seen.checked_out_at),
        (None, None, None),
        "nor any time of its own"
    );
    assert_eq!(
        (seen.created_at, seen.updated_at),
        (chrono::DateTime::UNIX_EPOCH, chrono::DateTime::UNIX_EPOCH)
    );
    let wire = pb::Reservation::from(seen.clone());
    assert_eq!(
        (
            wire.id.as_str(),
            wire.created_at,
            wire.updated_at,
            wire.expires_at
        ),
        ("", None, None, None),
        "the wire shows none of them"
    );
    assert_eq!(
        (&seen.resource_id, seen.timespan, seen.status, seen.quantity),
        (&anns.resource_id, anns.timespan, anns.status, anns.quantity),
        "but the resource, interval, status and quantity"
    );
    assert_eq!(
        next(&mut ritas_feed).await.reservation,
        anns,
        "the room's admin sees it whole"
    );

    let bob_sees = conflict_seen_by(&access, &cast.bob).await;
    assert_eq!(bob_sees.len(), 1);
    assert!(
        bob_sees[0].is_redacted(),
        "bob sees ann's reservation redacted"
    );
    assert_eq!(bob_sees[0].timespan, anns.timespan);
    for (caller, case) in [
        (&cast.ann, "ann sees her own"),
        (&cast.rita, "the room's admin sees it"),
        (&cast.svc, "a service sees it"),
    ] {
        let seen = conflict_seen_by(&access, caller).await;
        assert_eq!(
            seen.iter()
                .map(|r| (r.id, r.user_id.as_str()))
                .collect::<Vec<_>>(),
            vec![(anns.id, "ann")],
            "{case}"
        );
    }

    // A refused booking redacts its parts' conflicts the same way.
    let refused = access
        .book(
            &cast.bob,
            NewBooking::new(
                UserId::parse("bob").unwrap(),
                vec![hold("bob", "room", 10, 20)],
                Hold::Default,
                None,
            )
            .unwrap(),
        )
        .await;
    let Err(Error::BookingRejected(parts)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    let conflict = parts[0].conflict.as_ref().expect("a conflict");
    assert!(conflict.existing.iter().all(|r| r.is_redacted()));
}

/// What `caller` is shown in the way when it reserves the room's first
/// hour and a half.
async fn conflict_seen_by(access: &Access, caller: &Caller) -> Vec<abi::Reservation> {
    let name = caller.principal().expect("a named caller").as_str();
    match access.reserve(caller, hold(name, "room", 30, 90)).await {
        Err(Error::Conflict(c)) => c.existing,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn tokens_are_kept_as_digests_and_revoked_once(env: Env) {
    let (made, secret) = env
        .store
        .create_token(abi::NewToken {
            principal: UserId::parse("ann").unwrap(),
            role: Role::User,
            expires_at: Some(crate::support::at(60)),
        })
        .await
        .unwrap();
    let (other, _) = env
        .store
        .create_token(abi::NewToken {
            principal: UserId::parse("svc").unwrap(),
            role: Role::Service,
            expires_at: None,
        })
        .await
        .unwrap();
    assert_eq!(
        made.digest,
        secret.digest(),
        "the digest of the secret is kept"
    );
    assert_eq!(made.created_at, crate::support::at(0));
    assert_eq!(
        env.store.tokens().await.unwrap(),
        vec![made.clone(), other.clone()],
        "listed oldest first, as made"
    );
    if let Some(path) = env.db_path() {
        let file = std::fs::read(path).unwrap();
        let text = secret.expose().as_bytes();
        assert!(
            !file.windows(text.len()).any(|w| w == text),
            "the secret is nowhere in the database file"
        );
    }
    assert!(made.is_active(crate::support::at(59)));
    assert!(!made.is_active(crate::support::at(60)), "expired");

    env.advance(5);
    let revoked = env.store.revoke_token(made.id).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(crate::support::at(5)));
    assert!(!revoked.is_active(crate::support::at(6)));
    env.advance(5);
    assert_eq!(
        env.store.revoke_token(made.id).await.unwrap(),
        revoked,
        "revoking again changes nothing"
    );
    assert!(matches!(
        env.store.revoke_token(abi::TokenId::new()).await,
        Err(Error::TokenNotFound(_))
    ));
    assert_eq!(env.store.tokens().await.unwrap(), vec![revoked, other]);
}

pub async fn a_users_narrowed_pages_follow_on_and_blocks_are_changed_by_admins_only(env: Env) {
    room(&env, 20).await;
    let access = Access::new(env.store.clone());
    let cast = Cast::new();
    for i in 0..5 {
        env.reserve("ann", "room", i * 10, i * 10 + 5)
            .await
            .unwrap();
        env.reserve("bob", "room", i * 10, i * 10 + 5)
            .await
            .unwrap();
    }

    // Ann pages through "everything", which is hers: each page's token
    // works with the query she sent.
    let mut filter = abi::ReservationFilter::first_page(ReservationQuery::default(), 2).unwrap();
    let mut seen = Vec::new();
    loop {
        let page = access.filter(&cast.ann, filter.clone()).await.unwrap();
        seen.extend(page.reservations.iter().map(|r| r.user_id.to_string()));
        let Some(token) = page.next_page_token else {
            break;
        };
        filter = abi::ReservationFilter::first_page(ReservationQuery::default(), 2)
            .unwrap()
            .with_page_token(&token)
            .expect("the token fits the query as sent");
    }
    assert_eq!(seen, vec!["ann"; 5], "every one of hers, no one else's");
    let of_bob = abi::ReservationFilter::first_page(
        ReservationQuery {
            user_id: Some("bob".parse().unwrap()),
            ..ReservationQuery::default()
        },
        2,
    )
    .unwrap();
    assert!(matches!(
        access.filter(&cast.ann, of_bob).await,
        Err(Error::PermissionDenied(_))
    ));

    // A block, even one naming ann, is changed by admins only.
    for (caller, allowed, case) in [
        (&cast.ann, false, "the user it names"),
        (&cast.svc, false, "a service"),
        (&cast.rita, true, "the room's admin"),
        (&cast.boss, true, "an admin"),
    ] {
        let block = env
            .store
            .reserve(NewReservation {
                status: InitialStatus::Blocked,
                ..hold("ann", "room", 100, 110)
            })
            .await
            .unwrap();
        let cancelled = access.cancel(caller, block.id).await;
        assert_eq!(judged(cancelled, case), allowed, "{case} cancels a block");
        env.store.cancel(block.id).await.unwrap();
    }
}
