//! Checked request input: every rpc's request is turned into one of these before anything is
//! read or written, so bad input is refused with INVALID_ARGUMENT and changes nothing.

use shop_platform::grpc::error::ServiceError;
use shop_proto::pb::{catalog as pb, common::Money};
use uuid::Uuid;

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest free-text query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most ids in one BatchGetProducts.
pub const MAX_BATCH_IDS: usize = 100;
/// The currency of a price that names none.
pub const DEFAULT_CURRENCY: &str = "KRW";

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

/// A UUID field.
pub fn id(raw: &str, field: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(raw.trim()).map_err(|_| invalid(format!("{field} must be a UUID, not {raw:.40?}")))
}

/// A product name: 1 to 200 characters after trimming.
pub fn name(raw: &str) -> Result<String, ServiceError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(invalid("name must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(invalid(format!("name is {chars} characters; at most {MAX_NAME_CHARS}")));
    }
    Ok(trimmed.to_owned())
}

/// A description: up to 10,000 characters.
pub fn description(raw: &str) -> Result<String, ServiceError> {
    let chars = raw.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "description is {chars} characters; at most {MAX_DESCRIPTION_CHARS}"
        )));
    }
    Ok(raw.to_owned())
}

/// An ISO 4217 alphabetic code: three upper-case letters.
pub fn currency(raw: &str) -> Result<String, ServiceError> {
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(raw.to_owned())
    } else {
        Err(invalid(format!(
            "currency must be three upper-case letters like KRW, not {raw:.10?}"
        )))
    }
}

/// A price amount in minor units: 0 or more.
pub fn amount(amount: i64, field: &str) -> Result<i64, ServiceError> {
    if amount < 0 {
        return Err(invalid(format!("{field} must not be negative")));
    }
    Ok(amount)
}

/// A stock level: 0 or more.
pub fn stock(stock: i64) -> Result<i64, ServiceError> {
    if stock < 0 {
        return Err(invalid("stock must not be negative"));
    }
    Ok(stock)
}

/// A product to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    /// Trimmed name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in minor units.
    pub price_amount: i64,
    /// Currency code.
    pub currency: String,
    /// Initial stock.
    pub stock: i64,
    /// Listed at once?
    pub visible: bool,
}

impl TryFrom<pb::CreateProductRequest> for NewProduct {
    type Error = ServiceError;

    fn try_from(request: pb::CreateProductRequest) -> Result<Self, ServiceError> {
        let price = request.price.unwrap_or_default();
        Ok(Self {
            name: name(&request.name)?,
            description: description(&request.description)?,
            price_amount: amount(price.amount, "price.amount")?,
            currency: if price.currency.is_empty() {
                DEFAULT_CURRENCY.to_owned()
            } else {
                currency(&price.currency)?
            },
            stock: stock(request.stock)?,
            visible: request.visible.unwrap_or(true),
        })
    }
}

/// A partial update: `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price amount.
    pub price_amount: Option<i64>,
    /// New currency.
    pub currency: Option<String>,
    /// Show or hide.
    pub visible: Option<bool>,
}

impl ProductPatch {
    /// Checks an UpdateProductRequest; returns the product id and the patch.
    pub fn parse(request: pb::UpdateProductRequest) -> Result<(Uuid, Self), ServiceError> {
        let product_id = id(&request.id, "id")?;
        let (price_amount, currency) = match request.price {
            None => (None, None),
            Some(Money {
                amount: raw,
                currency: code,
            }) => (
                Some(amount(raw, "price.amount")?),
                if code.is_empty() { None } else { Some(currency(&code)?) },
            ),
        };
        Ok((
            product_id,
            Self {
                name: request.name.as_deref().map(name).transpose()?,
                description: request.description.as_deref().map(description).transpose()?,
                price_amount,
                currency,
                visible: request.visible,
            },
        ))
    }
}

/// The ids of a BatchGetProducts, checked and de-duplicated (first occurrence kept).
pub fn batch_ids(raw: &[String]) -> Result<Vec<Uuid>, ServiceError> {
    if raw.len() > MAX_BATCH_IDS {
        return Err(invalid(format!(
            "{} ids asked for; at most {MAX_BATCH_IDS} per call",
            raw.len()
        )));
    }
    let mut ids = Vec::with_capacity(raw.len());
    for value in raw {
        let parsed = id(value, "ids")?;
        if !ids.contains(&parsed) {
            ids.push(parsed);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, amount: i64, currency: &str, stock: i64) -> pb::CreateProductRequest {
        pb::CreateProductRequest {
            name: name.into(),
            description: String::new(),
            price: Some(Money {
                amount,
                currency: currency.into(),
            }),
            stock,
            visible: None,
        }
    }

    #[test]
    fn a_good_product_is_trimmed_and_defaulted() {
        let product = NewProduct::try_from(create("  Lamp ", 12_900, "", 3)).ok();
        assert_eq!(
            product,
            Some(NewProduct {
                name: "Lamp".into(),
                description: String::new(),
                price_amount: 12_900,
                currency: "KRW".into(),
                stock: 3,
                visible: true,
            })
        );
    }

    #[test]
    fn bad_fields_are_refused() {
        for request in [
            create("   ", 1, "KRW", 1),
            create(&"x".repeat(201), 1, "KRW", 1),
            create("Lamp", -1, "KRW", 1),
            create("Lamp", 1, "krw", 1),
            create("Lamp", 1, "KRWX", 1),
            create("Lamp", 1, "KRW", -1),
        ] {
            assert!(NewProduct::try_from(request.clone()).is_err(), "{request:?}");
        }
        assert!(name(&"가".repeat(200)).is_ok(), "limits count characters, not bytes");
        assert!(description(&"x".repeat(10_001)).is_err());
    }

    #[test]
    fn batch_ids_are_checked_and_deduplicated() {
        let id = Uuid::now_v7().to_string();
        assert_eq!(batch_ids(&[id.clone(), id.clone()]).map(|ids| ids.len()).ok(), Some(1));
        assert!(batch_ids(&["nope".into()]).is_err());
        assert!(batch_ids(&vec![id; 101]).is_err());
    }
}
