//! An internal team's client of the shop's services, on the generated stubs: it signs every
//! call with its own mesh key, so the services know who calls and apply its grants.
//!
//! Set up (see docs/security.md, "Internal callers"):
//!
//! ```text
//! shop-admin mesh keygen reports            # prints SHOP_MESH_KEY=… and reports=<public key>
//! # on the catalog: SHOP_MESH_TRUST+=" reports=<public key>"
//! #                 SHOP_MESH_GRANTS="reports=shop.catalog.v1.CatalogService/ListProducts"
//! SHOP_MESH_NAME=reports SHOP_MESH_KEY=… SHOP_CATALOG_TARGET=http://127.0.0.1:50052 \
//!     cargo run -p shop-admin --example mesh_client
//! ```
//!
//! It lists the first page of products. A call outside its grants answers PERMISSION_DENIED; a
//! key the catalog does not trust, UNAUTHENTICATED.

use anyhow::Context as _;
use shop_platform::{
    config::{Env as _, ProcessEnv},
    grpc::{
        client::{ClientOptions, Target, connect},
        mesh::{CATALOG, MeshIdentity},
    },
};
use shop_proto::pb::{
    catalog::{ListProductsRequest, catalog_service_client::CatalogServiceClient},
    common::PageRequest,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = ProcessEnv;
    let name = env.var("SHOP_MESH_NAME").context("SHOP_MESH_NAME: the caller's name")?;
    // SHOP_MESH_KEY: its key (a base64 seed or a PKCS#8 PEM).
    let identity = MeshIdentity::from_env(&env, &name)?;
    let target = Target::parse(
        &env.var("SHOP_CATALOG_TARGET")
            .unwrap_or_else(|| "http://127.0.0.1:50052".into()),
    )?;
    // Every call through this channel carries a token naming `name`, the catalog and the method.
    let channel = connect(&target, &ClientOptions::default())
        .await?
        .signed_by(&identity, CATALOG);
    let mut catalog = CatalogServiceClient::new(channel);
    let page = catalog
        .list_products(ListProductsRequest {
            page: Some(PageRequest {
                limit: 20,
                cursor: String::new(),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    for product in page.products {
        let price = product.price.unwrap_or_default();
        println!("{}  {}  {} {}", product.id, product.name, price.amount, price.currency);
    }
    Ok(())
}
