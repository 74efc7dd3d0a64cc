//! The release as Helm renders it (tools/chart/render.py, Helm's own engine: strict lint, the
//! values schema, then the templates), and what the kubelet makes of a container: its
//! environment from `env` and `envFrom` with the Secrets' data, its program from its image.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use serde_json::Value;

/// The Secrets of the namespace: name → key → value.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// The rendered objects of one release.
pub struct Release {
    objects: Vec<Value>,
}

impl Release {
    /// Renders helm/shop with `value_files` (later files winning, as `helm install -f … -f …`).
    pub fn render(value_files: &[&Path]) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = std::env::var("SHOP_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let output = std::process::Command::new(&python)
            .arg(root.join("tools/chart/render.py"))
            .arg("--release")
            .arg(root.join("helm/shop"))
            .args(value_files)
            .output()
            .unwrap_or_else(|error| panic!("{python} must run tools/chart/render.py: {error}"));
        assert!(
            output.status.success(),
            "rendering the chart failed ({python} needs helm-python-sdk and PyYAML; scripts/test \
             installs them): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            objects: serde_json::from_slice(&output.stdout).expect("render.py prints a JSON array"),
        }
    }

    /// The objects of `kind`.
    pub fn all(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(move |object| object["kind"] == kind)
    }

    /// The objects of `kind` that are Helm hooks of `phase` (`pre-install`, `test`), in the
    /// order Helm runs them (weight, then name).
    pub fn hooks(&self, kind: &str, phase: &str) -> Vec<&Value> {
        let mut hooks: Vec<&Value> = self
            .all(kind)
            .filter(|object| hook_phases(object).any(|p| p == phase))
            .collect();
        hooks.sort_by_key(|object| {
            let weight = object["metadata"]["annotations"]["helm.sh/hook-weight"]
                .as_str()
                .map_or(0, |weight| weight.parse::<i64>().unwrap());
            (weight, name(object).to_owned())
        });
        hooks
    }

    /// The objects of `kind` that are part of the release proper (not hooks).
    pub fn installed(&self, kind: &str) -> Vec<&Value> {
        self.all(kind)
            .filter(|object| hook_phases(object).next().is_none())
            .collect()
    }
}

fn hook_phases(object: &Value) -> impl Iterator<Item = &str> {
    object["metadata"]["annotations"]["helm.sh/hook"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|phase| !phase.is_empty())
}

/// An object's name.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().expect("metadata.name")
}

/// Whether `labels` carry every label of `selector` (a map, as `matchLabels` or a Service's).
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a selector map");
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// What a pod knows of itself (the downward API).
pub struct PodMeta<'a> {
    /// metadata.name.
    pub name: &'a str,
    /// metadata.namespace.
    pub namespace: &'a str,
    /// status.podIP.
    pub ip: Ipv4Addr,
}

/// The environment the kubelet gives `container` of pod `pod`: `envFrom` first, then `env`
/// (a later name replacing an earlier one), `$(NAME)` references expanded. A Secret or a key
/// that does not exist fails the test, as the pod would sit in CreateContainerConfigError,
/// unless the reference is optional.
pub fn container_env(pod: &PodMeta<'_>, container: &Value, secrets: &Secrets) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
        env.retain(|(existing, _)| *existing != key);
        env.push((key, value));
    };
    let secret = |name: &str, optional: bool| -> Option<&BTreeMap<String, String>> {
        let found = secrets.get(name);
        assert!(
            found.is_some() || optional,
            "pod {}: Secret {name} does not exist (CreateContainerConfigError)",
            pod.name
        );
        found
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let Some(reference) = source.get("secretRef") else {
            panic!("pod {}: envFrom {source} names no Secret of this test", pod.name);
        };
        let optional = reference["optional"].as_bool().unwrap_or(false);
        if let Some(data) = secret(reference["name"].as_str().unwrap(), optional) {
            let prefix = source["prefix"].as_str().unwrap_or_default();
            for (key, value) in data {
                set(&mut env, format!("{prefix}{key}"), value.clone());
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let key = var["name"].as_str().expect("env name").to_owned();
        let value = if let Some(value) = var.get("value") {
            expand(value.as_str().expect("a string value"), &env)
        } else if let Some(reference) = var["valueFrom"].get("secretKeyRef") {
            let optional = reference["optional"].as_bool().unwrap_or(false);
            let secret_name = reference["name"].as_str().unwrap();
            let key_name = reference["key"].as_str().unwrap();
            match secret(secret_name, optional).and_then(|data| data.get(key_name)) {
                Some(value) => value.clone(),
                None if optional => continue,
                None => panic!(
                    "pod {}: {key} reads key {key_name}, absent from Secret {secret_name} \
                     (CreateContainerConfigError)",
                    pod.name
                ),
            }
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod.name.to_owned(),
                "metadata.namespace" => pod.namespace.to_owned(),
                "status.podIP" => pod.ip.to_string(),
                other => panic!("pod {}: fieldRef {other} is not emulated", pod.name),
            }
        } else {
            panic!(
                "pod {}: env {var} is not emulated (no ConfigMaps in this test)",
                pod.name
            );
        };
        set(&mut env, key, value);
    }
    env
}

