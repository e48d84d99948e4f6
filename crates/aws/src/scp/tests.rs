use super::*;

const ARN: &str = "arn:aws:rds:us-east-1:111122223333:db:cruddur-db-instance";

fn policy(content: Value) -> Policy {
    Policy {
        id: "p-1".into(),
        name: "guard".into(),
        target: "111122223333".into(),
        content: content.to_string(),
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn glob_matches_like_iam() {
    for (p, t, want) in [
        ("rds:*", "rds:deletedbinstance", true),
        ("rds:delete*", "rds:deletedbinstance", true),
        ("rds:modify*", "rds:deletedbinstance", false),
        ("arn:aws:rds:*:*:db:cruddur-*", ARN, true),
        ("arn:aws:rds:*:*:db:other", ARN, false),
        ("us-?ast-1", "us-east-1", true),
        ("*", "", true),
    ] {
        assert_eq!(glob(p, t), want, "glob({p:?}, {t:?})");
    }
}

#[test]
fn the_template_satisfies_every_part() {
    let regions = vec!["eu-west-1".to_owned(), "us-east-1".to_owned()];
    for tag in [None, Some(("environment", "production"))] {
        let doc = template(ARN, tag, &regions);
        let instance_tags = tags(&[("environment", "production")]);
        let j = judge(
            &[policy(doc)],
            Instance {
                arn: ARN,
                tags: &instance_tags,
            },
            &regions,
        );
        assert!(j.protects_production.is_ok(), "{tag:?}: {j:?}");
        assert!(j.region_lock.is_ok(), "{tag:?}: {j:?}");
        assert!(j.requires_encryption.is_ok(), "{tag:?}: {j:?}");
    }
    // A tag-based policy does not protect an instance without the tag.
    let doc = template(ARN, Some(("environment", "production")), &regions);
    let j = judge(
        &[policy(doc)],
        Instance {
            arn: ARN,
            tags: &[],
        },
        &regions,
    );
    assert!(j.protects_production.is_err(), "{j:?}");
    // A lock admitting a region outside the allowed list fails.
    let j = judge(
        &[policy(template(ARN, None, &regions))],
        Instance {
            arn: ARN,
            tags: &[],
        },
        &["us-east-1".to_owned()],
    );
    let err = j.region_lock.unwrap_err();
    assert!(err.contains("eu-west-1 is not among"), "{err}");
}

#[test]
fn partial_or_unknown_statements_do_not_count() {
    let cases = [
        (
            "deletion only",
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Deny",
                "Action": "rds:DeleteDBInstance", "Resource": "*"}}),
        ),
        (
            "an allow",
            json!({"Statement": [{"Effect": "Allow", "Action": "rds:*", "Resource": "*"}]}),
        ),
        (
            "another instance",
            json!({"Statement": [{"Effect": "Deny", "Action": "rds:*",
                "Resource": "arn:aws:rds:*:*:db:other"}]}),
        ),
        (
            "a condition not understood",
            json!({"Statement": [{"Effect": "Deny", "Action": "rds:*", "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}}]}),
        ),
        (
            "an encryption condition alongside another",
            json!({"Statement": [{"Effect": "Deny", "Action": "rds:*", "Resource": "*",
                "Condition": {"Bool": {"rds:StorageEncrypted": "false",
                                       "aws:SecureTransport": "false"}}}]}),
        ),
    ];
    for (name, doc) in cases {
        let j = judge(
            &[policy(doc)],
            Instance {
                arn: ARN,
                tags: &[],
            },
            &[],
        );
        assert!(j.protects_production.is_err(), "{name}: {j:?}");
        assert!(j.region_lock.is_err(), "{name}: {j:?}");
        assert!(j.requires_encryption.is_err(), "{name}: {j:?}");
    }
    // A blanket deny of rds:* on every resource protects (and more).
    let blanket = json!({"Statement": [{"Effect": "Deny", "Action": "rds:*", "Resource": "*"}]});
    let j = judge(
        &[policy(blanket)],
        Instance {
            arn: ARN,
            tags: &[],
        },
        &[],
    );
    assert!(j.protects_production.is_ok(), "{j:?}");
}
