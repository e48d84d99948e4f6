//! The environment variables of the AWS toolkit, read by the CLI's
//! `cruddur-db rds` through [`cruddur_db::Settings`]. The standard AWS ones
//! (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, credentials) are the
//! SDK's, read by its own chain.
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_ENDPOINT_URL_EC2` | the EC2 endpoint, for the security-group calls signed here (default: `AWS_ENDPOINT_URL`, else AWS's) |
//! | `CRUDDUR_RDS_ALLOWED_REGIONS` | the regions the production data may be stored in, comma-separated, for `rds audit` and `rds scp-template` (`--allowed-regions` wins; default none) |

use cruddur_db::Variable;

/// The EC2 endpoint override, as the SDK's per-service variables name it.
pub const AWS_ENDPOINT_URL_EC2: Variable = Variable::new(
    "AWS_ENDPOINT_URL_EC2",
    "the EC2 endpoint, for the security-group calls (default: AWS_ENDPOINT_URL, else AWS's)",
);
/// The regions production data may be stored in.
pub const CRUDDUR_RDS_ALLOWED_REGIONS: Variable = Variable::new(
    "CRUDDUR_RDS_ALLOWED_REGIONS",
    "the regions the production data may be stored in, comma-separated (default none)",
);

/// Every variable of the AWS toolkit.
pub const VARIABLES: &[Variable] = &[AWS_ENDPOINT_URL_EC2, CRUDDUR_RDS_ALLOWED_REGIONS];

#[cfg(test)]
mod tests {
    use super::VARIABLES;

    /// The module docs and `.env.sample` name every variable.
    #[test]
    fn every_variable_is_documented() {
        let docs = include_str!("variables.rs");
        let sample = include_str!("../../../.env.sample");
        for var in VARIABLES {
            assert!(
                docs.contains(&format!("//! | `{}` |", var.name())),
                "{var}: module docs"
            );
            assert!(
                sample.contains(&format!("\n#{}=", var.name())),
                "{var}: .env.sample"
            );
        }
    }
}