/// `$(NAME)` replaced by an earlier variable's value, as the kubelet does (`$$` escapes).
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(escaped) = rest.strip_prefix("$$") {
            out.push('$');
            rest = escaped;
        } else if let Some((name, after)) = rest.strip_prefix("$(").and_then(|r| r.split_once(')'))
            && let Some((_, found)) = env.iter().find(|(key, _)| key == name)
        {
            out.push_str(found);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The workspace binary an image runs: the last path segment of its repository
/// (`registry.example.com/shop/shop-catalog:1.0` → `shop-catalog`), as the Dockerfile builds one
/// image per binary with `ARG BIN`.
pub fn binary_of(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap();
    let last = without_digest.rsplit('/').next().unwrap();
    last.split(':').next().unwrap()
}

/// A container port by name or number, as a probe or a Service's `targetPort` names it.
pub fn container_port(container: &Value, port: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).unwrap();
    }
    let wanted = port.as_str().expect("a port name or number");
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|declared| declared["name"] == wanted)
        .and_then(|declared| declared["containerPort"].as_u64())
        .map(|number| u16::try_from(number).unwrap())
        .unwrap_or_else(|| panic!("container {} declares no port named {wanted}", container["name"]))
}

#[test]
fn environment_as_the_kubelet_builds_it() {
    let secrets: Secrets = [(
        "s".to_owned(),
        [("A".to_owned(), "a".to_owned()), ("B".to_owned(), "b".to_owned())].into(),
    )]
    .into();
    let pod = PodMeta {
        name: "p",
        namespace: "n",
        ip: Ipv4Addr::new(127, 1, 2, 3),
    };
    let container = serde_json::json!({
        "envFrom": [{"secretRef": {"name": "s"}, "prefix": "S_"}],
        "env": [
            {"name": "X", "value": "x:$(S_A):$$(S_B):$(NONE)"},
            {"name": "S_B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "A"}}},
            {"name": "O", "valueFrom": {"secretKeyRef": {"name": "s", "key": "Z", "optional": true}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
    });
    let env = container_env(&pod, &container, &secrets);
    assert_eq!(
        env,
        [
            ("S_A", "a"),
            ("X", "x:a:$(S_B):$(NONE)"),
            ("S_B", "a"),
            ("IP", "127.1.2.3")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(binary_of("r.example/shop/shop-user@sha256:00"), "shop-user");
    assert_eq!(binary_of("localhost:5000/shop-order:1.2"), "shop-order");
}

#[test]
#[should_panic(expected = "CreateContainerConfigError")]
fn a_missing_secret_key_fails_as_the_pod_would() {
    let secrets: Secrets = [("s".to_owned(), BTreeMap::new())].into();
    let pod = PodMeta {
        name: "p",
        namespace: "n",
        ip: Ipv4Addr::LOCALHOST,
    };
    let container = serde_json::json!({
        "env": [{"name": "R", "valueFrom": {"secretKeyRef": {"name": "s", "key": "REDIS_URL"}}}],
    });
    container_env(&pod, &container, &secrets);
}
