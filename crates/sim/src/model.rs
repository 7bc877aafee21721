//! Rows of the shop tables and their Avro encoding.
//!
//! Rows are small `Copy` structs: text columns are indices into word lists or are derived from
//! numbers, and are spelled out only while encoding, so keeping one state per replica and
//! cloning rows for before/after images costs no allocation.

use crate::avro::{Enc, push_u64, push_u64_padded, push_uuid};
use crate::schema::Table;

pub const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Benjamin", "Harper", "Henry", "Evelyn", "Theodore", "Luna", "Jack",
    "Aiko", "Ravi", "Fatima", "Chen", "Sofia", "Mohammed", "Ingrid", "Diego", "Priya", "Kwame",
    "Yuki", "Lena", "Omar", "Zara", "Mikhail", "Chloe", "Samuel", "Nora", "Hugo", "Leila",
];
pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Nguyen",
    "Kim",
    "Patel",
    "Okafor",
    "Schmidt",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Novak",
    "Larsen",
    "Silva",
];
pub const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "shopper.example.net",
    "inbox.example.io",
];
const STREETS: &[&str] = &[
    "Maple Street",
    "Oak Avenue",
    "Pine Road",
    "Cedar Lane",
    "Elm Street",
    "Washington Avenue",
    "Lake View Drive",
    "Hillcrest Road",
    "Sunset Boulevard",
    "River Road",
    "Park Place",
    "Main Street",
];
const CITIES: &[(&str, &str, u32)] = &[
    ("Springfield", "IL", 62704),
    ("Austin", "TX", 73301),
    ("Portland", "OR", 97201),
    ("Columbus", "OH", 43004),
    ("Denver", "CO", 80202),
    ("Raleigh", "NC", 27601),
    ("Madison", "WI", 53703),
    ("Boise", "ID", 83702),
    ("Tucson", "AZ", 85701),
    ("Richmond", "VA", 23219),
];
const ADJECTIVES: &[&str] = &[
    "Ergonomic",
    "Rustic",
    "Sleek",
    "Compact",
    "Deluxe",
    "Organic",
    "Wireless",
    "Vintage",
    "Smart",
    "Portable",
    "Handcrafted",
    "Premium",
    "Recycled",
    "Classic",
];
const NOUNS: &[&str] = &[
    "Desk Lamp",
    "Coffee Grinder",
    "Backpack",
    "Water Bottle",
    "Headphones",
    "Yoga Mat",
    "Chef Knife",
    "Throw Blanket",
    "Bluetooth Speaker",
    "Running Shoes",
    "Notebook",
    "Plant Pot",
    "Tea Kettle",
    "Phone Case",
    "Desk Chair",
    "Sunglasses",
];
const CATEGORIES: &[&str] = &[
    "home",
    "kitchen",
    "outdoor",
    "electronics",
    "apparel",
    "office",
    "fitness",
    "garden",
];
const DESCRIPTIONS: &[&str] = &[
    "Bestseller. Ships in 1-2 business days.",
    "Limited edition, while stocks last.",
    "Made from sustainably sourced materials.",
    "Two-year manufacturer warranty included.",
    "Customer favourite with over 1,000 reviews.",
];
const COUPONS: &[&str] = &["WELCOME10", "SUMMER24", "FREESHIP", "VIP15", "FLASH20"];
pub const ORDER_STATUSES: &[&str] = &["pending", "paid", "shipped", "delivered", "cancelled"];
pub const ORDER_PENDING: u8 = 0;
pub const ORDER_DELIVERED: u8 = 3;
pub const ORDER_CANCELLED: u8 = 4;
pub const PAYMENT_METHODS: &[&str] = &["card", "paypal", "apple_pay", "bank_transfer", "gift_card"];
pub const PAYMENT_STATUSES: &[&str] = &["authorized", "captured", "refunded", "failed"];
pub const PAYMENT_AUTHORIZED: u8 = 0;
pub const PAYMENT_CAPTURED: u8 = 1;
pub const PAYMENT_REFUNDED: u8 = 2;
pub const CART_STATUSES: &[&str] = &["open", "converted", "abandoned"];
pub const CART_OPEN: u8 = 0;
pub const CART_CONVERTED: u8 = 1;
/// `orders.currency` values; index 0 is the column default.
pub const CURRENCIES: &[&str] = &["USD", "EUR", "GBP"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    pub number: u16,
    pub street: u8,
    pub city: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: i64,
    pub first: u8,
    pub last: u8,
    pub domain: u8,
    pub phone: Option<u32>,
    pub loyalty_points: i32,
    pub is_active: bool,
    pub birth_date: Option<i32>,
    pub created_at_ms: i64,
    pub updated_at_us: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: i64,
    pub adjective: u8,
    pub noun: u8,
    pub category: u8,
    pub price_cents: i64,
    pub weight_grams: i32,
    pub is_active: bool,
    pub description: Option<u8>,
    pub created_at_ms: i64,
    pub updated_at_us: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub product_id: i64,
    pub quantity: i32,
    pub reserved: i32,
    pub reorder_level: i32,
    pub last_restock_date: Option<i32>,
    pub updated_at_us: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cart {
    pub id: i64,
    pub customer_id: Option<i64>,
    pub session_id: u128,
    pub status: u8,
    pub item_count: i32,
    pub created_at_ms: i64,
    pub updated_at_us: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CartItem {
    pub cart_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub added_at_ms: i64,
    pub updated_at_us: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub customer_id: i64,
    pub status: u8,
    pub subtotal_cents: i64,
    pub tax_cents: i64,
    pub shipping_cents: i64,
    pub total_cents: i64,
    pub item_count: i32,
    pub shipping_address: Address,
    pub billing_address: Option<Address>,
    pub coupon: Option<u8>,
    pub placed_date: i32,
    pub created_at_ms: i64,
    pub updated_at_us: i64,
    /// Index into [`CURRENCIES`]; only written by schema version 2.
    pub currency: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub method: u8,
    pub status: u8,
    pub amount_cents: i64,
    pub provider_ref: Option<u64>,
    pub authorized_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_us: i64,
}

/// A row of any table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    Customer(Customer),
    Product(Product),
    Inventory(Inventory),
    Cart(Cart),
    CartItem(CartItem),
    Order(Order),
    Payment(Payment),
}

/// A primary key: a single `long` or the `(cart_id, product_id)` pair of `cart_items`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Id(i64),
    Pair(i64, i64),
}

