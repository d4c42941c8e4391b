//! Property tests: every message survives encoding and decoding, with and
//! without compression, whatever its content; and no byte string makes
//! the decoder panic.

use bytes::BytesMut;
use proptest::prelude::*;
use sync_protocol::frame::{FrameCodec, decode_payload};
use sync_protocol::message::{
    JobAnnouncement, JobBatch, JournalBatch, JournalRecord, Message, PolicyChanges, PolicyUser,
    Refusal, RefusalCode,
};
use sync_protocol::rules::{Period, Quota, Rules};
use tokio_util::codec::Decoder;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including quotes, escapes and control characters.
    proptest::string::string_regex("(?s).{0,24}").expect("regex")
}

fn record() -> impl Strategy<Value = JournalRecord> {
    (
        (any::<u64>(), text(), text(), any::<i32>(), text(), text()),
        (
            any::<Option<u32>>(),
            any::<bool>(),
            any::<Option<u32>>(),
            any::<u32>(),
            text(),
            text(),
            proptest::option::of(text()),
            any::<i64>(),
            text(),
        ),
    )
        .prop_map(
            |(
                (seq, job, queue, job_id, user, device),
                (pages, pages_exact, sheets, copies, color, sides, media, time_ms, outcome),
            )| JournalRecord {
                seq,
                job,
                queue,
                job_id,
                user,
                device,
                pages,
                pages_exact,
                sheets,
                copies,
                color,
                sides,
                media,
                time_ms,
                outcome,
                origin_site: None,
            },
        )
}

fn user() -> impl Strategy<Value = PolicyUser> {
    (
        text(),
        text(),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..3),
        any::<bool>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(
            |(id, name, email, groups, disabled, password, pin, cards)| PolicyUser {
                id,
                name,
                email,
                groups,
                disabled,
                password,
                pin,
                pin_only: None,
                cards,
            },
        )
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        proptest::collection::vec(text(), 0..3),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of((any::<u32>(), 0..3u8)),
    )
        .prop_map(|(groups, duplex, max, quota)| Rules {
            force_mono_groups: groups,
            force_duplex_above_pages: duplex,
            max_pages_per_job: max,
            quota: quota.map(|(pages, p)| Quota {
                pages,
                period: [Period::Day, Period::Week, Period::Month][p as usize],
            }),
            ..Rules::default()
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            text(),
            any::<u64>(),
            proptest::collection::vec(record(), 0..40)
        )
            .prop_map(|(epoch, after, records)| Message::Journal(JournalBatch {
                epoch,
                after,
                records
            })),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(user(), 0..20),
            proptest::collection::vec(text(), 0..4),
            proptest::option::of(rules()),
        )
            .prop_map(|(from, to, upsert, remove, rules)| Message::PolicyChanges(
                PolicyChanges {
                    from,
                    to,
                    upsert,
                    remove,
                    rules
                }
            )),
        (
            text(),
            any::<u64>(),
            any::<u64>(),
            text(),
            text(),
            any::<bool>()
        )
            .prop_map(|(epoch, after, seq, uuid, owner, deleted)| Message::Jobs(
                JobBatch {
                    epoch,
                    after,
                    jobs: vec![JobAnnouncement {
                        seq,
                        uuid,
                        owner,
                        name: "n".into(),
                        pages: None,
                        size: Some(seq),
                        submitted_ms: 0,
                        state: "held".into(),
                        deleted,
                    }],
                }
            )),
        text().prop_map(|m| Message::Refused(Refusal::new(RefusalCode::Revoked, m))),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(message in message(), compress in any::<bool>()) {
        let mut codec = FrameCodec::new(sync_protocol::frame::MAX_FRAME, compress);
        let wire = codec.encode_to_vec(&message).expect("encodes");
        let mut buf = BytesMut::from(&wire[..]);
        let decoded = codec.decode(&mut buf).expect("decodes").expect("whole frame");
        prop_assert_eq!(decoded, message);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_payload(&bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut codec = FrameCodec::new(4096, true);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }
}
