//! The primary database: its rows and the e-commerce transactions that change them.
//!
//! This file holds the tables, the snapshot the connectors start from and the writes that
//! record a change; the rows the shop creates are in `rows`, the choice of rows to act on in
//! `pick`, and the business transactions in `transactions`.

mod pick;
mod rows;
mod transactions;

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::model::*;
use crate::schema::Table;

macro_rules! expect {
    ($row:expr, $variant:ident) => {
        match $row {
            Row::$variant(r) => r,
            other => unreachable!("expected a {} row, got {other:?}", stringify!($variant)),
        }
    };
}

/// A Debezium operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// One row change of a transaction on the primary.
#[derive(Clone, Copy, Debug)]
pub struct Change {
    pub table: Table,
    pub op: Op,
    pub key: Key,
    pub before: Option<Row>,
    pub after: Option<Row>,
}

/// Milliseconds per day, for `date` columns.
const DAY_MS: i64 = 86_400_000;

pub struct World {
    rng: ChaCha8Rng,
    customers: Vec<Option<Customer>>,
    products: Vec<Product>,
    inventory: Vec<Inventory>,
    carts: Vec<Option<Cart>>,
    cart_items: BTreeMap<(i64, i64), CartItem>,
    cart_contents: HashMap<i64, Vec<i64>>,
    open_carts: Vec<i64>,
    orders: Vec<Option<Order>>,
    active_orders: Vec<i64>,
    payments: Vec<Option<Payment>>,
    order_payment: Vec<i64>,
    /// Whether `orders.currency` exists (after the migration).
    pub currency_column: bool,
    now_ms: i64,
    now_us: i64,
    /// The changes of the transaction being built.
    pub changes: Vec<Change>,
}

impl World {
    pub fn new(rng: ChaCha8Rng) -> Self {
        World {
            rng,
            customers: Vec::new(),
            products: Vec::new(),
            inventory: Vec::new(),
            carts: Vec::new(),
            cart_items: BTreeMap::new(),
            cart_contents: HashMap::new(),
            open_carts: Vec::new(),
            orders: Vec::new(),
            active_orders: Vec::new(),
            payments: Vec::new(),
            order_payment: Vec::new(),
            currency_column: false,
            now_ms: 0,
            now_us: 0,
            changes: Vec::with_capacity(32),
        }
    }

    /// Fills the database with about `rows` rows as it is before the connectors start, and
    /// returns them in snapshot order (table by table, by key).
    pub fn populate(&mut self, rows: u64, now_ms: i64) -> Vec<Row> {
        let n = |share: f64, min: u64| ((rows as f64 * share) as u64).max(min);
        let (customers, products, carts, orders) =
            (n(0.28, 20), n(0.08, 20), n(0.08, 5), n(0.16, 10));
        self.set_now(now_ms - 30 * DAY_MS, (now_ms - 30 * DAY_MS) * 1000);
        let past = |rng: &mut ChaCha8Rng| now_ms - rng.random_range(DAY_MS..400 * DAY_MS);
        for _ in 0..products {
            let created = past(&mut self.rng);
            let us = created * 1000 + self.rng.random_range(0..1000);
            self.set_now(created, us);
            self.new_product(false);
        }
        for _ in 0..customers {
            let created = past(&mut self.rng);
            let us = created * 1000 + self.rng.random_range(0..1000);
            self.set_now(created, us);
            self.new_customer(false);
        }
        for _ in 0..orders {
            let created = now_ms - self.rng.random_range(60_000..20 * DAY_MS);
            let us = created * 1000 + self.rng.random_range(0..1000);
            self.set_now(created, us);
            let customer_id = self.pick_customer();
            let items = self.rng.random_range(1..=4);
            let subtotal = (0..items)
                .map(|_| self.rng.random_range(500..15_000i64))
                .sum::<i64>();
            self.place_order(customer_id, items, subtotal, false);
        }
        for _ in 0..carts {
            let created = now_ms - self.rng.random_range(60_000..3 * DAY_MS);
            let us = created * 1000 + self.rng.random_range(0..1000);
            self.set_now(created, us);
            let cart_id = self.new_cart(false);
            for _ in 0..self.rng.random_range(1..=3) {
                let product_id = self.pick_product();
                self.add_item(cart_id, product_id, false);
            }
        }
        // Initial delivered/cancelled history: most old orders are done.
        let mut i = 0;
        while i < self.active_orders.len() {
            let id = self.active_orders[i];
            if self.rng.random_bool(0.6) {
                let o = self.orders[id as usize - 1].as_mut().unwrap();
                o.status = ORDER_DELIVERED;
                self.active_orders.swap_remove(i);
            } else {
                i += 1;
            }
        }
        self.changes.clear();

        let mut out = Vec::new();
        out.extend(self.customers.iter().flatten().map(|r| Row::Customer(*r)));
        out.extend(self.products.iter().map(|r| Row::Product(*r)));
        out.extend(self.inventory.iter().map(|r| Row::Inventory(*r)));
        out.extend(self.carts.iter().flatten().map(|r| Row::Cart(*r)));
        out.extend(self.cart_items.values().map(|r| Row::CartItem(*r)));
        out.extend(self.orders.iter().flatten().map(|r| Row::Order(*r)));
        out.extend(self.payments.iter().flatten().map(|r| Row::Payment(*r)));
        out
    }

