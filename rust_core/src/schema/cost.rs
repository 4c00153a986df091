//! A bound on the work of one validation, measured before the validator runs.
//!
//! The `jsonschema` crate has no step budget, and applicators that evaluate several subschemas
//! against one value (`allOf`, `anyOf`, `oneOf`, `if`/`then`/`else`, `dependentSchemas`) over a
//! recursive `$ref` multiply their branches along the answer's depth: a 100-byte schema and a
//! 40-byte answer nested 20 deep take a minute. So a schema is also compiled into a [`CostGraph`]:
//! one node per subschema, *same-value* edges (applicators, `$ref`s, `not`...) and *child* edges
//! labelled with the children they apply to (`properties` by name, `items` to every item...).
//! [`CostGraph::measure`] walks the answer with it and counts every (subschema, value) evaluation a
//! full validation could make, with no short cut: an upper bound of the crate's work (which stops
//! `anyOf` at the first match), cut off as soon as it passes the budget, so measuring costs at
//! most the budget. References resolve over-approximately (a local pointer against both the
//! document and its nearest `$id` resource, an anchor to every node of that name, any other URI to
//! every resource), which can only count more. A same-value cycle counts once, as the crate cuts it.
use std::collections::HashMap;

use serde_json::Value;

/// Deepest nesting of evaluations measured (subschemas along the answer's depth); deeper is over
/// budget, which also keeps the validator's own recursion well inside a thread's stack.
pub const MAX_FRAMES: usize = 2048;

/// What a child edge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    /// The member of this name (`properties`).
    Prop(String),
    /// Every member's value (`patternProperties`, `additionalProperties`, `unevaluatedProperties`).
    AnyProp,
    /// Every member's name, a string (`propertyNames`).
    Key,
    /// The item at this index (`prefixItems`, a draft-7 `items` array).
    Index(usize),
    /// Every item (`items`, `additionalItems`, `contains`, `unevaluatedItems`).
    AnyItem,
}

/// The subschemas of a schema and how they apply to an answer's values.
#[derive(Debug, Default)]
pub struct CostGraph {
    /// Per node: the nodes applied to the same value.
    same: Vec<Vec<u32>>,
    /// Per node: the nodes applied to its value's children.
    child: Vec<Vec<(Label, u32)>>,
}

/// The JSON pointer segment of `key` (`~` -> `~0`, `/` -> `~1`).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `%XX` escapes of a URI fragment decoded (a bad escape stays as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every object and boolean of the schema document, by JSON pointer, with what references need.
struct Index<'a> {
    nodes: Vec<&'a Value>,
    /// Per node: its pointer and the node of its nearest enclosing resource (`$id`), itself included.
    pointers: Vec<String>,
    resource: Vec<u32>,
    by_pointer: HashMap<String, u32>,
    /// Resources (`$id`, `id`) and anchors (`$anchor`, `$dynamicAnchor`, a draft-7 `"$id": "#a"`).
    resources: Vec<u32>,
    anchors: HashMap<String, Vec<u32>>,
    recursive_anchors: Vec<u32>,
}

impl<'a> Index<'a> {
    fn new(schema: &'a Value) -> Self {
        let mut index = Index {
            nodes: Vec::new(),
            pointers: Vec::new(),
            resource: Vec::new(),
            by_pointer: HashMap::new(),
            resources: vec![0],
            anchors: HashMap::new(),
            recursive_anchors: Vec::new(),
        };
        index.add(schema, String::new(), 0);
        index
    }

    fn add(&mut self, value: &'a Value, pointer: String, parent_resource: u32) {
        if !matches!(value, Value::Object(_) | Value::Bool(_)) {
            if let Value::Array(items) = value {
                for (i, item) in items.iter().enumerate() {
                    self.add(item, format!("{pointer}/{i}"), parent_resource);
                }
            }
            return;
        }
        let id = self.nodes.len() as u32;
        let mut resource = parent_resource;
        if let Value::Object(map) = value {
            for key in ["$id", "id"] {
                match map.get(key).and_then(Value::as_str) {
                    Some(anchor) if anchor.starts_with('#') => {
                        self.anchors
                            .entry(anchor[1..].to_owned())
                            .or_default()
                            .push(id);
                    }
                    Some(_) => {
                        resource = id;
                        if id != 0 {
                            self.resources.push(id);
                        }
                    }
                    None => {}
                }
            }
            for key in ["$anchor", "$dynamicAnchor"] {
                if let Some(anchor) = map.get(key).and_then(Value::as_str) {
                    self.anchors.entry(anchor.to_owned()).or_default().push(id);
                }
            }
            if map.get("$recursiveAnchor") == Some(&Value::Bool(true)) {
                self.recursive_anchors.push(id);
            }
        }
        self.nodes.push(value);
        self.pointers.push(pointer.clone());
        self.resource.push(resource);
        self.by_pointer.insert(pointer.clone(), id);
        if let Value::Object(map) = value {
            for (key, child) in map {
                self.add(child, format!("{pointer}/{}", escape(key)), resource);
            }
        }
    }

