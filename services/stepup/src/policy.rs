//! `stepup policy set|list`: the admin API's policy operations from the command line.

use serde_json::json;

use crate::cli::{AdminArgs, PolicyCommand, SetPolicyArgs};
use crate::provider::AdminClient;

pub async fn run(admin: &AdminArgs, command: PolicyCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(admin)?;
    match command {
        PolicyCommand::Set(args) => set(&client, args).await,
        PolicyCommand::List => list(&client).await,
    }
}

async fn set(client: &AdminClient, args: SetPolicyArgs) -> anyhow::Result<()> {
    let mut body = json!({
        "step_up": !args.no_step_up,
        "allow_self_approval": args.allow_self_approval,
    });
    if let Some(provider) = args.provider {
        body["provider"] = provider.into();
    }
    if let Some(max_age) = args.max_age {
        body["max_age"] = max_age.into();
    }
    if !args.acr_values.is_empty() {
        body["acr_values"] = json!(args.acr_values);
    }
    let path = format!(
        "/admin/policies/{}/{}",
        path_segment(&args.policy_id),
        path_segment(&args.step_id)
    );
    let saved = client.send(reqwest::Method::PUT, &path, Some(body)).await?;
    println!("{}", serde_json::to_string_pretty(&saved)?);
    Ok(())
}

async fn list(client: &AdminClient) -> anyhow::Result<()> {
    let policies = client
        .send(reqwest::Method::GET, "/admin/policies", None)
        .await?;
    println!("{:<24} {:<24} {:<8} PROVIDER", "POLICY", "STEP", "STEP-UP");
    for policy in policies.as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<24} {:<8} {}",
            policy["policy_id"].as_str().unwrap_or(""),
            policy["step_id"].as_str().unwrap_or(""),
            policy["step_up"],
            policy["provider"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

/// Percent-encodes an id for one path segment; `*` (a default policy) stays as it is.
fn path_segment(id: &str) -> String {
    let mut segment = String::new();
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~*".contains(&byte) {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn ids_are_encoded_for_one_segment() {
        assert_eq!(path_segment("prod access/β"), "prod%20access%2F%CE%B2");
        assert_eq!(path_segment("*"), "*");
    }
}
