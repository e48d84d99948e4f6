//! Who may reach the database port: [`allow_ip`] points the security
//! group's inbound rule at one address.

use std::net::IpAddr;

use super::validation::{validate_group_id, validate_prefixed_id};
use crate::Aws;
use crate::address::{parse_single_address, single_address_cidr};
use crate::ec2::{IngressRule, SecurityGroupRule};
use crate::error::{Error, Remedy, Result};

/// What [`allow_ip`] is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowIp {
    /// The security group (`sg-...`).
    pub group_id: String,
    /// The rule to change (`sgr-...`), which must hold a block of the
    /// address's family; when `None`, the group's one inbound rule for the
    /// port of that family is changed, or a rule is added when there is none.
    pub rule_id: Option<String>,
    /// The one address to admit.
    pub address: IpAddr,
    /// The database port (default [`DEFAULT_PORT`](super::DEFAULT_PORT)).
    pub port: u16,
    /// The rule's description.
    pub description: Option<String>,
}

/// What [`allow_ip`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AllowIpOutcome {
    /// The security group.
    pub group_id: String,
    /// The rule now admitting the address.
    pub rule_id: String,
    /// The admitted block (`/32` or `/128`).
    pub cidr: String,
    /// What the rule admitted before, when it existed.
    pub previous_source: Option<String>,
    /// Whether the rule was added rather than changed.
    pub created: bool,
}

/// Points the inbound rule for the database port at exactly one address
/// (the original `rds-update-sg-rule`), then reads the rule back to confirm.
pub async fn allow_ip(aws: &Aws, request: &AllowIp) -> Result<AllowIpOutcome> {
    validate_group_id(&request.group_id)?;
    if let Some(rule) = &request.rule_id {
        validate_prefixed_id("security group rule id", rule, "sgr-")?;
    }
    // The address is re-checked here so that a caller cannot hand in
    // 0.0.0.0 or :: through the typed field.
    let address = parse_single_address(&request.address.to_string())?;
    let cidr = single_address_cidr(address);
    let rule = IngressRule {
        port: request.port,
        cidr: cidr.clone(),
        description: request.description.clone(),
    };
    let rules = aws
        .ec2
        .describe_security_group_rules(&request.group_id)
        .await?;
    // IPv4 and IPv6 rules are kept apart: a rule is only ever moved to an
    // address of its own family, and a dual-stack machine gets one of each.
    let same_family = |r: &SecurityGroupRule| match address {
        IpAddr::V4(_) => r.cidr_ipv4.is_some(),
        IpAddr::V6(_) => r.cidr_ipv6.is_some(),
    };
    let target: Option<&SecurityGroupRule> = match &request.rule_id {
        Some(id) => {
            let existing = rules
                .iter()
                .find(|r| &r.rule_id == id && !r.is_egress)
                .ok_or_else(|| Error::InvalidInput {
                    what: "security group rule id",
                    input: id.clone(),
                    reason: format!("no inbound rule with that id in {}", request.group_id),
                    remedy: None,
                })?;
            if !same_family(existing) {
                return Err(Error::InvalidInput {
                    what: "security group rule id",
                    input: id.clone(),
                    reason: format!(
                        "the rule admits {}, not an {} block; name no rule to add one for {}",
                        existing.source(),
                        if address.is_ipv4() { "IPv4" } else { "IPv6" },
                        cidr
                    ),
                    remedy: Some(Remedy::OmitTheRule),
                });
            }
            Some(existing)
        }
        None => {
            let candidates: Vec<&SecurityGroupRule> = rules
                .iter()
                .filter(|r| {
                    !r.is_egress
                        && r.protocol == "tcp"
                        && r.from_port == i32::from(request.port)
                        && r.to_port == i32::from(request.port)
                        && same_family(r)
                })
                .collect();
            match candidates.as_slice() {
                [] => None,
                [one] => Some(*one),
                many => {
                    return Err(Error::InvalidInput {
                        what: "security group",
                        input: request.group_id.clone(),
                        reason: format!(
                            "it has {} inbound rules for port {}; name one of them ({})",
                            many.len(),
                            request.port,
                            many.iter()
                                .map(|r| format!("{} {}", r.rule_id, r.source()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        remedy: Some(Remedy::NameARule),
                    });
                }
            }
        }
    };
    let (rule_id, previous_source, created) = match target {
        Some(existing) => {
            aws.ec2
                .modify_ingress_rule(&request.group_id, &existing.rule_id, &rule)
                .await?;
            (existing.rule_id.clone(), Some(existing.source()), false)
        }
        None => {
            let id = aws
                .ec2
                .authorize_ingress_rule(&request.group_id, &rule)
                .await?;
            (id, None, true)
        }
    };
    let after = aws
        .ec2
        .describe_security_group_rules(&request.group_id)
        .await?;
    let confirmed = after.iter().any(|r| {
        r.rule_id == rule_id
            && r.covers_tcp_port(request.port)
            && (r.cidr_ipv4.as_deref() == Some(&cidr) || r.cidr_ipv6.as_deref() == Some(&cidr))
    });
    if !confirmed {
        return Err(Error::Api {
            source: None,
            operation: "DescribeSecurityGroupRules".into(),
            code: None,
            message: format!("rule {rule_id} does not admit {cidr} after the change"),
        });
    }
    Ok(AllowIpOutcome {
        group_id: request.group_id.clone(),
        rule_id,
        cidr,
        previous_source,
        created,
    })
}