    pub fn set_now(&mut self, now_ms: i64, now_us: i64) {
        self.now_ms = now_ms;
        self.now_us = now_us;
    }

    pub fn get(&self, table: Table, key: Key) -> Option<Row> {
        let idx = |id: i64| usize::try_from(id - 1).ok();
        match (table, key) {
            (Table::Customers, Key::Id(id)) => idx(id)
                .and_then(|i| *self.customers.get(i)?)
                .map(Row::Customer),
            (Table::Products, Key::Id(id)) => idx(id)
                .and_then(|i| self.products.get(i))
                .copied()
                .map(Row::Product),
            (Table::Inventory, Key::Id(id)) => idx(id)
                .and_then(|i| self.inventory.get(i))
                .copied()
                .map(Row::Inventory),
            (Table::Carts, Key::Id(id)) => idx(id).and_then(|i| *self.carts.get(i)?).map(Row::Cart),
            (Table::CartItems, Key::Pair(c, p)) => {
                self.cart_items.get(&(c, p)).copied().map(Row::CartItem)
            }
            (Table::Orders, Key::Id(id)) => {
                idx(id).and_then(|i| *self.orders.get(i)?).map(Row::Order)
            }
            (Table::Payments, Key::Id(id)) => idx(id)
                .and_then(|i| *self.payments.get(i)?)
                .map(Row::Payment),
            _ => None,
        }
    }

    fn put(&mut self, table: Table, key: Key, row: Option<Row>) {
        let i = (key.id() - 1) as usize;
        match (table, row) {
            (Table::Customers, r) => set(&mut self.customers, i, r.map(|r| expect!(r, Customer))),
            (Table::Products, Some(Row::Product(r))) => set_dense(&mut self.products, i, r),
            (Table::Inventory, Some(Row::Inventory(r))) => set_dense(&mut self.inventory, i, r),
            (Table::Carts, r) => set(&mut self.carts, i, r.map(|r| expect!(r, Cart))),
            (Table::CartItems, r) => {
                let Key::Pair(c, p) = key else {
                    unreachable!("cart_items keys are pairs")
                };
                match r {
                    Some(r) => {
                        self.cart_items.insert((c, p), expect!(r, CartItem));
                    }
                    None => {
                        self.cart_items.remove(&(c, p));
                    }
                }
            }
            (Table::Orders, r) => set(&mut self.orders, i, r.map(|r| expect!(r, Order))),
            (Table::Payments, r) => set(&mut self.payments, i, r.map(|r| expect!(r, Payment))),
            (t, r) => unreachable!("{t} cannot store {r:?}"),
        }
    }

    fn insert(&mut self, row: Row, emit: bool) {
        let (table, key) = (row.table(), row.key());
        self.put(table, key, Some(row));
        if emit {
            self.changes.push(Change {
                table,
                op: Op::Create,
                key,
                before: None,
                after: Some(row),
            });
        }
    }

    fn update(&mut self, mut row: Row) {
        row.touch(self.now_us);
        let (table, key) = (row.table(), row.key());
        let before = self.get(table, key);
        debug_assert!(before.is_some(), "update of a missing {table} row {key:?}");
        self.put(table, key, Some(row));
        self.changes.push(Change {
            table,
            op: Op::Update,
            key,
            before,
            after: Some(row),
        });
    }

    fn delete(&mut self, table: Table, key: Key) {
        let before = self.get(table, key);
        if before.is_none() {
            return;
        }
        self.put(table, key, None);
        self.changes.push(Change {
            table,
            op: Op::Delete,
            key,
            before,
            after: None,
        });
    }
}

fn set<T>(v: &mut Vec<Option<T>>, i: usize, value: Option<T>) {
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v[i] = value;
}

fn set_dense<T>(v: &mut Vec<T>, i: usize, value: T) {
    if i == v.len() {
        v.push(value);
    } else {
        v[i] = value;
    }
}

/// Days since the epoch, for `date` columns.
pub fn day(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}