impl Key {
    pub fn id(self) -> i64 {
        match self {
            Key::Id(id) | Key::Pair(id, _) => id,
        }
    }

    /// The key as the JSON object a reader of the `Key` record would print (`{"id": 42}`).
    pub fn to_json(self, table: Table) -> serde_json::Value {
        match (table, self) {
            (Table::CartItems, Key::Pair(c, p)) => {
                serde_json::json!({"cart_id": c, "product_id": p})
            }
            (Table::Inventory, Key::Id(id)) => serde_json::json!({"product_id": id}),
            (_, Key::Id(id)) => serde_json::json!({"id": id}),
            (_, Key::Pair(a, b)) => serde_json::json!({"id": a, "id2": b}),
        }
    }

    /// Appends the Avro datum of the `Key` record.
    pub fn encode(self, e: &mut Enc) {
        match self {
            Key::Id(id) => e.long(id),
            Key::Pair(a, b) => {
                e.long(a);
                e.long(b);
            }
        }
    }
}

impl Row {
    pub fn table(&self) -> Table {
        match self {
            Row::Customer(_) => Table::Customers,
            Row::Product(_) => Table::Products,
            Row::Inventory(_) => Table::Inventory,
            Row::Cart(_) => Table::Carts,
            Row::CartItem(_) => Table::CartItems,
            Row::Order(_) => Table::Orders,
            Row::Payment(_) => Table::Payments,
        }
    }

    pub fn key(&self) -> Key {
        match self {
            Row::Customer(r) => Key::Id(r.id),
            Row::Product(r) => Key::Id(r.id),
            Row::Inventory(r) => Key::Id(r.product_id),
            Row::Cart(r) => Key::Id(r.id),
            Row::CartItem(r) => Key::Pair(r.cart_id, r.product_id),
            Row::Order(r) => Key::Id(r.id),
            Row::Payment(r) => Key::Id(r.id),
        }
    }