    /// The node at `pointer` below the node `base`.
    fn at(&self, base: u32, pointer: &str) -> Option<u32> {
        let full = format!("{}{pointer}", self.pointers[base as usize]);
        self.by_pointer.get(&full).copied()
    }

    /// Every node the reference `uri` (of the keyword `keyword`) in node `from` may resolve to.
    fn resolve(&self, keyword: &str, uri: &str, from: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let (base, fragment) = match uri.split_once('#') {
            Some((base, fragment)) => (base, percent_decode(fragment)),
            None => (uri, String::new()),
        };
        let pointer_or_anchor = |base_nodes: &[u32], out: &mut Vec<u32>| {
            if fragment.is_empty() || fragment.starts_with('/') {
                out.extend(base_nodes.iter().filter_map(|&b| self.at(b, &fragment)));
            } else {
                out.extend(self.anchors.get(&fragment).into_iter().flatten().copied());
            }
        };
        if base.is_empty() {
            pointer_or_anchor(&[0, self.resource[from as usize]], &mut out);
        } else {
            pointer_or_anchor(&self.resources, &mut out);
        }
        if keyword != "$ref" {
            // dynamic references may land on any resource root or dynamic anchor of the document
            out.extend(self.resources.iter().copied());
            out.extend(self.recursive_anchors.iter().copied());
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl CostGraph {
    /// The graph of `schema`.
    ///
    /// # Errors
    /// The reference (keyword and value) when a `$ref` resolves to no node the graph knows: its
    /// cost could not be bounded (the validator would not compile it either).
    pub fn new(schema: &Value) -> Result<Self, String> {
        let index = Index::new(schema);
        let mut graph = CostGraph {
            same: vec![Vec::new(); index.nodes.len()],
            child: vec![Vec::new(); index.nodes.len()],
        };
        for (id, value) in index.nodes.iter().enumerate() {
            let Value::Object(map) = value else { continue };
            let node = |key: &str| {
                index
                    .by_pointer
                    .get(&format!("{}/{key}", index.pointers[id]))
            };
            let mut same = Vec::new();
            let mut child = Vec::new();
            for (keyword, value) in map {
                let key = escape(keyword);
                match (keyword.as_str(), value) {
                    ("$ref" | "$dynamicRef" | "$recursiveRef", Value::String(uri)) => {
                        let targets = index.resolve(keyword, uri, id as u32);
                        if targets.is_empty() {
                            return Err(format!("{keyword} {uri:?}"));
                        }
                        same.extend(targets);
                    }
                    ("not" | "if" | "then" | "else", _) => same.extend(node(&key)),
                    ("allOf" | "anyOf" | "oneOf", Value::Array(items)) => {
                        same.extend((0..items.len()).filter_map(|i| node(&format!("{key}/{i}"))));
                    }
                    ("dependentSchemas" | "dependencies", Value::Object(members)) => {
                        same.extend(
                            members
                                .keys()
                                .filter_map(|m| node(&format!("{key}/{}", escape(m)))),
                        );
                    }
                    ("properties", Value::Object(members)) => {
                        for name in members.keys() {
                            if let Some(&t) = node(&format!("{key}/{}", escape(name))) {
                                child.push((Label::Prop(name.clone()), t));
                            }
                        }
                    }
                    ("patternProperties", Value::Object(members)) => {
                        for name in members.keys() {
                            if let Some(&t) = node(&format!("{key}/{}", escape(name))) {
                                child.push((Label::AnyProp, t));
                            }
                        }
                    }
                    ("items" | "prefixItems", Value::Array(items)) => {
                        for i in 0..items.len() {
                            if let Some(&t) = node(&format!("{key}/{i}")) {
                                child.push((Label::Index(i), t));
                            }
                        }
                    }
                    ("additionalProperties" | "unevaluatedProperties", _) => {
                        child.extend(node(&key).map(|&t| (Label::AnyProp, t)));
                    }
                    ("propertyNames", _) => child.extend(node(&key).map(|&t| (Label::Key, t))),
                    ("items" | "additionalItems" | "contains" | "unevaluatedItems", _) => {
                        child.extend(node(&key).map(|&t| (Label::AnyItem, t)));
                    }
                    _ => {}
                }
            }
            if map.contains_key("unevaluatedProperties") || map.contains_key("unevaluatedItems") {
                // what is evaluated is found by evaluating the applicators again: count them twice
                let again = same.clone();
                same.extend(again);
            }
            graph.same[id] = same;
            graph.child[id] = child;
        }
        Ok(graph)
    }

    /// The evaluations (subschema, value) a full validation of `instance` makes, if at most
    /// `budget` and nested at most [`MAX_FRAMES`] deep; `None` past either bound.
    #[must_use]
    pub fn measure(&self, instance: &Value, budget: u64) -> Option<u64> {
        if self.same.is_empty() {
            return Some(1);
        }
        let mut walk = Walk {
            graph: self,
            steps: 0,
            budget,
            active: vec![0; self.same.len()],
            serial: 0,
            frames: 0,
        };
        walk.value(0, instance).then_some(walk.steps)
    }
}

/// One measurement: the count so far, and which nodes are being evaluated on which value.
struct Walk<'g> {
    graph: &'g CostGraph,
    steps: u64,
    budget: u64,
    /// Per node: the serial of the value it is being evaluated on (0: none), to cut cycles.
    active: Vec<u64>,
    serial: u64,
    frames: usize,
}

/// The value a `propertyNames` subschema sees: a string, which has no children (any leaf will do).
static KEY: Value = Value::Null;

impl Walk<'_> {
    /// Evaluates `node` on a value not yet seen on this path; false once over a bound.
    fn value(&mut self, node: u32, value: &Value) -> bool {
        self.serial += 1;
        let serial = self.serial;
        self.node(node, value, serial)
    }

    fn node(&mut self, node: u32, value: &Value, serial: u64) -> bool {
        let n = node as usize;
        if self.active[n] == serial {
            return true; // a cycle on the same value
        }
        self.steps += 1;
        if self.steps > self.budget || self.frames >= MAX_FRAMES {
            return false;
        }
        let saved = std::mem::replace(&mut self.active[n], serial);
        self.frames += 1;
        let graph = self.graph;
        let ok = graph.same[n].iter().all(|&t| self.node(t, value, serial))
            && graph.child[n]
                .iter()
                .all(|(label, t)| self.children(label, *t, value));
        self.frames -= 1;
        self.active[n] = saved;
        ok
    }

    /// Evaluates `node` on each child of `value` that `label` names.
    fn children(&mut self, label: &Label, node: u32, value: &Value) -> bool {
        match (label, value) {
            (Label::Prop(name), Value::Object(map)) => {
                map.get(name).is_none_or(|c| self.value(node, c))
            }
            (Label::AnyProp, Value::Object(map)) => map.values().all(|c| self.value(node, c)),
            (Label::Key, Value::Object(map)) => (0..map.len()).all(|_| self.value(node, &KEY)),
            (Label::Index(i), Value::Array(items)) => {
                items.get(*i).is_none_or(|c| self.value(node, c))
            }
            (Label::AnyItem, Value::Array(items)) => items.iter().all(|c| self.value(node, c)),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn measure(schema: Value, instance: Value) -> Option<u64> {
        CostGraph::new(&schema)
            .unwrap()
            .measure(&instance, 1_000_000)
    }

    #[test]
    fn counts_each_subschema_on_each_value_it_applies_to() {
        let schema = json!({"properties": {"a": {"type": "string"}, "b": {"anyOf": [{}, {}]}}});
        assert_eq!(measure(schema.clone(), json!({})), Some(1));
        assert_eq!(measure(schema.clone(), json!({"a": 1})), Some(2));
        assert_eq!(measure(schema, json!({"a": 1, "b": 2, "c": 3})), Some(5));
        let items = json!({"items": {"allOf": [{}, {}]}, "propertyNames": {}});
        assert_eq!(measure(items.clone(), json!([1, 2, 3])), Some(10));
        assert_eq!(measure(items, json!({"x": 1, "y": 2})), Some(3));
    }

    #[test]
    fn references_resolve_and_recursion_follows_the_answer() {
        let list = json!({"$defs": {"node": {"properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"},
                          {"type": "null"}]}}}}, "$ref": "#/$defs/node"});
        let answer = json!({"next": {"next": {"next": null}}});
        // root, node; then per level: next, anyOf/0 ($ref), node, anyOf/1
        assert_eq!(measure(list, answer), Some(2 + 3 * 4));
        let own = json!({"allOf": [{"$ref": "#"}]});
        assert_eq!(measure(own, json!(1)), Some(2)); // the cycle on one value counts once
    }

    #[test]
    fn branching_recursion_grows_exponentially_and_stops_at_the_budget() {
        let schema = json!({"anyOf": [{"items": {"$ref": "#"}}, {"items": {"$ref": "#"}}]});
        let graph = CostGraph::new(&schema).unwrap();
        let mut answer = json!(1);
        for _ in 0..10 {
            answer = json!([answer]);
        }
        let steps = graph.measure(&answer, u64::MAX).unwrap();
        assert!(steps > 1 << 10, "{steps}");
        assert_eq!(graph.measure(&answer, 1000), None);
    }

    #[test]
    fn anchors_resources_and_escapes_resolve() {
        let schema = json!({"$defs": {"a/b": {"$anchor": "x", "type": "string"},
            "r": {"$id": "r.json", "$defs": {"in": {}}, "properties": {"p": {"$ref": "#/$defs/in"}}}},
            "properties": {"a": {"$ref": "#/$defs/a~1b"}, "b": {"$ref": "#x"}, "c": {"$ref": "r.json"},
                           "d": {"$ref": "#/$defs/a%7E1b"}}});
        assert_eq!(
            measure(schema, json!({"a": 1, "b": 1, "c": {"p": 1}, "d": 1})),
            Some(12)
        );
        let missing = json!({"$ref": "#/nowhere"});
        assert_eq!(CostGraph::new(&missing).unwrap_err(), "$ref \"#/nowhere\"");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b%2"), "/a b%2");
        assert_eq!(percent_decode("%7e%zz"), "~%zz");
    }
}
