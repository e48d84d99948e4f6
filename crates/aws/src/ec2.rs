//! The few EC2 security-group calls the RDS commands need, signed with
//! `aws-sigv4` and sent to the EC2 Query API (version 2016-11-15).
//!
//! The `aws-sdk-ec2` crate would do the same, but takes about 15 minutes and
//! 8 GB to build; these four calls are a few dozen lines each.

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_xml::decode::{Document, ScopedDecoder, XmlDecodeError, try_data};

use super::http::HttpClient;
use crate::error::{Error, Result};

/// The EC2 Query API version these calls are written against.
const API_VERSION: &str = "2016-11-15";

/// One rule of a security group, as `DescribeSecurityGroupRules` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecurityGroupRule {
    /// The rule's id (`sgr-...`); it survives a modification.
    pub rule_id: String,
    /// The group the rule belongs to (`sg-...`).
    pub group_id: String,
    /// Whether this is an outbound rule.
    pub is_egress: bool,
    /// `tcp`, `udp`, `icmp`, or `-1` for all protocols.
    pub protocol: String,
    /// First port of the range (`-1` for all).
    pub from_port: i32,
    /// Last port of the range (`-1` for all).
    pub to_port: i32,
    /// IPv4 source or destination, e.g. `203.0.113.7/32`.
    pub cidr_ipv4: Option<String>,
    /// IPv6 source or destination, e.g. `2001:db8::1/128`.
    pub cidr_ipv6: Option<String>,
    /// Another security group the rule admits.
    pub referenced_group_id: Option<String>,
    /// A managed prefix list the rule admits.
    pub prefix_list_id: Option<String>,
    /// The rule's description.
    pub description: Option<String>,
}

impl SecurityGroupRule {
    /// Whether this inbound or outbound rule lets TCP traffic reach `port`.
    pub fn covers_tcp_port(&self, port: u16) -> bool {
        let port = i32::from(port);
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => {
                (self.from_port == -1 && self.to_port == -1)
                    || (self.from_port <= port && port <= self.to_port)
            }
            _ => false,
        }
    }

    /// Where the rule admits traffic from, as one readable string.
    pub fn source(&self) -> String {
        self.cidr_ipv4
            .clone()
            .or_else(|| self.cidr_ipv6.clone())
            .or_else(|| self.referenced_group_id.clone())
            .or_else(|| self.prefix_list_id.clone())
            .unwrap_or_else(|| "(nothing)".to_owned())
    }

    /// Whether the source is the whole IPv4 or IPv6 internet.
    pub fn open_to_world(&self) -> bool {
        self.cidr_ipv4.as_deref() == Some("0.0.0.0/0") || self.cidr_ipv6.as_deref() == Some("::/0")
    }

    /// Whether the source is exactly one address (`/32` or `/128`).
    pub fn single_address(&self) -> bool {
        self.cidr_ipv4
            .as_deref()
            .is_some_and(|c| c.ends_with("/32"))
            || self
                .cidr_ipv6
                .as_deref()
                .is_some_and(|c| c.ends_with("/128"))
    }
}

/// An inbound TCP rule for one port from one CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    /// The port (from and to).
    pub port: u16,
    /// The source, e.g. `203.0.113.7/32` or `2001:db8::1/128`.
    pub cidr: String,
    /// The rule's description (EC2 allows up to 255 characters).
    pub description: Option<String>,
}

impl IngressRule {
    fn is_ipv6(&self) -> bool {
        self.cidr.contains(':')
    }
}

/// A client for the EC2 Query API that signs each request with SigV4.
#[derive(Clone)]
pub struct Ec2Client {
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    http: HttpClient,
}

