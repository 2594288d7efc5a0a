use serde_json::Value;

use super::*;
use crate::record::GENESIS_HASH;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn chain(length: i64) -> Vec<AuditRecord> {
    let mut records: Vec<AuditRecord> = Vec::new();
    for seq in 1..=length {
        let entry = Entry {
            event_id: format!("evt-{seq}"),
            event_type: "stepup.approval.completed".into(),
            event_time: Some(1_700_000_000_000 + seq),
            approval_id: Some("apr-1".into()),
            approver: Some("Zoë \"z\" <z@example.com>\n".into()),
            outcome: "completed".into(),
            amr: Some(r#"["pwd","otp"]"#.into()),
            event_json: format!(r#"{{"id":"evt-{seq}","data":{{"note":"ünïcode\t"}}}}"#),
            ..Entry::default()
        };
        let prev_hash = records
            .last()
            .map_or_else(|| GENESIS_HASH.to_owned(), |last| last.hash.clone());
        records.push(AuditRecord::seal(
            entry,
            seq,
            1_700_000_001_000 + seq,
            prev_hash,
        ));
    }
    records
}

fn export(records: &[AuditRecord]) -> String {
    records.iter().map(export_line).collect()
}

#[test]
fn line_round_trips_every_column() -> TestResult {
    let record = &chain(1)[0];

    let line = export_line(record);
    let parsed: AuditRecorded = serde_json::from_str(line.trim_end())?;

    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1, "a record spans one line");
    assert_eq!(&from_recorded(parsed), record);
    Ok(())
}

#[test]
fn null_columns_are_left_out_of_the_line() -> TestResult {
    let line = export_line(&chain(1)[0]);
    let parsed: Value = serde_json::from_str(&line)?;

    assert_eq!(parsed.get("step_id"), None);
    assert_eq!(
        parsed["event_json"]
            .as_str()
            .map(|text| text.contains("evt-1")),
        Some(true)
    );
    Ok(())
}

#[test]
fn whole_export_verifies() -> TestResult {
    let records = chain(4);

    let verification = verify_export(export(&records).as_bytes())?;

    assert_eq!(
        verification,
        Verification::Intact {
            records: 4,
            first_seq: Some(1),
            last_seq: Some(4),
            last_hash: Some(records[3].hash.clone()),
        }
    );
    Ok(())
}

#[test]
fn range_export_verifies_on_its_own() -> TestResult {
    let records = chain(5);

    let verification = verify_export(export(&records[2..]).as_bytes())?;

    assert!(verification.is_ok(), "{verification:?}");
    Ok(())
}

#[test]
fn edited_line_breaks_at_its_seq() -> TestResult {
    let mut lines: Vec<Value> = export(&chain(4))
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    lines[2]["approver"] = Value::from("mallory");
    let edited: String = lines.iter().map(|line| format!("{line}\n")).collect();

    let verification = verify_export(edited.as_bytes())?;

    assert_eq!(verification.first_broken_seq(), Some(3));
    Ok(())
}

#[test]
fn dropped_line_breaks_at_the_missing_seq() -> TestResult {
    let records = chain(4);
    let text = export(&[records[0].clone(), records[1].clone(), records[3].clone()]);

    let verification = verify_export(text.as_bytes())?;

    assert_eq!(verification.first_broken_seq(), Some(3));
    Ok(())
}

#[test]
fn malformed_line_is_an_error_with_its_number() {
    let text = format!("{}not json\n", export(&chain(1)));

    let result = verify_export(text.as_bytes());

    assert!(
        matches!(result, Err(ExportError::InvalidLine { line: 2, .. })),
        "{result:?}"
    );
}

#[test]
fn empty_export_is_intact_with_no_records() -> TestResult {
    let verification = verify_export("\n".as_bytes())?;

    assert_eq!(
        verification,
        Verification::Intact {
            records: 0,
            first_seq: None,
            last_seq: None,
            last_hash: None,
        }
    );
    Ok(())
}
