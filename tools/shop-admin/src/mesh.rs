//! Mesh identities by hand: a key for an internal caller (its `SHOP_MESH_KEY`, and the
//! `SHOP_MESH_TRUST` entry the services need to accept it), a Secret with keys for the whole
//! standard mesh, and a token signed with a key, to call a service with grpcurl or the like.

use anyhow::Context as _;
use shop_platform::{
    config::{ConfigError, Env},
    grpc::{
        identity::Caller,
        mesh::{ASSERT_USER, Grants, MEMBERS, MeshIdentity, MeshKey, MeshSecret, TrustSet, encode_public},
    },
};

use crate::cli::MeshCommand;

/// Runs a `mesh` command; `env` holds `SHOP_MESH_KEY` for `mesh token`.
pub fn run(command: MeshCommand, env: &impl Env) -> anyhow::Result<String> {
    match command {
        MeshCommand::Keygen { name } => keygen(&name),
        MeshCommand::Secret { secret_name } => Ok(secret(&secret_name)),
        MeshCommand::Token {
            audience,
            method,
            caller,
            user,
            ttl,
        } => {
            let raw = env
                .secret("SHOP_MESH_KEY")
                .ok_or_else(|| ConfigError::new("SHOP_MESH_KEY", "the key to sign with is not set"))?;
            let key = MeshKey::parse(shop_platform::config::ExposeSecret::expose_secret(&raw))
                .map_err(|reason| ConfigError::new("SHOP_MESH_KEY", reason))?;
            token(
                key,
                &caller,
                &audience,
                &method,
                user.map(|(id, role)| Caller::new(id, role, None)),
                ttl,
            )
        }
    }
}

/// A fresh key for `name`, as the two settings that use it.
pub fn keygen(name: &str) -> anyhow::Result<String> {
    let key = MeshKey::generate();
    // Checks the name as the services will.
    MeshIdentity::new(name, key.clone(), TrustSet::default(), &Grants::default()).map_err(anyhow::Error::msg)?;
    Ok(format!(
        "# The caller's own setting; keep it secret (a Kubernetes Secret, a vault):\n\
         SHOP_MESH_KEY={}\n\
         # Add this entry to SHOP_MESH_TRUST of every service it calls, and grant it methods\n\
         # in SHOP_MESH_GRANTS ({name}=package.Service/Method,…):\n\
         {name}={}\n",
        key.to_base64(),
        encode_public(&key.public_key())
    ))
}

/// A Kubernetes Secret with a fresh key for the gateway and each service (`<name>.key`) and
/// the trust set naming them all (`trust`), as the chart reads it.
pub fn secret(secret_name: &str) -> String {
    let mesh = MeshSecret::generate(&MEMBERS);
    let keys: String = mesh
        .key_entries(&MEMBERS)
        .into_iter()
        .map(|(entry, key)| format!("  {entry}: {key}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret_name}\ntype: Opaque\nstringData:\n{keys}  trust: \"{}\"\n",
        mesh.trust()
    )
}

/// A token signed with `key` as `caller`, for `method` of `audience`, asserting `user` if given
/// (the service accepts it only if `caller` has the `as-user` grant there).
pub fn token(
    key: MeshKey,
    caller: &str,
    audience: &str,
    method: &str,
    user: Option<Caller>,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    let grants = Grants::parse(&format!("{caller}={ASSERT_USER}")).map_err(anyhow::Error::msg)?;
    let identity = MeshIdentity::new(caller, key, TrustSet::default(), &grants)
        .map_err(anyhow::Error::msg)?
        .with_ttl(ttl);
    let token = identity
        .mint(audience, method, user.as_ref())
        .context("signing the token")?;
    Ok(format!("{token}\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shop_platform::{
        config::MapEnv,
        grpc::{identity::Role, mesh::ORDER},
    };

    use super::*;

    #[test]
    fn a_generated_key_and_a_token_it_signs_are_accepted_by_a_service_that_trusts_it() {
        let printed = keygen("reports").unwrap();
        let key = printed
            .lines()
            .find_map(|line| line.strip_prefix("SHOP_MESH_KEY="))
            .unwrap();
        let trust = printed.lines().find(|line| line.starts_with("reports=")).unwrap();
        let user = uuid::Uuid::new_v4();
        let method = "shop.order.v1.OrderService/ListOrders";
        let env = MapEnv::from_pairs([("SHOP_MESH_KEY", key)]);
        let command = MeshCommand::Token {
            audience: ORDER.into(),
            method: method.into(),
            caller: "reports".into(),
            user: Some((user, Role::Admin)),
            ttl: std::time::Duration::from_secs(10),
        };
        let token = run(command, &env).unwrap();

        let service_env = MapEnv::from_pairs([
            ("SHOP_MESH_TRUST", trust),
            (
                "SHOP_MESH_GRANTS",
                "reports=shop.order.v1.OrderService/ListOrders,as-user",
            ),
        ]);
        let order = MeshIdentity::from_env(&service_env, ORDER).unwrap();
        let caller = order.verify(Some(token.trim()), method).unwrap();
        assert_eq!(caller.service, "reports");
        assert_eq!(caller.user, Some(Caller::new(user, Role::Admin, None)));
        // Without the grant to assert users, the same token is refused.
        let strict = MapEnv::from_pairs([
            ("SHOP_MESH_TRUST", trust),
            ("SHOP_MESH_GRANTS", "reports=shop.order.v1.OrderService/ListOrders"),
        ]);
        let order = MeshIdentity::from_env(&strict, ORDER).unwrap();
        assert!(order.verify(Some(token.trim()), method).is_err());
    }

    #[test]
    fn the_secret_holds_a_key_per_member_and_their_trust_set() {
        let secret = secret("shop-mesh");
        for name in ["gateway", "user", "catalog", "order"] {
            let key = secret
                .lines()
                .find_map(|line| line.trim().strip_prefix(&format!("{name}.key: ")))
                .unwrap();
            let public = encode_public(&MeshKey::parse(key).unwrap().public_key());
            assert!(secret.contains(&format!("{name}={public}")), "{secret}");
        }
        assert!(secret.contains("name: shop-mesh"));
    }
}
