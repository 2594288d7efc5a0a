//! Verification of the hash chain, record by record in `seq` order.
//!
//! The checker holds only the previous record's seq and hash, so the log can be walked in
//! pages of any size, and a range of it can be checked on its own.

use serde::{Serialize, Serializer};

use crate::record::{AuditRecord, GENESIS_HASH, record_hash};

/// The result of walking the chain or a range of it.
///
/// Serializes as `{"ok": true, "records": N, "first_seq": A, "last_seq": B, "last_hash": H}`
/// (the last three `null` when no record was checked) or
/// `{"ok": false, "first_broken_seq": S, "reason": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record links to the one before it and matches its hash.
    Intact {
        records: u64,
        first_seq: Option<i64>,
        last_seq: Option<i64>,
        /// The hash of the last record checked: compare it with a copy kept elsewhere
        /// (the audit stream, an earlier export) to detect a rewritten chain.
        last_hash: Option<String>,
    },
    /// The first record at which the chain does not hold.
    Broken {
        first_broken_seq: i64,
        reason: String,
    },
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Intact { .. })
    }

    /// Returns the seq at which the chain breaks, or `None` when it is intact.
    pub fn first_broken_seq(&self) -> Option<i64> {
        match self {
            Self::Broken {
                first_broken_seq, ..
            } => Some(*first_broken_seq),
            Self::Intact { .. } => None,
        }
    }
}

impl Serialize for Verification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = match self {
            Self::Intact {
                records,
                first_seq,
                last_seq,
                last_hash,
            } => serde_json::json!({
                "ok": true,
                "records": records,
                "first_seq": first_seq,
                "last_seq": last_seq,
                "last_hash": last_hash,
            }),
            Self::Broken {
                first_broken_seq,
                reason,
            } => serde_json::json!({
                "ok": false,
                "first_broken_seq": first_broken_seq,
                "reason": reason,
            }),
        };
        body.serialize(serializer)
    }
}

/// The starting point of the checked records.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Anchor {
    /// The next record must have this seq and link to this hash.
    Known { seq: i64, prev_hash: String },
    /// The first record is taken as it is, except that seq 1 must link to the genesis
    /// hash. Used for an export of a range, whose predecessor the file does not contain.
    FirstRecord,
}

/// Checks records one by one, in ascending `seq` order.
#[derive(Debug)]
pub struct ChainChecker {
    anchor: Anchor,
    checked: u64,
    first_seq: Option<i64>,
}

impl Default for ChainChecker {
    /// Expects the whole chain: seq 1, linked to the genesis hash.
    fn default() -> Self {
        Self::after(0, GENESIS_HASH.to_owned())
    }
}

impl ChainChecker {
    /// Expects the record at `seq + 1`, linked to `hash` (the stored hash of `seq`).
    pub fn after(seq: i64, hash: String) -> Self {
        Self {
            anchor: Anchor::Known {
                seq: seq + 1,
                prev_hash: hash,
            },
            checked: 0,
            first_seq: None,
        }
    }

    /// Takes the first record's seq and `prev_hash` as given; see [`Anchor::FirstRecord`].
    pub fn from_first_record() -> Self {
        Self {
            anchor: Anchor::FirstRecord,
            checked: 0,
            first_seq: None,
        }
    }

    /// Checks the next record. Returns the broken verification at the first seq that is
    /// missing or out of order, or whose record does not link to its predecessor or does
    /// not match its hash.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), Verification> {
        let (expected_seq, expected_prev) = match &self.anchor {
            Anchor::Known { seq, prev_hash } => (*seq, prev_hash.as_str()),
            Anchor::FirstRecord if record.seq == 1 => (1, GENESIS_HASH),
            Anchor::FirstRecord => (record.seq, record.prev_hash.as_str()),
        };

        let broken = |first_broken_seq, reason: String| {
            Err(Verification::Broken {
                first_broken_seq,
                reason,
            })
        };
        if record.seq > expected_seq {
            return broken(
                expected_seq,
                format!(
                    "record {expected_seq} is missing: the next record has seq {}",
                    record.seq
                ),
            );
        }
        if record.seq < expected_seq {
            return broken(
                record.seq,
                format!(
                    "seq {} follows seq {}: records are repeated or out of order",
                    record.seq,
                    expected_seq - 1
                ),
            );
        }
        if record.prev_hash != expected_prev {
            let reason = if record.seq == 1 {
                "prev_hash of the first record is not the genesis hash (64 zeros)".to_owned()
            } else {
                "prev_hash does not match the hash of the previous record".to_owned()
            };
            return broken(record.seq, reason);
        }
        if record_hash(record) != record.hash {
            return broken(
                record.seq,
                "hash does not match the record's content".to_owned(),
            );
        }

        self.anchor = Anchor::Known {
            seq: record.seq + 1,
            prev_hash: record.hash.clone(),
        };
        self.first_seq.get_or_insert(record.seq);
        self.checked += 1;
        Ok(())
    }

    /// Returns the verification of the records that passed [`Self::check`].
    pub fn finish(self) -> Verification {
        let last = match self.anchor {
            Anchor::Known { seq, prev_hash } if self.checked > 0 => Some((seq - 1, prev_hash)),
            _ => None,
        };
        Verification::Intact {
            records: self.checked,
            first_seq: self.first_seq,
            last_seq: last.as_ref().map(|(seq, _)| *seq),
            last_hash: last.map(|(_, hash)| hash),
        }
    }
}

