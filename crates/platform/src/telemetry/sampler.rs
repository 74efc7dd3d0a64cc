//! Which traces are kept: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` as the
//! OpenTelemetry specification defines them, read through [`Env`] so that a bad value stops the
//! process at start (the SDK alone would fall back to sampling everything with a warning).

use opentelemetry_sdk::trace::Sampler;

use crate::config::{ConfigError, Env};

/// The sampler `env` asks for; `parentbased_always_on` (keep every trace, follow the caller's
/// decision) by default.
pub fn from_env(env: &impl Env) -> Result<Sampler, ConfigError> {
    let ratio = || -> Result<f64, ConfigError> {
        match env.var("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(raw) => raw
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|ratio| (0.0..=1.0).contains(ratio))
                .ok_or_else(|| {
                    ConfigError::new("OTEL_TRACES_SAMPLER_ARG", format!("{raw:?} is not a ratio from 0 to 1"))
                }),
        }
    };
    let name = env
        .var("OTEL_TRACES_SAMPLER")
        .unwrap_or_else(|| "parentbased_always_on".to_owned());
    Ok(match name.trim() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        other => {
            return Err(ConfigError::new(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?} is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    fn sampler(pairs: &[(&str, &str)]) -> Result<String, String> {
        from_env(&MapEnv::from_pairs(pairs.iter().copied()))
            .map(|s| format!("{s:?}"))
            .map_err(|e| e.key)
    }

    #[test]
    fn the_specification_names_and_ratios() {
        assert_eq!(sampler(&[]), Ok("ParentBased(AlwaysOn)".to_owned()));
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ]),
            Ok("ParentBased(TraceIdRatioBased(0.25))".to_owned())
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            Ok("AlwaysOff".to_owned())
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
            Ok("TraceIdRatioBased(1.0)".to_owned())
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "xray")]),
            Err("OTEL_TRACES_SAMPLER".to_owned())
        );
        for arg in ["1.5", "-0.1", "half"] {
            assert_eq!(
                sampler(&[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", arg)
                ]),
                Err("OTEL_TRACES_SAMPLER_ARG".to_owned())
            );
        }
    }
}
