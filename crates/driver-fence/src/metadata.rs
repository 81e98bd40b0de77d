//! Parsing a fence agent's `metadata` XML (the `<resource-agent>` format of the fence-agents project and Pacemaker's stonith) into the port's [`FenceAgentMetadata`].

use hafen_driver_api::fence::{FenceAgentMetadata, FenceParameterSpec};
use roxmltree::{Document, Node, ParsingOptions};

/// Far above any real agent's metadata (fence_ipmilan's has about a thousand nodes).
const NODES_LIMIT: u32 = 100_000;

pub(crate) fn parse_metadata(agent: &str, xml: &str) -> Result<FenceAgentMetadata, String> {
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
            .map(|action| {
                action
                    .attribute("name")
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| "an <action> has no name".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if actions.is_empty() {
        return Err("no <action> is declared".to_owned());
    }
    // fence-agents puts the short description in an attribute, Pacemaker's own agents
    // in an element.
    let short_description = root
        .attribute("shortdesc")
        .map(str::to_owned)
        .unwrap_or_else(|| text_of(root, "shortdesc"));
    Ok(FenceAgentMetadata {
        agent: agent.to_owned(),
        short_description,
        long_description: text_of(root, "longdesc"),
        parameters,
        actions,
    })
}

fn parse_parameter(node: Node<'_, '_>) -> Result<FenceParameterSpec, String> {
    let name = node
        .attribute("name")
        .filter(|name| !name.is_empty())
        .ok_or("a <parameter> has no name")?
        .to_owned();
    let flag = |attribute: &str| {
        node.attribute(attribute)
            .is_some_and(|value| matches!(value.trim(), "1" | "true" | "yes"))
    };
    let content = child(node, "content");
    Ok(FenceParameterSpec {
        required: flag("required"),
        deprecated: flag("deprecated"),
        obsoletes: node
            .attribute("obsoletes")
            .filter(|name| !name.is_empty())
            .map(str::to_owned),
        content_type: content
            .and_then(|content| content.attribute("type"))
            .unwrap_or("string")
            .to_owned(),
        default: content
            .and_then(|content| content.attribute("default"))
            .map(str::to_owned),
        short_description: text_of(node, "shortdesc"),
        name,
    })
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
fn text_of(node: Node<'_, '_>, name: &str) -> String {
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

    // Proves the fence-agents layout is read: attribute shortdesc, deprecated and
    // obsoletes flags, content types and defaults, and the action list.
    #[test]
    fn parses_fence_agents_layout() {
        let xml = r#"<?xml version="1.0" ?>
<resource-agent name="fence_x" shortdesc="Fence agent for X" >
<longdesc>Long text.</longdesc>
<parameters>
	<parameter name="ip" unique="0" required="1" obsoletes="ipaddr">
		<getopt mixed="-a, --ip=[ip]" />
		<content type="string"  />
		<shortdesc lang="en">IP address</shortdesc>
	</parameter>
	<parameter name="ipaddr" unique="0" required="1" deprecated="1">
		<content type="integer" default="5" />
	</parameter>
</parameters>
<actions>
	<action name="on" automatic="0"/>
	<action name="off" />
</actions>
</resource-agent>"#;
        let metadata = parse_metadata("fence_x", xml).unwrap();
        assert_eq!(metadata.short_description, "Fence agent for X");
        assert_eq!(metadata.long_description, "Long text.");
        assert_eq!(metadata.actions, ["on", "off"]);
        let ip = metadata.parameter("ip").unwrap();
        assert!(ip.required && !ip.deprecated);
        assert_eq!(ip.obsoletes.as_deref(), Some("ipaddr"));
        assert_eq!(ip.short_description, "IP address");
        let ipaddr = metadata.parameter("ipaddr").unwrap();
        assert!(ipaddr.deprecated);
        assert_eq!(ipaddr.content_type, "integer");
        assert_eq!(ipaddr.default.as_deref(), Some("5"));
    }

    #[test]
    fn refuses_garbage_and_wrong_roots() {
        assert!(parse_metadata("fence_x", "not xml at all").is_err());
        let wrong_root = parse_metadata("fence_x", "<agent/>").unwrap_err();
        assert!(wrong_root.contains("<agent>"), "{wrong_root}");
        let no_actions = parse_metadata("fence_x", "<resource-agent/>").unwrap_err();
        assert!(no_actions.contains("action"), "{no_actions}");
    }
}