impl std::fmt::Debug for Ec2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Client")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Ec2Client {
    /// A client for `endpoint` (e.g. `https://ec2.us-east-1.amazonaws.com`)
    /// signing for `region` with `credentials`.
    pub(crate) fn new(
        endpoint: String,
        region: String,
        credentials: SharedCredentialsProvider,
        http: HttpClient,
    ) -> Self {
        Self {
            endpoint,
            region,
            credentials,
            http,
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every rule of the security group `group_id`, inbound and outbound.
    pub async fn describe_security_group_rules(
        &self,
        group_id: &str,
    ) -> Result<Vec<SecurityGroupRule>> {
        let mut rules = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let mut params = vec![
                ("Filter.1.Name".to_owned(), "group-id".to_owned()),
                ("Filter.1.Value.1".to_owned(), group_id.to_owned()),
            ];
            if let Some(token) = &next_token {
                params.push(("NextToken".to_owned(), token.clone()));
            }
            let body = self.call("DescribeSecurityGroupRules", params).await?;
            let (page, token) = parse_rules_response(&body)
                .map_err(|e| xml_error("DescribeSecurityGroupRules", &e))?;
            rules.extend(page);
            match token {
                Some(t) if !t.is_empty() => next_token = Some(t),
                _ => break,
            }
        }
        Ok(rules)
    }

    /// Replaces the rule `rule_id` of `group_id` with `rule` (inbound TCP).
    pub async fn modify_ingress_rule(
        &self,
        group_id: &str,
        rule_id: &str,
        rule: &IngressRule,
    ) -> Result<()> {
        let prefix = "SecurityGroupRule.1.SecurityGroupRule";
        let mut params = vec![
            ("GroupId".to_owned(), group_id.to_owned()),
            (
                "SecurityGroupRule.1.SecurityGroupRuleId".to_owned(),
                rule_id.to_owned(),
            ),
            (format!("{prefix}.IpProtocol"), "tcp".to_owned()),
            (format!("{prefix}.FromPort"), rule.port.to_string()),
            (format!("{prefix}.ToPort"), rule.port.to_string()),
        ];
        let cidr_key = if rule.is_ipv6() {
            "CidrIpv6"
        } else {
            "CidrIpv4"
        };
        params.push((format!("{prefix}.{cidr_key}"), rule.cidr.clone()));
        if let Some(d) = &rule.description {
            params.push((format!("{prefix}.Description"), d.clone()));
        }
        let body = self.call("ModifySecurityGroupRules", params).await?;
        match find_text(&body, "return").as_deref() {
            Some("true") => Ok(()),
            other => Err(Error::Api {
                source: None,
                operation: "ModifySecurityGroupRules".into(),
                code: None,
                message: format!("EC2 answered return={}", other.unwrap_or("(missing)")),
            }),
        }
    }

    /// Adds `rule` to `group_id` and returns the new rule's id.
    pub async fn authorize_ingress_rule(
        &self,
        group_id: &str,
        rule: &IngressRule,
    ) -> Result<String> {
        let mut params = vec![
            ("GroupId".to_owned(), group_id.to_owned()),
            ("IpPermissions.1.IpProtocol".to_owned(), "tcp".to_owned()),
            ("IpPermissions.1.FromPort".to_owned(), rule.port.to_string()),
            ("IpPermissions.1.ToPort".to_owned(), rule.port.to_string()),
        ];
        let (range, cidr_key) = if rule.is_ipv6() {
            ("IpPermissions.1.Ipv6Ranges.1", "CidrIpv6")
        } else {
            ("IpPermissions.1.IpRanges.1", "CidrIp")
        };
        params.push((format!("{range}.{cidr_key}"), rule.cidr.clone()));
        if let Some(d) = &rule.description {
            params.push((format!("{range}.Description"), d.clone()));
        }
        let body = self.call("AuthorizeSecurityGroupIngress", params).await?;
        let (rules, _) = parse_rules_response(&body)
            .map_err(|e| xml_error("AuthorizeSecurityGroupIngress", &e))?;
        rules
            .into_iter()
            .next()
            .map(|r| r.rule_id)
            .ok_or_else(|| Error::Api {
                source: None,
                operation: "AuthorizeSecurityGroupIngress".into(),
                code: None,
                message: "the answer names no new rule".into(),
            })
    }

    /// Creates a security group (in the default VPC unless `vpc_id` is given)
    /// and returns its id. A new group has no inbound rules.
    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
    ) -> Result<String> {
        let mut params = vec![
            ("GroupName".to_owned(), name.to_owned()),
            ("GroupDescription".to_owned(), description.to_owned()),
        ];
        if let Some(vpc) = vpc_id {
            params.push(("VpcId".to_owned(), vpc.to_owned()));
        }
        let body = self.call("CreateSecurityGroup", params).await?;
        find_text(&body, "groupId").ok_or_else(|| Error::Api {
            source: None,
            operation: "CreateSecurityGroup".into(),
            code: None,
            message: "the answer names no group id".into(),
        })
    }

    /// Sends one signed Query API call and returns the body of a 2xx answer;
    /// an error answer becomes [`Error::Aws`] with EC2's code and message.
    async fn call(&self, action: &str, params: Vec<(String, String)>) -> Result<String> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action);
        form.append_pair("Version", API_VERSION);
        for (k, v) in &params {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let uri = format!("{}/", self.endpoint.trim_end_matches('/'));
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let response = self
            .http
            .signed_post(
                action,
                &self.credentials,
                &self.region,
                "ec2",
                &uri,
                &[("content-type", content_type)],
                body,
            )
            .await?;
        if (200..300).contains(&response.status) {
            return Ok(response.body);
        }
        Err(Error::Api {
            source: None,
            operation: action.to_owned(),
            code: find_text(&response.body, "Code").or(Some(response.status.to_string())),
            message: find_text(&response.body, "Message")
                .unwrap_or_else(|| response.body.chars().take(200).collect()),
        })
    }
}

fn xml_error(operation: &str, e: &XmlDecodeError) -> Error {
    Error::Api {
        source: None,
        operation: operation.to_owned(),
        code: None,
        message: format!("unexpected answer: {e}"),
    }
}