    /// Appends the Avro datum of the row's `Value` record at `version` (only `orders` has a
    /// version 2, which adds `currency`). `scratch` holds composed strings.
    pub fn encode(&self, version: u8, e: &mut Enc, scratch: &mut Vec<u8>) {
        match self {
            Row::Customer(r) => {
                e.long(r.id);
                e.string_with(scratch, |s| {
                    push_lower(s, FIRST_NAMES[r.first as usize]);
                    s.push(b'.');
                    push_lower(s, LAST_NAMES[r.last as usize]);
                    push_u64(s, r.id as u64);
                    s.push(b'@');
                    s.extend_from_slice(DOMAINS[r.domain as usize].as_bytes());
                });
                e.string(FIRST_NAMES[r.first as usize]);
                e.string(LAST_NAMES[r.last as usize]);
                e.optional(r.phone, |e, p| {
                    e.string_with(scratch, |s| {
                        s.extend_from_slice(b"+1-555-");
                        push_u64_padded(s, (p / 10_000) as u64 % 1000, 3);
                        s.push(b'-');
                        push_u64_padded(s, (p % 10_000) as u64, 4);
                    })
                });
                e.int(r.loyalty_points);
                e.boolean(r.is_active);
                e.optional(r.birth_date, |e, d| e.int(d));
                e.long(r.created_at_ms);
                e.long(r.updated_at_us);
            }
            Row::Product(r) => {
                e.long(r.id);
                e.string_with(scratch, |s| {
                    s.extend_from_slice(b"SKU-");
                    push_u64_padded(s, r.id as u64, 8);
                });
                e.string_with(scratch, |s| {
                    s.extend_from_slice(ADJECTIVES[r.adjective as usize].as_bytes());
                    s.push(b' ');
                    s.extend_from_slice(NOUNS[r.noun as usize].as_bytes());
                });
                e.string(CATEGORIES[r.category as usize]);
                e.decimal(r.price_cents);
                e.int(r.weight_grams);
                e.boolean(r.is_active);
                e.optional(r.description, |e, d| e.string(DESCRIPTIONS[d as usize]));
                e.long(r.created_at_ms);
                e.long(r.updated_at_us);
            }
            Row::Inventory(r) => {
                e.long(r.product_id);
                e.int(r.quantity);
                e.int(r.reserved);
                e.int(r.reorder_level);
                e.optional(r.last_restock_date, |e, d| e.int(d));
                e.long(r.updated_at_us);
            }
            Row::Cart(r) => {
                e.long(r.id);
                e.optional(r.customer_id, |e, c| e.long(c));
                e.string_with(scratch, |s| push_uuid(s, r.session_id));
                e.string(CART_STATUSES[r.status as usize]);
                e.int(r.item_count);
                e.long(r.created_at_ms);
                e.long(r.updated_at_us);
            }
            Row::CartItem(r) => {
                e.long(r.cart_id);
                e.long(r.product_id);
                e.int(r.quantity);
                e.decimal(r.unit_price_cents);
                e.long(r.added_at_ms);
                e.long(r.updated_at_us);
            }
            Row::Order(r) => {
                e.long(r.id);
                e.long(r.customer_id);
                e.string_with(scratch, |s| {
                    s.extend_from_slice(b"ORD-");
                    push_u64_padded(s, r.id as u64, 10);
                });
                e.string(ORDER_STATUSES[r.status as usize]);
                e.decimal(r.subtotal_cents);
                e.decimal(r.tax_cents);
                e.decimal(r.shipping_cents);
                e.decimal(r.total_cents);
                e.int(r.item_count);
                e.string_with(scratch, |s| push_address(s, r.shipping_address));
                e.optional(r.billing_address, |e, a| {
                    e.string_with(scratch, |s| push_address(s, a))
                });
                e.optional(r.coupon, |e, c| e.string(COUPONS[c as usize]));
                e.int(r.placed_date);
                e.long(r.created_at_ms);
                e.long(r.updated_at_us);
                if version >= 2 {
                    e.string(CURRENCIES[r.currency as usize]);
                }
            }
            Row::Payment(r) => {
                e.long(r.id);
                e.long(r.order_id);
                e.string(PAYMENT_METHODS[r.method as usize]);
                e.string(PAYMENT_STATUSES[r.status as usize]);
                e.decimal(r.amount_cents);
                e.optional(r.provider_ref, |e, p| {
                    e.string_with(scratch, |s| {
                        s.extend_from_slice(b"ch_");
                        push_hex(s, p);
                    })
                });
                e.optional(r.authorized_at_ms, |e, t| e.long(t));
                e.long(r.created_at_ms);
                e.long(r.updated_at_us);
            }
        }
    }

