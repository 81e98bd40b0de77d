//! Parsing an agent's `meta-data` XML (OCF 1.0 and 1.1) into the port's [`AgentMetadata`], and Pacemaker's duration syntax (`20s`, `2min`, `100ms`).

use hafen_driver_api::resource::{
    Action, ActionRole, ActionSpec, AgentMetadata, AgentRef, ParameterSpec, ParameterType,
    parse_boolean,
};
use roxmltree::{Document, Node, ParsingOptions};

/// Far above any real agent's meta-data (IPaddr2's has a few hundred nodes).
const NODES_LIMIT: u32 = 100_000;

pub(crate) fn parse_metadata(agent: &AgentRef, xml: &str) -> Result<AgentMetadata, String> {
    // Agents' meta-data starts with a DOCTYPE line; roxmltree never loads external DTDs.
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: NODES_LIMIT,
    };
    let document = Document::parse_with_options(xml, options).map_err(|error| error.to_string())?;
    let root = document.root_element();
    if root.tag_name().name() != "resource-agent" {
        return Err(format!(
            "root element is <{}>, not <resource-agent>",
            root.tag_name().name()
        ));
    }
    let parameters = match child(root, "parameters") {
        Some(parameters) => children(parameters, "parameter")
            .map(parse_parameter)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let actions = match child(root, "actions") {
        Some(actions) => children(actions, "action")
            .map(parse_action)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(AgentMetadata {
        agent: agent.clone(),
        version: root.attribute("version").map(str::to_owned),
        short_description: description(root, "shortdesc"),
        long_description: description(root, "longdesc"),
        parameters,
        actions,
    })
}

fn parse_parameter(node: Node<'_, '_>) -> Result<ParameterSpec, String> {
    let name = node
        .attribute("name")
        .filter(|name| !name.is_empty())
        .ok_or("a <parameter> has no name")?
        .to_owned();
    let flag = |attribute: &str| {
        node.attribute(attribute)
            .and_then(parse_boolean)
            .unwrap_or(false)
    };
    let content = child(node, "content");
    let type_name = content
        .and_then(|content| content.attribute("type"))
        .unwrap_or("string");
    let parameter_type = match type_name {
        "string" => ParameterType::String,
        "integer" => ParameterType::Integer,
        "boolean" => ParameterType::Boolean,
        "select" => ParameterType::Select {
            values: content
                .into_iter()
                .flat_map(|content| children(content, "option"))
                .filter_map(|option| option.attribute("value"))
                .map(str::to_owned)
                .collect(),
        },
        other => ParameterType::Other {
            name: other.to_owned(),
        },
    };
    Ok(ParameterSpec {
        required: flag("required"),
        unique: flag("unique"),
        reloadable: flag("reloadable"),
        // OCF 1.1 marks deprecation with a child element; older agents with an attribute.
        deprecated: child(node, "deprecated").is_some() || flag("deprecated"),
        parameter_type,
        default: content
            .and_then(|content| content.attribute("default"))
            .map(str::to_owned),
        short_description: description(node, "shortdesc"),
        long_description: description(node, "longdesc"),
        name,
    })
}

fn parse_action(node: Node<'_, '_>) -> Result<ActionSpec, String> {
    let name = node
        .attribute("name")
        .ok_or("an <action> has no name")?
        .to_owned();
    let duration = |attribute: &str| -> Result<Option<u64>, String> {
        match node.attribute(attribute) {
            None => Ok(None),
            Some(text) => parse_duration_ms(text)
                .map(Some)
                .ok_or_else(|| format!("action {name:?} has an invalid {attribute} {text:?}")),
        }
    };
    let role = match node.attribute("role") {
        Some("Promoted" | "Master") => Some(ActionRole::Promoted),
        Some("Unpromoted" | "Slave") => Some(ActionRole::Unpromoted),
        _ => None,
    };
    Ok(ActionSpec {
        action: action_of(&name),
        timeout_ms: duration("timeout")?,
        interval_ms: duration("interval")?,
        depth: node
            .attribute("depth")
            .and_then(|depth| depth.trim().parse().ok()),
        role,
        name,
    })
}

/// OCF 1.1 agents reload parameters with `reload-agent`; OCF 1.0 agents had `reload`.
fn action_of(name: &str) -> Option<Action> {
    match name {
        "reload-agent" | "reload" => Some(Action::Reload),
        other => Action::ALL
            .into_iter()
            .find(|action| action.name() == other),
    }
}

/// A duration as Pacemaker reads it: an integer with an optional unit (`ms`/`msec`,
/// `us`/`usec`, `s`/`sec`, `m`/`min`, `h`/`hr`), seconds when there is none.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let value: u64 = text[..digits_end].parse().ok()?;
    let unit = text[digits_end..].trim().to_ascii_lowercase();
    match unit.as_str() {
        "" | "s" | "sec" => value.checked_mul(1_000),
        "ms" | "msec" => Some(value),
        "us" | "usec" => Some(value / 1_000),
        "m" | "min" => value.checked_mul(60_000),
        "h" | "hr" => value.checked_mul(3_600_000),
        _ => None,
    }
}

fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    children(node, name).next()
}

fn children<'a, 'input>(
    node: Node<'a, 'input>,
    name: &str,
) -> impl Iterator<Item = Node<'a, 'input>> {
    let name = name.to_owned();
    node.children()
        .filter(move |child| child.is_element() && child.tag_name().name() == name)
}

/// English text when the agent offers several languages, else the first.
fn description(node: Node<'_, '_>, name: &str) -> String {
    let candidates: Vec<_> = children(node, name).collect();
    let chosen = candidates
        .iter()
        .find(|candidate| candidate.attribute("lang").is_none_or(|lang| lang == "en"))
        .or(candidates.first());
    chosen
        .and_then(|node| node.text())
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_pacemaker_units() {
        assert_eq!(parse_duration_ms("20s"), Some(20_000));
        assert_eq!(parse_duration_ms("20"), Some(20_000));
        assert_eq!(parse_duration_ms(" 100ms "), Some(100));
        assert_eq!(parse_duration_ms("2min"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1500us"), Some(1));
        assert_eq!(parse_duration_ms("soon"), None);
        assert_eq!(parse_duration_ms("10 parsecs"), None);
    }

    // Proves OCF 1.1 details: select options, deprecation element, roles, reload-agent.
    #[test]
    fn metadata_with_select_roles_and_reload_agent() {
        let xml = r#"<?xml version="1.0"?>
<resource-agent name="t" version="2.0">
  <version>1.1</version>
  <longdesc lang="de">lang</longdesc><longdesc lang="en"> long </longdesc>
  <shortdesc lang="en">short</shortdesc>
  <parameters>
    <parameter name="mode" required="1">
      <content type="select" default="a"><option value="a"/><option value="b"/></content>
    </parameter>
    <parameter name="old"><deprecated/><content type="integer"/></parameter>
  </parameters>
  <actions>
    <action name="monitor" timeout="20s" interval="10s" role="Promoted"/>
    <action name="reload-agent" timeout="10"/>
    <action name="meta-data" timeout="5s"/>
  </actions>
</resource-agent>"#;
        let agent = AgentRef::ocf("test", "t").unwrap();
        let metadata = parse_metadata(&agent, xml).unwrap();
        assert_eq!(metadata.long_description, "long");
        assert_eq!(metadata.version.as_deref(), Some("2.0"));
        let mode = metadata.parameter("mode").unwrap();
        assert!(mode.required);
        assert_eq!(
            mode.parameter_type,
            ParameterType::Select {
                values: vec!["a".to_owned(), "b".to_owned()]
            }
        );
        assert!(metadata.parameter("old").unwrap().deprecated);
        assert_eq!(metadata.default_timeout_ms(Action::Reload), Some(10_000));
        assert_eq!(metadata.default_timeout_ms(Action::MetaData), Some(5_000));
        let monitor = metadata
            .default_monitor(Some(ActionRole::Promoted))
            .unwrap();
        assert_eq!(monitor.interval_ms, Some(10_000));
    }

    #[test]
    fn malformed_metadata_is_refused() {
        let agent = AgentRef::ocf("test", "t").unwrap();
        assert!(parse_metadata(&agent, "<resource-agent><parameters>").is_err());
        assert!(parse_metadata(&agent, "<other/>").is_err());
        let bad_timeout = r#"<resource-agent><actions><action name="start" timeout="later"/></actions></resource-agent>"#;
        let error = parse_metadata(&agent, bad_timeout).unwrap_err();
        assert!(error.contains("start"), "{error}");
    }
}
