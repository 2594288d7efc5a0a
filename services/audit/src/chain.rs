//! Verification of the hash chain, record by record in `seq` order.
//!
//! The checker holds only the previous record's seq and hash, so the log can be walked in
//! pages of any size.

use serde::{Serialize, Serializer};

use crate::record::{AuditRecord, GENESIS_HASH, record_hash};

/// The result of walking the whole chain.
///
/// Serializes as `{"ok": true, "records": N}` or
/// `{"ok": false, "first_broken_seq": S, "reason": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record links to the one before it and matches its hash.
    Intact { records: u64 },
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
}

impl Serialize for Verification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = match self {
            Self::Intact { records } => serde_json::json!({ "ok": true, "records": records }),
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

/// Checks records one by one, in ascending `seq` order.
#[derive(Debug)]
pub struct ChainChecker {
    expected_seq: i64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainChecker {
    /// Checks the next record. Returns the broken verification at the first record that
    /// is out of sequence, does not link to its predecessor or does not match its hash.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), Verification> {
        let reason = if record.seq != self.expected_seq {
            Some(format!(
                "expected seq {}, found seq {}: a record is missing or out of order",
                self.expected_seq, record.seq
            ))
        } else if record.prev_hash != self.prev_hash {
            Some("prev_hash does not match the hash of the previous record".to_owned())
        } else if record_hash(record) != record.hash {
            Some("hash does not match the record's content".to_owned())
        } else {
            None
        };

        if let Some(reason) = reason {
            return Err(Verification::Broken {
                first_broken_seq: record.seq,
                reason,
            });
        }

        self.expected_seq += 1;
        self.prev_hash.clone_from(&record.hash);
        self.checked += 1;
        Ok(())
    }

    /// Returns the verification of a chain whose every record passed [`Self::check`].
    pub fn finish(self) -> Verification {
        Verification::Intact {
            records: self.checked,
        }
    }
}

/// Verifies a whole chain held in memory.
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
        match verification {
            Verification::Broken {
                first_broken_seq, ..
            } => Some(*first_broken_seq),
            Verification::Intact { .. } => None,
        }
    }

    #[test]
    fn intact_chain_verifies() {
        let records = chain(5);
        assert_eq!(
            verify_records(&records),
            Verification::Intact { records: 5 }
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
    fn removed_record_breaks_at_the_gap() {
        let mut records = chain(5);
        records.remove(1);

        assert_eq!(broken_seq(&verify_records(&records)), Some(3));
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

        assert_eq!(intact, serde_json::json!({"ok": true, "records": 2}));
        assert_eq!(broken["ok"], false);
        assert_eq!(broken["first_broken_seq"], 2);
        assert!(broken["reason"].is_string());
        Ok(())
    }
}
