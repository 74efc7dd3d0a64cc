//! Checked request input: every rpc's request is turned into one of these before anything is
//! read or written, so bad input is refused with INVALID_ARGUMENT and changes nothing.

use shop_platform::grpc::convert::parse_uuid;
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
/// Highest price, in minor units (10^12). With a cart's bounded lines and quantities, every
/// cart and order total stays far inside 64 bits.
pub const MAX_PRICE_AMOUNT: i64 = 1_000_000_000_000;
/// Highest stock level (10^9), so that stock given back can never overflow 64 bits.
pub const MAX_STOCK: i64 = 1_000_000_000;

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

/// Refuses control characters (PostgreSQL cannot store NUL in text, and the others have no place
/// in a product's text); `allow_layout` lets newline, carriage return and tab through.
pub fn plain_text(raw: &str, field: &str, allow_layout: bool) -> Result<(), ServiceError> {
    let bad = |c: char| c.is_control() && !(allow_layout && matches!(c, '\n' | '\r' | '\t'));
    match raw.chars().find(|c| bad(*c)) {
        Some(c) => Err(invalid(format!(
            "{field} must not contain control characters like U+{:04X}",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// A product name: 1 to 200 characters after trimming, no control characters.
pub fn name(raw: &str) -> Result<String, ServiceError> {
    plain_text(raw, "name", false)?;
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

/// A description: up to 10,000 characters; no control characters but newline, carriage return
/// and tab.
pub fn description(raw: &str) -> Result<String, ServiceError> {
    plain_text(raw, "description", true)?;
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
            "currency must be three upper-case letters like KRW, not {}",
            shop_platform::grpc::convert::echo(raw, 10)
        )))
    }
}

/// A price amount in minor units: 0 to [`MAX_PRICE_AMOUNT`].
pub fn amount(amount: i64, field: &str) -> Result<i64, ServiceError> {
    if amount < 0 {
        return Err(invalid(format!("{field} must not be negative")));
    }
    if amount > MAX_PRICE_AMOUNT {
        return Err(invalid(format!("{field} must be at most {MAX_PRICE_AMOUNT}")));
    }
    Ok(amount)
}

/// A price filter bound in minor units: 0 or more (any size: it stores nothing).
pub fn price_bound(amount: i64, field: &str) -> Result<i64, ServiceError> {
    if amount < 0 {
        return Err(invalid(format!("{field} must not be negative")));
    }
    Ok(amount)
}

/// A stock level: 0 to [`MAX_STOCK`].
pub fn stock(stock: i64) -> Result<i64, ServiceError> {
    if stock < 0 {
        return Err(invalid("stock must not be negative"));
    }
    if stock > MAX_STOCK {
        return Err(invalid(format!("stock must be at most {MAX_STOCK}")));
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
        let product_id = parse_uuid(&request.id, "id")?;
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
        let parsed = parse_uuid(value, "ids")?;
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
            create("Lamp", MAX_PRICE_AMOUNT + 1, "KRW", 1),
            create("Lamp", i64::MAX, "KRW", 1),
            create("Lamp", 1, "KRW", MAX_STOCK + 1),
            create("La\0mp", 1, "KRW", 1),
            create("La\u{1b}mp", 1, "KRW", 1),
        ] {
            assert!(NewProduct::try_from(request.clone()).is_err(), "{request:?}");
        }
        assert!(name(&"가".repeat(200)).is_ok(), "limits count characters, not bytes");
        assert!(description(&"x".repeat(10_001)).is_err());
        assert!(description("a\0b").is_err(), "PostgreSQL cannot store NUL");
        assert!(description("a\u{7}b").is_err());
        assert!(description("line one\r\n\tline two").is_ok());
        assert!(name("a\tb").is_err(), "a name is one line");
        assert!(NewProduct::try_from(create("Lamp", MAX_PRICE_AMOUNT, "KRW", MAX_STOCK)).is_ok());
    }

    #[test]
    fn batch_ids_are_checked_and_deduplicated() {
        let id = Uuid::now_v7().to_string();
        assert_eq!(batch_ids(&[id.clone(), id.clone()]).map(|ids| ids.len()).ok(), Some(1));
        assert!(batch_ids(&["nope".into()]).is_err());
        assert!(batch_ids(&vec![id; 101]).is_err());
    }
}