/// The text of the first element named `name`, anywhere in `xml`.
fn find_text(xml: &str, name: &str) -> Option<String> {
    let mut doc = Document::new(xml);
    while let Some(start) = doc.next_start_element() {
        if start.matches(name) {
            let mut scope = doc.scoped_to(start);
            return try_data(&mut scope).ok().map(|t| t.into_owned());
        }
    }
    None
}

/// The rules in a `securityGroupRuleSet`, and the `nextToken` if any.
fn parse_rules_response(
    xml: &str,
) -> std::result::Result<(Vec<SecurityGroupRule>, Option<String>), XmlDecodeError> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element()?;
    let mut rules = Vec::new();
    let mut next_token = None;
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("securityGroupRuleSet") {
            while let Some(mut item) = tag.next_tag() {
                if item.start_el().matches("item") {
                    rules.push(parse_rule(&mut item)?);
                }
            }
        } else if tag.start_el().matches("nextToken") {
            next_token = Some(try_data(&mut tag)?.into_owned());
        }
    }
    Ok((rules, next_token))
}

fn parse_rule(
    item: &mut ScopedDecoder<'_, '_>,
) -> std::result::Result<SecurityGroupRule, XmlDecodeError> {
    let mut rule = SecurityGroupRule {
        rule_id: String::new(),
        group_id: String::new(),
        is_egress: false,
        protocol: String::new(),
        from_port: -1,
        to_port: -1,
        cidr_ipv4: None,
        cidr_ipv6: None,
        referenced_group_id: None,
        prefix_list_id: None,
        description: None,
    };
    let port = |text: &str| {
        text.trim()
            .parse::<i32>()
            .map_err(|_| XmlDecodeError::custom(format!("bad port `{text}`")))
    };
    while let Some(mut field) = item.next_tag() {
        let name = field.start_el().local().to_owned();
        match name.as_str() {
            "tagSet" => {}
            "referencedGroupInfo" => {
                while let Some(mut inner) = field.next_tag() {
                    if inner.start_el().matches("groupId") {
                        rule.referenced_group_id = Some(try_data(&mut inner)?.into_owned());
                    }
                }
            }
            _ => {
                let text = try_data(&mut field)?.into_owned();
                match name.as_str() {
                    "securityGroupRuleId" => rule.rule_id = text,
                    "groupId" => rule.group_id = text,
                    "isEgress" => rule.is_egress = text == "true",
                    "ipProtocol" => rule.protocol = text,
                    "fromPort" => rule.from_port = port(&text)?,
                    "toPort" => rule.to_port = port(&text)?,
                    "cidrIpv4" => rule.cidr_ipv4 = Some(text),
                    "cidrIpv6" => rule.cidr_ipv6 = Some(text),
                    "prefixListId" => rule.prefix_list_id = Some(text),
                    "description" => rule.description = Some(text),
                    _ => {}
                }
            }
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_errors() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeSecurityGroupRulesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r</requestId>
  <securityGroupRuleSet>
    <item>
      <securityGroupRuleId>sgr-1</securityGroupRuleId><groupId>sg-1</groupId>
      <isEgress>false</isEgress><ipProtocol>tcp</ipProtocol>
      <fromPort>5432</fromPort><toPort>5432</toPort>
      <cidrIpv4>203.0.113.7/32</cidrIpv4><description>a &amp; b</description><tagSet/>
    </item>
    <item>
      <securityGroupRuleId>sgr-2</securityGroupRuleId><groupId>sg-1</groupId>
      <isEgress>false</isEgress><ipProtocol>-1</ipProtocol><fromPort>-1</fromPort><toPort>-1</toPort>
      <referencedGroupInfo><groupId>sg-2</groupId><userId>1</userId></referencedGroupInfo>
    </item>
  </securityGroupRuleSet>
  <nextToken>t</nextToken>
</DescribeSecurityGroupRulesResponse>"#;
        let (rules, token) = parse_rules_response(xml).unwrap();
        assert_eq!(token.as_deref(), Some("t"));
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(rules[0].rule_id, "sgr-1");
        assert_eq!(rules[0].description.as_deref(), Some("a & b"));
        assert!(rules[0].single_address() && rules[0].covers_tcp_port(5432));
        assert!(!rules[0].covers_tcp_port(5433));
        assert_eq!(rules[1].referenced_group_id.as_deref(), Some("sg-2"));
        assert!(rules[1].covers_tcp_port(5432) && !rules[1].single_address());

        let err = "<Response><Errors><Error><Code>InvalidGroup.NotFound</Code>\
                   <Message>no such group</Message></Error></Errors></Response>";
        assert_eq!(
            find_text(err, "Code").as_deref(),
            Some("InvalidGroup.NotFound")
        );
        assert_eq!(find_text(err, "Message").as_deref(), Some("no such group"));
    }
}