/// Verifies a whole chain held in memory, starting at seq 1.
pub fn verify_records<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Verification {
    let mut checker = ChainChecker::default();
    for record in records {
        if let Err(broken) = checker.check(record) {
            return broken;
        }
    }
    checker.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Entry;

    fn chain(length: i64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for seq in 1..=length {
            let entry = Entry {
                event_id: format!("evt-{seq}"),
                event_type: "stepup.challenge.started".into(),
                approval_id: Some("apr-1".into()),
                outcome: "started".into(),
                event_json: format!(r#"{{"id":"evt-{seq}"}}"#),
                ..Entry::default()
            };
            let prev_hash = records
                .last()
                .map_or_else(|| GENESIS_HASH.to_owned(), |last| last.hash.clone());
            records.push(AuditRecord::seal(entry, seq, 1_000 + seq, prev_hash));
        }
        records
    }

    fn broken_seq(verification: &Verification) -> Option<i64> {
        verification.first_broken_seq()
    }

    #[test]
    fn intact_chain_verifies() {
        let records = chain(5);
        assert_eq!(
            verify_records(&records),
            Verification::Intact {
                records: 5,
                first_seq: Some(1),
                last_seq: Some(5),
                last_hash: Some(records[4].hash.clone()),
            }
        );
    }

    #[test]
    fn empty_chain_verifies() {
        assert!(verify_records(&[]).is_ok());
    }

    #[test]
    fn changed_field_breaks_at_its_seq() {
        let mut records = chain(5);
        records[2].entry.outcome = "completed".into();

        assert_eq!(broken_seq(&verify_records(&records)), Some(3));
    }

    #[test]
    fn rehashed_record_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].entry.approver = Some("mallory".into());
        records[2].hash = record_hash(&records[2]);

        assert_eq!(broken_seq(&verify_records(&records)), Some(4));
    }

    #[test]
    fn removed_record_breaks_at_the_missing_seq() {
        let mut records = chain(5);
        records.remove(1);

        assert_eq!(broken_seq(&verify_records(&records)), Some(2));
    }

    #[test]
    fn reordered_records_break_at_the_first_of_them() {
        let mut records = chain(5);
        records.swap(1, 2);

        assert_eq!(broken_seq(&verify_records(&records)), Some(2));
    }

    #[test]
    fn swapped_seqs_break_at_the_lower_seq() {
        let mut records = chain(5);
        records.swap(1, 2);
        records[1].seq = 2;
        records[2].seq = 3;

        assert_eq!(broken_seq(&verify_records(&records)), Some(2));
    }

    #[test]
    fn repeated_record_breaks_at_the_repeat() {
        let mut records = chain(3);
        records.insert(2, records[1].clone());

        assert_eq!(broken_seq(&verify_records(&records)), Some(2));
    }

    #[test]
    fn range_checker_takes_the_first_record_as_anchor() {
        let records = chain(6);
        let mut checker = ChainChecker::from_first_record();
        for record in &records[2..] {
            assert_eq!(checker.check(record), Ok(()));
        }

        let verification = checker.finish();

        assert_eq!(
            verification,
            Verification::Intact {
                records: 4,
                first_seq: Some(3),
                last_seq: Some(6),
                last_hash: Some(records[5].hash.clone()),
            }
        );
    }

    #[test]
    fn range_checker_still_requires_genesis_for_seq_1() {
        let mut records = chain(2);
        records[0] = AuditRecord::seal(records[0].entry.clone(), 1, 1_001, "f".repeat(64));
        let mut checker = ChainChecker::from_first_record();

        let result = checker.check(&records[0]);

        assert_eq!(
            result.err().and_then(|broken| broken.first_broken_seq()),
            Some(1)
        );
    }

    #[test]
    fn checker_after_a_seq_requires_its_hash() {
        let records = chain(4);
        let mut linked = ChainChecker::after(2, records[1].hash.clone());
        let mut unlinked = ChainChecker::after(2, "a".repeat(64));

        assert_eq!(linked.check(&records[2]), Ok(()));
        assert!(unlinked.check(&records[2]).is_err());
    }

    #[test]
    fn first_record_must_link_to_genesis() {
        let mut records = chain(2);
        records[0] = AuditRecord::seal(records[0].entry.clone(), 1, 1_001, "f".repeat(64));

        assert_eq!(broken_seq(&verify_records(&records)), Some(1));
    }

    #[test]
    fn verification_serializes_to_the_api_shape() -> Result<(), serde_json::Error> {
        let mut records = chain(2);
        records[1].entry.event_json = "{}".into();

        let intact = serde_json::to_value(verify_records(&chain(2)))?;
        let broken = serde_json::to_value(verify_records(&records))?;

        assert_eq!(intact["ok"], true);
        assert_eq!(intact["records"], 2);
        assert_eq!(intact["first_seq"], 1);
        assert_eq!(intact["last_seq"], 2);
        assert!(intact["last_hash"].is_string());
        assert_eq!(broken["ok"], false);
        assert_eq!(broken["first_broken_seq"], 2);
        assert!(broken["reason"].is_string());
        Ok(())
    }
}
