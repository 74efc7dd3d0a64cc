//! The product rpcs through a real tonic client: authorization, visibility, pagination, filters
//! and input checks.

use shop_platform::grpc::{
    client::GrpcChannel,
    error::machine_code,
    identity::{Caller, Role},
};
use shop_proto::pb::{
    catalog::{
        BatchGetProductsRequest, CreateProductRequest, DeleteProductRequest, GetProductRequest, GetStockRequest,
        ListProductsRequest, Product, SetStockRequest, UpdateProductRequest,
        catalog_service_client::CatalogServiceClient,
    },
    common::{Money, PageRequest},
};
use tonic::{Code, Request};

use crate::helpers::{caller, signed, spawn_app};

fn new_product(name: &str, price: i64, stock: i64) -> CreateProductRequest {
    CreateProductRequest {
        name: name.into(),
        description: format!("All about {name}"),
        price: Some(Money {
            amount: price,
            currency: String::new(),
        }),
        stock,
        visible: None,
    }
}

async fn create(
    client: &mut CatalogServiceClient<GrpcChannel>,
    seller: &Caller,
    request: CreateProductRequest,
) -> Product {
    client
        .create_product(signed(request, seller))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap()
}

async fn get(
    client: &mut CatalogServiceClient<GrpcChannel>,
    who: Option<&Caller>,
    id: &str,
) -> Result<Product, tonic::Status> {
    let request = GetProductRequest { id: id.into() };
    let request = match who {
        Some(caller) => signed(request, caller),
        None => Request::new(request),
    };
    client
        .get_product(request)
        .await
        .map(|r| r.into_inner().product.unwrap())
}