    /// Changes one column the way a corrupted replica row would differ, and says which.
    pub fn corrupt(&mut self, salt: u64) -> String {
        let bump = 1 + (salt % 97) as i64;
        match self {
            Row::Customer(r) => {
                let old = r.loyalty_points;
                r.loyalty_points += bump as i32;
                format!("loyalty_points {old} -> {}", r.loyalty_points)
            }
            Row::Product(r) => {
                let old = r.price_cents;
                r.price_cents += bump * 100;
                format!("price {} -> {}", cents(old), cents(r.price_cents))
            }
            Row::Inventory(r) => {
                let old = r.quantity;
                r.quantity += bump as i32;
                format!("quantity {old} -> {}", r.quantity)
            }
            Row::Cart(r) => {
                let old = r.item_count;
                r.item_count += 1;
                format!("item_count {old} -> {}", r.item_count)
            }
            Row::CartItem(r) => {
                let old = r.quantity;
                r.quantity += 1;
                format!("quantity {old} -> {}", r.quantity)
            }
            Row::Order(r) => {
                let old = r.total_cents;
                r.total_cents += bump;
                format!("total {} -> {}", cents(old), cents(r.total_cents))
            }
            Row::Payment(r) => {
                let old = r.amount_cents;
                r.amount_cents -= bump;
                format!("amount {} -> {}", cents(old), cents(r.amount_cents))
            }
        }
    }

    /// Sets the update timestamp, as every UPDATE of the shop does.
    pub fn touch(&mut self, now_us: i64) {
        match self {
            Row::Customer(r) => r.updated_at_us = now_us,
            Row::Product(r) => r.updated_at_us = now_us,
            Row::Inventory(r) => r.updated_at_us = now_us,
            Row::Cart(r) => r.updated_at_us = now_us,
            Row::CartItem(r) => r.updated_at_us = now_us,
            Row::Order(r) => r.updated_at_us = now_us,
            Row::Payment(r) => r.updated_at_us = now_us,
        }
    }
}

fn cents(v: i64) -> String {
    format!(
        "{}{}.{:02}",
        if v < 0 { "-" } else { "" },
        v.abs() / 100,
        v.abs() % 100
    )
}

fn push_lower(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

fn push_address(out: &mut Vec<u8>, a: Address) {
    let (city, state, zip) = CITIES[a.city as usize % CITIES.len()];
    push_u64(out, a.number as u64);
    out.push(b' ');
    out.extend_from_slice(STREETS[a.street as usize % STREETS.len()].as_bytes());
    out.extend_from_slice(b", ");
    out.extend_from_slice(city.as_bytes());
    out.extend_from_slice(b", ");
    out.extend_from_slice(state.as_bytes());
    out.push(b' ');
    push_u64_padded(out, (zip + a.number as u32 % 7) as u64, 5);
    out.extend_from_slice(b", US");
}

pub fn address_count() -> (usize, usize) {
    (STREETS.len(), CITIES.len())
}

pub fn word_counts() -> Words {
    Words {
        first: FIRST_NAMES.len(),
        last: LAST_NAMES.len(),
        domains: DOMAINS.len(),
        adjectives: ADJECTIVES.len(),
        nouns: NOUNS.len(),
        categories: CATEGORIES.len(),
        descriptions: DESCRIPTIONS.len(),
        coupons: COUPONS.len(),
        payment_methods: PAYMENT_METHODS.len(),
    }
}

/// How many choices each word list offers.
pub struct Words {
    pub first: usize,
    pub last: usize,
    pub domains: usize,
    pub adjectives: usize,
    pub nouns: usize,
    pub categories: usize,
    pub descriptions: usize,
    pub coupons: usize,
    pub payment_methods: usize,
}

#[cfg(test)]
mod tests;
