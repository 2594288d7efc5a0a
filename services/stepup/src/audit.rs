//! `stepup audit verify`: checks a JSON Lines export of the audit log offline, with the
//! same chain verification as the audit service.

use std::fs::File;
use std::io::{BufReader, Write};

use anyhow::Context as _;
use stepup_audit::chain::Verification;
use stepup_audit::export::verify_export;

use crate::cli::{AuditCommand, AuditVerifyArgs};

/// Runs an `audit` subcommand. Returns an error, so the process exits non-zero, when the
/// export cannot be read or its chain does not hold.
pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(&args, &mut std::io::stdout()),
    }
}

fn verify(args: &AuditVerifyArgs, output: &mut impl Write) -> anyhow::Result<()> {
    let file = File::open(&args.file).with_context(|| {
        format!(
            "opening {}: pass --file with an export from GET /audit/export",
            args.file.display()
        )
    })?;
    let verification = verify_export(BufReader::new(file))
        .with_context(|| format!("reading {}", args.file.display()))?;

    match verification {
        Verification::Intact {
            records,
            first_seq,
            last_seq,
            last_hash,
        } => {
            let range = match (first_seq, last_seq) {
                (Some(first), Some(last)) => format!("seq {first} to {last}"),
                _ => "no records".to_owned(),
            };
            writeln!(output, "ok: {records} records, {range}")?;
            if let Some(last_hash) = last_hash {
                writeln!(output, "last hash: {last_hash}")?;
            }
            if first_seq.is_some_and(|first| first > 1) {
                writeln!(
                    output,
                    "note: the export starts after seq 1, so its first prev_hash was taken \
                     as given; compare it with the hash of seq {} in the live log",
                    first_seq.unwrap_or_default() - 1
                )?;
            }
            Ok(())
        }
        Verification::Broken {
            first_broken_seq,
            reason,
        } => {
            anyhow::bail!(
                "{} does not verify: first broken seq {first_broken_seq}: {reason}",
                args.file.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use stepup_audit::export::export_line;
    use stepup_audit::record::{AuditRecord, Entry, GENESIS_HASH};

    use super::*;

    /// Writes a two-record export, with `edit` applied to its text, to a fresh file.
    fn export_file(name: &str, edit: impl Fn(String) -> String) -> std::io::Result<PathBuf> {
        let entry = |id: &str| Entry {
            event_id: id.into(),
            event_type: "stepup.approval.requested".into(),
            outcome: "requested".into(),
            event_json: format!(r#"{{"id":"{id}"}}"#),
            ..Entry::default()
        };
        let first = AuditRecord::seal(entry("e1"), 1, 10, GENESIS_HASH.into());
        let second = AuditRecord::seal(entry("e2"), 2, 11, first.hash.clone());
        let text = format!("{}{}", export_line(&first), export_line(&second));

        let path = std::env::temp_dir().join(format!("stepup-{}-{name}.jsonl", std::process::id()));
        std::fs::write(&path, edit(text))?;
        Ok(path)
    }

    #[test]
    fn intact_export_prints_its_range() -> anyhow::Result<()> {
        let file = export_file("intact", |text| text)?;
        let mut output = Vec::new();

        let result = verify(&AuditVerifyArgs { file: file.clone() }, &mut output);
        std::fs::remove_file(&file)?;

        result?;
        let printed = String::from_utf8(output)?;
        assert!(
            printed.starts_with("ok: 2 records, seq 1 to 2"),
            "{printed}"
        );
        Ok(())
    }

    #[test]
    fn edited_export_fails_with_the_broken_seq() -> anyhow::Result<()> {
        let file = export_file("edited", |text| text.replace("\"e2\"", "\"e3\""))?;

        let result = verify(&AuditVerifyArgs { file: file.clone() }, &mut Vec::new());
        std::fs::remove_file(&file)?;

        let message = result.err().map(|error| format!("{error:#}"));
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("first broken seq 2")),
            "{message:?}"
        );
        Ok(())
    }
}