fn list(query: &str, limit: u32, cursor: &str) -> ListProductsRequest {
    ListProductsRequest {
        query: query.into(),
        page: Some(PageRequest {
            limit,
            cursor: cursor.into(),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn sellers_create_customers_and_strangers_cannot() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let seller = caller(Role::Seller);

    let product = create(&mut client, &seller, new_product("  Desk lamp ", 12_900, 5)).await;
    assert_eq!(product.name, "Desk lamp");
    assert_eq!(product.seller_id, seller.user_id.to_string());
    assert_eq!(product.price.as_ref().map(|p| p.currency.as_str()), Some("KRW"));
    assert!(product.visible && !product.deleted);
    assert_eq!(product.created_at, product.updated_at);
    assert_eq!(
        get(&mut client, None, &product.id).await.unwrap(),
        product,
        "a read returns what the write did"
    );

    let denied = client
        .create_product(signed(new_product("Lamp", 1, 1), &caller(Role::Customer)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = client
        .create_product(Request::new(new_product("Lamp", 1, 1)))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let seller = caller(Role::Seller);
    let product = create(&mut client, &seller, new_product("Chair", 5_000, 2)).await;

    let mut bad_currency = new_product("Chair", 1, 1);
    bad_currency.price = Some(Money {
        amount: 1,
        currency: "won".into(),
    });
    let mut long_description = new_product("Chair", 1, 1);
    long_description.description = "x".repeat(10_001);
    for request in [
        new_product("", 1, 1),
        new_product(&"x".repeat(201), 1, 1),
        new_product("Chair", -1, 1),
        new_product("Chair", 1, -1),
        bad_currency,
        long_description,
    ] {
        let status = client.create_product(signed(request, &seller)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(machine_code(&status), Some("invalid_argument"));
    }

    let update = UpdateProductRequest {
        id: product.id.clone(),
        name: Some("Stool".into()),
        price: Some(Money {
            amount: -5,
            currency: String::new(),
        }),
        ..Default::default()
    };
    let status = client.update_product(signed(update, &seller)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        get(&mut client, None, &product.id).await.unwrap().name,
        "Chair",
        "nothing changed"
    );

    let status = client
        .set_stock(signed(
            SetStockRequest {
                product_id: product.id.clone(),
                stock: -1,
            },
            &seller,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = get(&mut client, None, "not-a-uuid").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let too_many = BatchGetProductsRequest {
        ids: vec![product.id.clone(); 101],
    };
    assert_eq!(
        client.batch_get_products(too_many).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    for request in [list("", 101, ""), list("", 10, "garbage")] {
        assert_eq!(
            client.list_products(request).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    let inverted = ListProductsRequest {
        min_price: Some(10),
        max_price: Some(5),
        ..Default::default()
    };
    assert_eq!(
        client.list_products(inverted).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(app.stock(product.id.parse().unwrap()).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn owners_and_admins_write_other_sellers_cannot() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let (owner, other, admin) = (caller(Role::Seller), caller(Role::Seller), caller(Role::Admin));
    let product = create(&mut client, &owner, new_product("Kettle", 30_000, 4)).await;

    let rename = |name: &str| UpdateProductRequest {
        id: product.id.clone(),
        name: Some(name.into()),
        ..Default::default()
    };
    let status = client
        .update_product(signed(rename("Mine now"), &other))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = client
        .set_stock(signed(
            SetStockRequest {
                product_id: product.id.clone(),
                stock: 0,
            },
            &other,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = client
        .delete_product(signed(DeleteProductRequest { id: product.id.clone() }, &other))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let updated = client
        .update_product(signed(rename("Steel kettle"), &owner))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(updated.name, "Steel kettle");
    assert_eq!(
        updated.description, product.description,
        "absent fields keep their value"
    );
    assert_eq!(updated.price, product.price);
    let at = |p: &Product| p.updated_at.map(|t| (t.seconds, t.nanos));
    assert!(at(&updated) > at(&product));

    let repriced = client
        .update_product(signed(
            UpdateProductRequest {
                id: product.id.clone(),
                price: Some(Money {
                    amount: 25_000,
                    currency: String::new(),
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        repriced.price,
        Some(Money {
            amount: 25_000,
            currency: "KRW".into()
        })
    );
    let stock = client
        .set_stock(signed(
            SetStockRequest {
                product_id: product.id.clone(),
                stock: 9,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stock.stock, 9);
    let read = client
        .get_stock(GetStockRequest {
            product_id: product.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.stock, 9);
    app.stop().await;
}

#[tokio::test]
async fn hidden_and_deleted_products_follow_the_visibility_rules() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let (owner, stranger, admin) = (caller(Role::Seller), caller(Role::Customer), caller(Role::Admin));
    let mut hidden = new_product("Prototype", 1, 1);
    hidden.visible = Some(false);
    let hidden = create(&mut client, &owner, hidden).await;
    let gone = create(&mut client, &owner, new_product("Discontinued", 1, 1)).await;

    assert_eq!(
        get(&mut client, None, &hidden.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get(&mut client, Some(&stranger), &hidden.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(get(&mut client, Some(&owner), &hidden.id).await.is_ok());
    assert!(get(&mut client, Some(&admin), &hidden.id).await.is_ok());

    client
        .delete_product(signed(DeleteProductRequest { id: gone.id.clone() }, &owner))
        .await
        .unwrap();
    assert_eq!(
        get(&mut client, Some(&owner), &gone.id).await.unwrap_err().code(),
        Code::NotFound
    );
    let again = client
        .delete_product(signed(DeleteProductRequest { id: gone.id.clone() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let update = UpdateProductRequest {
        id: gone.id.clone(),
        visible: Some(true),
        ..Default::default()
    };
    assert_eq!(
        client.update_product(signed(update, &owner)).await.unwrap_err().code(),
        Code::NotFound
    );

    let listed = client
        .list_products(list("", 0, ""))
        .await
        .unwrap()
        .into_inner()
        .products;
    assert!(
        listed.is_empty(),
        "neither hidden nor deleted products are listed: {listed:?}"
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    let batch = client
        .batch_get_products(BatchGetProductsRequest {
            ids: vec![hidden.id.clone(), gone.id.clone(), unknown, gone.id.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(batch.len(), 2, "unknown ids are absent, repeated ids answered once");
    assert!(batch.iter().any(|p| p.id == gone.id && p.deleted));
    assert!(batch.iter().any(|p| p.id == hidden.id && !p.visible));
    app.stop().await;
}

#[tokio::test]
async fn listing_pages_newest_first_without_repeats() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let seller = caller(Role::Seller);
    let mut created = Vec::new();
    for n in 0..25 {
        created.push(
            create(&mut client, &seller, new_product(&format!("Item {n:02}"), 100 + n, 1))
                .await
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = client.list_products(list("", 10, &cursor)).await.unwrap().into_inner();
        pages += 1;
        seen.extend(page.products.into_iter().map(|p| p.id));
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
        // A product created between pages is newer than the cursor: it neither repeats nor
        // shifts the pages that follow.
        if pages == 1 {
            create(&mut client, &seller, new_product("Late arrival", 1, 1)).await;
        }
    }
    created.reverse();
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "newest first, each once");

    let page = client.list_products(list("", 10, "")).await.unwrap().into_inner();
    let cursor = page.page.unwrap().next_cursor;
    let status = client.list_products(list("item", 10, &cursor)).await.unwrap_err();
    assert_eq!(
        machine_code(&status),
        Some("invalid_cursor"),
        "a cursor is bound to its filters"
    );
    app.stop().await;
}

#[tokio::test]
async fn filters_by_text_price_stock_and_seller() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let (alice, bob) = (caller(Role::Seller), caller(Role::Seller));
    let lamp = create(&mut client, &alice, new_product("Brass LAMP", 50_000, 0)).await;
    let desk = create(&mut client, &alice, new_product("Oak desk", 200_000, 3)).await;
    let mut sale = new_product("Sticker", 500, 10);
    sale.description = "now 50% off".into();
    let sale = create(&mut client, &bob, sale).await;

    let ids = |products: Vec<Product>| products.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let search = |request: ListProductsRequest| {
        let mut client = client.clone();
        async move { ids(client.list_products(request).await.unwrap().into_inner().products) }
    };
    assert_eq!(
        search(list("lamp", 0, "")).await,
        [lamp.id.as_str()],
        "case-insensitive name"
    );
    assert_eq!(
        search(list("all about oak", 0, "")).await,
        [desk.id.as_str()],
        "description"
    );
    assert_eq!(
        search(list("50%", 0, "")).await,
        [sale.id.as_str()],
        "wildcards are literal"
    );
    assert_eq!(search(list("%", 0, "")).await, [sale.id.as_str()]);
    let priced = ListProductsRequest {
        min_price: Some(1_000),
        max_price: Some(100_000),
        ..Default::default()
    };
    assert_eq!(search(priced).await, [lamp.id.as_str()]);
    let stocked = ListProductsRequest {
        in_stock: true,
        ..Default::default()
    };
    assert_eq!(search(stocked).await, [sale.id.as_str(), desk.id.as_str()]);
    let by_seller = ListProductsRequest {
        seller_id: alice.user_id.to_string(),
        ..Default::default()
    };
    assert_eq!(search(by_seller).await, [desk.id.as_str(), lamp.id.as_str()]);
    app.stop().await;
}

#[tokio::test]
async fn huge_amounts_and_control_characters_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let mut client = app.client().await;
    let seller = caller(Role::Seller);
    let product = create(&mut client, &seller, new_product("Chair", 5_000, 2)).await;

    let mut nul_description = new_product("Chair", 1, 1);
    nul_description.description = "a\0b".into();
    for request in [
        new_product("Chair", 1 << 62, 1),
        new_product("Chair", i64::MAX, 1),
        new_product("Chair", 1_000_000_000_001, 1),
        new_product("Chair", 1, 1_000_000_001),
        new_product("Ch\0air", 1, 1),
        new_product("Ch\u{1b}air", 1, 1),
        nul_description,
    ] {
        let status = client.create_product(signed(request, &seller)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(machine_code(&status), Some("invalid_argument"));
    }
    let at_the_limits = create(
        &mut client,
        &seller,
        new_product("Safe", 1_000_000_000_000, 1_000_000_000),
    )
    .await;
    assert_eq!(at_the_limits.stock, 1_000_000_000);

    let updates = [
        UpdateProductRequest {
            id: product.id.clone(),
            price: Some(Money {
                amount: i64::MAX,
                currency: String::new(),
            }),
            ..Default::default()
        },
        UpdateProductRequest {
            id: product.id.clone(),
            description: Some("bad\0text".into()),
            ..Default::default()
        },
        UpdateProductRequest {
            id: product.id.clone(),
            name: Some("bad\0name".into()),
            ..Default::default()
        },
    ];
    for update in updates {
        let status = client.update_product(signed(update, &seller)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    assert_eq!(
        get(&mut client, None, &product.id).await.unwrap(),
        product,
        "nothing changed"
    );

    for stock in [1_000_000_001, i64::MAX - 1] {
        let status = client
            .set_stock(signed(
                SetStockRequest {
                    product_id: product.id.clone(),
                    stock,
                },
                &seller,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    assert_eq!(app.stock(product.id.parse().unwrap()).await, 2);

    let status = client.list_products(list("a\0b", 10, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let huge_bound = ListProductsRequest {
        max_price: Some(i64::MAX),
        ..Default::default()
    };
    assert!(
        client.list_products(huge_bound).await.is_ok(),
        "a filter bound may be any size"
    );
    app.stop().await;
}
