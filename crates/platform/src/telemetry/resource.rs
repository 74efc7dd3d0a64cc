//! What exported telemetry says about the process that sent it (the OpenTelemetry resource):
//! `service.name` (`shop-user`, `shop-catalog`, `shop-order`, `shop-gateway`; `shop` for the
//! one-process binary), `service.version`, `service.namespace` (`SHOP_SERVICE_NAMESPACE`,
//! `shop` by default) and `deployment.environment.name` (`SHOP_DEPLOYMENT_ENVIRONMENT`, absent
//! by default), then whatever `OTEL_RESOURCE_ATTRIBUTES` adds or overrides (the SDK's
//! environment detector; `k8s.pod.name=…` from the Downward API, for example), and last
//! `OTEL_SERVICE_NAME`, which the specification puts above everything.

use opentelemetry::KeyValue;
use opentelemetry_sdk::{
    Resource,
    resource::{EnvResourceDetector, TelemetryResourceDetector},
};

use crate::config::{ConfigError, Env};

/// The resource settings of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceConfig {
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
    pub service_name: String,
    /// `service.version`: the release of the workspace the binary was built from.
    pub service_version: String,
    /// `service.namespace`.
    pub service_namespace: String,
    /// `deployment.environment.name` (`production`, `staging`, …), if configured.
    pub environment: Option<String>,
    /// `OTEL_SERVICE_NAME`, if set.
    pub service_name_override: Option<String>,
}

impl ResourceConfig {
    /// The settings of `service_name` from `env`.
    pub fn from_env(env: &impl Env, service_name: &str) -> Result<Self, ConfigError> {
        let namespace = env.var("SHOP_SERVICE_NAMESPACE").unwrap_or_else(|| "shop".to_owned());
        Ok(Self {
            service_name: service_name.to_owned(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            service_namespace: namespace.trim().to_owned(),
            environment: env
                .var("SHOP_DEPLOYMENT_ENVIRONMENT")
                .map(|value| value.trim().to_owned()),
            service_name_override: env.var("OTEL_SERVICE_NAME").map(|value| value.trim().to_owned()),
        })
    }

    /// The resource: these settings, then `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`
    /// (later sources override earlier ones).
    pub fn build(&self) -> Resource {
        let mut own = vec![
            KeyValue::new("service.name", self.service_name.clone()),
            KeyValue::new("service.version", self.service_version.clone()),
            KeyValue::new("service.namespace", self.service_namespace.clone()),
        ];
        if let Some(environment) = &self.environment {
            own.push(KeyValue::new("deployment.environment.name", environment.clone()));
        }
        let mut builder = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(own)
            .with_detector(Box::new(EnvResourceDetector::new()));
        if let Some(name) = &self.service_name_override {
            builder = builder.with_service_name(name.clone());
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::Key;

    use super::*;
    use crate::config::MapEnv;

    fn value(resource: &Resource, key: &'static str) -> Option<String> {
        resource.get(&Key::from_static_str(key)).map(|v| v.to_string())
    }

    #[test]
    fn names_version_namespace_and_environment() {
        let env = MapEnv::from_pairs([("SHOP_DEPLOYMENT_ENVIRONMENT", "staging")]);
        let resource = ResourceConfig::from_env(&env, "shop-order").map(|c| c.build()).ok();
        let resource = resource.as_ref();
        assert_eq!(
            resource.and_then(|r| value(r, "service.name")).as_deref(),
            Some("shop-order")
        );
        assert_eq!(
            resource.and_then(|r| value(r, "service.version")).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            resource.and_then(|r| value(r, "service.namespace")).as_deref(),
            Some("shop")
        );
        assert_eq!(
            resource
                .and_then(|r| value(r, "deployment.environment.name"))
                .as_deref(),
            Some("staging")
        );
        assert_eq!(
            resource.and_then(|r| value(r, "telemetry.sdk.language")).as_deref(),
            Some("rust")
        );
    }

    #[test]
    fn otel_service_name_wins() {
        let env = MapEnv::from_pairs([("OTEL_SERVICE_NAME", "checkout"), ("SHOP_SERVICE_NAMESPACE", "eu")]);
        let resource = ResourceConfig::from_env(&env, "shop-order").map(|c| c.build()).ok();
        let resource = resource.as_ref();
        assert_eq!(
            resource.and_then(|r| value(r, "service.name")).as_deref(),
            Some("checkout")
        );
        assert_eq!(
            resource.and_then(|r| value(r, "service.namespace")).as_deref(),
            Some("eu")
        );
        assert_eq!(resource.and_then(|r| value(r, "deployment.environment.name")), None);
    }
}
