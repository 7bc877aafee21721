//! The primary database: its rows and the e-commerce transactions that change them.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, RngCore};
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

    /// Builds one business transaction into `self.changes`.
    pub fn transaction(&mut self) {
        self.changes.clear();
        let roll = self.rng.random_range(0..1000u32);
        match roll {
            0..280 => self.txn_add_to_cart(),
            280..340 => self.txn_update_quantity(),
            340..380 => self.txn_remove_item(),
            380..520 => self.txn_checkout(),
            520..700 => self.txn_order_progress(),
            700..780 => self.txn_customer_update(),
            780..830 => {
                self.new_customer(true);
            }
            830..870 => self.txn_product_update(),
            870..920 => self.txn_restock(),
            920..950 => self.txn_abandon_cart(),
            950..995 => self.txn_cancel_order(),
            _ => self.txn_delete_customer(),
        }
        if self.changes.is_empty() {
            // The chosen kind had nothing to act on (say, no open cart); shop for something.
            self.txn_add_to_cart();
        }
    }

    /// A transaction of one update of a random row of `table`; returns its key.
    pub fn single_update(&mut self, table: Table) -> Option<Key> {
        self.changes.clear();
        let key = self.random_key(table)?;
        self.update_key(table, key);
        Some(key)
    }

    /// A transaction of one update of `key`.
    pub fn single_update_of(&mut self, table: Table, key: Key) {
        self.changes.clear();
        self.update_key(table, key);
    }

    /// A random existing key of `table` (hot keys more likely).
    pub fn random_key(&mut self, table: Table) -> Option<Key> {
        match table {
            Table::Customers => (!self.customers.is_empty()).then(|| Key::Id(self.pick_customer())),
            Table::Products => Some(Key::Id(self.pick_product())),
            Table::Inventory => Some(Key::Id(self.pick_product())),
            Table::Carts => self.pick_open_cart(false).map(|(_, id)| Key::Id(id)),
            Table::CartItems => {
                let (_, cart) = self.pick_open_cart(true)?;
                let items = &self.cart_contents[&cart];
                Some(Key::Pair(
                    cart,
                    items[self.rng.random_range(0..items.len())],
                ))
            }
            Table::Orders => self.pick_active_order().map(|(_, id)| Key::Id(id)),
            Table::Payments => {
                let (_, order) = self.pick_active_order()?;
                Some(Key::Id(self.order_payment[order as usize - 1]))
            }
        }
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

    /// Skewed index in `0..n`: low indices (the hot keys) are picked far more often.
    fn skewed(&mut self, n: usize) -> usize {
        let u: f64 = self.rng.random();
        (((u * u * u) * n as f64) as usize).min(n - 1)
    }

    fn pick_customer(&mut self) -> i64 {
        let n = self.customers.len();
        let start = self.skewed(n);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.customers[i].is_some())
            .map_or(1, |i| i as i64 + 1)
    }

    fn pick_product(&mut self) -> i64 {
        self.skewed(self.products.len()) as i64 + 1
    }

    fn pick_open_cart(&mut self, with_items: bool) -> Option<(usize, i64)> {
        if self.open_carts.is_empty() {
            return None;
        }
        for _ in 0..8 {
            let i = self.rng.random_range(0..self.open_carts.len());
            let id = self.open_carts[i];
            if !with_items || self.cart_contents.get(&id).is_some_and(|c| !c.is_empty()) {
                return Some((i, id));
            }
        }
        None
    }

    /// A recent order still in progress (recent ones move more), dropping finished ones.
    fn pick_active_order(&mut self) -> Option<(usize, i64)> {
        while !self.active_orders.is_empty() {
            let n = self.active_orders.len();
            let i = n - 1 - self.skewed(n);
            let id = self.active_orders[i];
            match &self.orders[id as usize - 1] {
                Some(o) if o.status < ORDER_DELIVERED => return Some((i, id)),
                _ => {
                    self.active_orders.swap_remove(i);
                }
            }
        }
        None
    }

    fn new_customer(&mut self, emit: bool) -> i64 {
        let w = word_counts();
        let id = self.customers.len() as i64 + 1;
        self.customers.push(None);
        let r = &mut self.rng;
        let row = Customer {
            id,
            first: r.random_range(0..w.first) as u8,
            last: r.random_range(0..w.last) as u8,
            domain: r.random_range(0..w.domains) as u8,
            phone: r.random_bool(0.7).then(|| r.random_range(0..10_000_000)),
            loyalty_points: 0,
            is_active: true,
            birth_date: r.random_bool(0.5).then(|| r.random_range(-9000..12000)),
            created_at_ms: self.now_ms,
            updated_at_us: self.now_us,
        };
        self.insert(Row::Customer(row), emit);
        id
    }

    fn new_product(&mut self, emit: bool) -> i64 {
        let w = word_counts();
        let id = self.products.len() as i64 + 1;
        let r = &mut self.rng;
        let row = Product {
            id,
            adjective: r.random_range(0..w.adjectives) as u8,
            noun: r.random_range(0..w.nouns) as u8,
            category: r.random_range(0..w.categories) as u8,
            price_cents: r.random_range(299..25_000i64) / 100 * 100 + 99,
            weight_grams: r.random_range(50..5000),
            is_active: true,
            description: r
                .random_bool(0.6)
                .then(|| r.random_range(0..w.descriptions) as u8),
            created_at_ms: self.now_ms,
            updated_at_us: self.now_us,
        };
        let inv = Inventory {
            product_id: id,
            quantity: r.random_range(20..2000),
            reserved: 0,
            reorder_level: r.random_range(10..100),
            last_restock_date: Some(day(self.now_ms) - r.random_range(0..60)),
            updated_at_us: self.now_us,
        };
        self.insert(Row::Product(row), emit);
        self.insert(Row::Inventory(inv), emit);
        id
    }

    fn new_cart(&mut self, emit: bool) -> i64 {
        let id = self.carts.len() as i64 + 1;
        self.carts.push(None);
        let customer_id = if self.rng.random_bool(0.8) {
            Some(self.pick_customer())
        } else {
            None
        };
        let mut session = (self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128;
        // A version-4 UUID.
        session = (session & !(0xf << 76)) | (0x4 << 76);
        session = (session & !(0x3 << 62)) | (0x2 << 62);
        let row = Cart {
            id,
            customer_id,
            session_id: session,
            status: CART_OPEN,
            item_count: 0,
            created_at_ms: self.now_ms,
            updated_at_us: self.now_us,
        };
        self.insert(Row::Cart(row), emit);
        self.open_carts.push(id);
        self.cart_contents.insert(id, Vec::new());
        id
    }

    /// Adds a product to a cart (or one more of it) and updates the cart's item count.
    fn add_item(&mut self, cart_id: i64, product_id: i64, emit: bool) {
        if let Some(mut item) = self.cart_items.get(&(cart_id, product_id)).copied() {
            item.quantity += 1;
            if emit {
                self.update(Row::CartItem(item));
            } else {
                self.put(
                    Table::CartItems,
                    Key::Pair(cart_id, product_id),
                    Some(Row::CartItem(item)),
                );
            }
        } else {
            let item = CartItem {
                cart_id,
                product_id,
                quantity: self.rng.random_range(1..=3),
                unit_price_cents: self.products[product_id as usize - 1].price_cents,
                added_at_ms: self.now_ms,
                updated_at_us: self.now_us,
            };
            self.insert(Row::CartItem(item), emit);
            self.cart_contents
                .entry(cart_id)
                .or_default()
                .push(product_id);
        }
        let mut cart = self.carts[cart_id as usize - 1].unwrap();
        cart.item_count = self.cart_contents[&cart_id].len() as i32;
        if emit {
            self.update(Row::Cart(cart));
        } else {
            self.carts[cart_id as usize - 1] = Some(cart);
        }
    }

    fn place_order(&mut self, customer_id: i64, item_count: i32, subtotal: i64, emit: bool) -> i64 {
        let (streets, cities) = address_count();
        let id = self.orders.len() as i64 + 1;
        self.orders.push(None);
        let r = &mut self.rng;
        let address = Address {
            number: r.random_range(1..9999),
            street: r.random_range(0..streets) as u8,
            city: r.random_range(0..cities) as u8,
        };
        let billing = if r.random_bool(0.25) {
            Some(Address {
                number: r.random_range(1..9999),
                ..address
            })
        } else {
            None
        };
        let coupon = r
            .random_bool(0.15)
            .then(|| r.random_range(0..word_counts().coupons) as u8);
        let tax = subtotal * 8 / 100;
        let shipping = if subtotal >= 5000 { 0 } else { 599 };
        let currency = if !self.currency_column {
            0
        } else {
            match r.random_range(0..100) {
                0..85 => 0,
                85..95 => 1,
                _ => 2,
            }
        };
        let order = Order {
            id,
            customer_id,
            status: ORDER_PENDING,
            subtotal_cents: subtotal,
            tax_cents: tax,
            shipping_cents: shipping,
            total_cents: subtotal + tax + shipping,
            item_count,
            shipping_address: address,
            billing_address: billing,
            coupon,
            placed_date: day(self.now_ms),
            created_at_ms: self.now_ms,
            updated_at_us: self.now_us,
            currency,
        };
        let payment = Payment {
            id: self.payments.len() as i64 + 1,
            order_id: id,
            method: r.random_range(0..word_counts().payment_methods) as u8,
            status: PAYMENT_AUTHORIZED,
            amount_cents: order.total_cents,
            provider_ref: Some(r.next_u64()),
            authorized_at_ms: Some(self.now_ms),
            created_at_ms: self.now_ms,
            updated_at_us: self.now_us,
        };
        self.payments.push(None);
        self.order_payment.push(payment.id);
        self.insert(Row::Order(order), emit);
        self.insert(Row::Payment(payment), emit);
        self.active_orders.push(id);
        id
    }

    fn txn_add_to_cart(&mut self) {
        let cart_id = match self.pick_open_cart(false) {
            Some((_, id)) if self.rng.random_bool(0.7) => id,
            _ => self.new_cart(true),
        };
        let product_id = self.pick_product();
        self.add_item(cart_id, product_id, true);
    }

    fn txn_update_quantity(&mut self) {
        let Some(Key::Pair(c, p)) = self.random_key(Table::CartItems) else {
            return;
        };
        let mut item = self.cart_items[&(c, p)];
        item.quantity = self.rng.random_range(1..=5);
        self.update(Row::CartItem(item));
    }

    fn txn_remove_item(&mut self) {
        let Some(Key::Pair(c, p)) = self.random_key(Table::CartItems) else {
            return;
        };
        self.delete(Table::CartItems, Key::Pair(c, p));
        let contents = self.cart_contents.get_mut(&c).unwrap();
        contents.retain(|&x| x != p);
        let mut cart = self.carts[c as usize - 1].unwrap();
        cart.item_count = contents.len() as i32;
        self.update(Row::Cart(cart));
    }

    /// An order: touches orders, payments, inventory, cart_items and carts in one transaction.
    fn txn_checkout(&mut self) {
        let Some((i, cart_id)) = self.pick_open_cart(true) else {
            return;
        };
        self.open_carts.swap_remove(i);
        let items = self.cart_contents.remove(&cart_id).unwrap_or_default();
        let mut cart = self.carts[cart_id as usize - 1].unwrap();
        let customer_id = match cart.customer_id {
            Some(c) => c,
            None => self.new_customer(true),
        };
        let lines: Vec<CartItem> = items
            .iter()
            .map(|&p| self.cart_items[&(cart_id, p)])
            .collect();
        let subtotal = lines
            .iter()
            .map(|l| l.unit_price_cents * l.quantity as i64)
            .sum();
        self.place_order(customer_id, lines.len() as i32, subtotal, true);
        for l in &lines {
            let mut inv = self.inventory[l.product_id as usize - 1];
            inv.quantity -= l.quantity;
            if inv.quantity < inv.reorder_level {
                inv.quantity += 500; // auto-replenished from the warehouse
                inv.last_restock_date = Some(day(self.now_ms));
            }
            self.update(Row::Inventory(inv));
        }
        for l in &lines {
            self.delete(Table::CartItems, Key::Pair(cart_id, l.product_id));
        }
        cart.status = CART_CONVERTED;
        cart.item_count = 0;
        self.update(Row::Cart(cart));
    }

    fn txn_order_progress(&mut self) {
        let Some((i, id)) = self.pick_active_order() else {
            return;
        };
        let mut order = self.orders[id as usize - 1].unwrap();
        order.status += 1;
        self.update(Row::Order(order));
        let pid = self.order_payment[id as usize - 1];
        if let Some(mut p) = self.payments[pid as usize - 1]
            && p.status == PAYMENT_AUTHORIZED
        {
            p.status = PAYMENT_CAPTURED;
            self.update(Row::Payment(p));
        }
        if order.status >= ORDER_DELIVERED {
            self.active_orders.swap_remove(i);
        }
    }

    fn txn_cancel_order(&mut self) {
        let Some((i, id)) = self.pick_active_order() else {
            return;
        };
        let mut order = self.orders[id as usize - 1].unwrap();
        if order.status > 1 {
            return self.txn_order_progress();
        }
        order.status = ORDER_CANCELLED;
        self.update(Row::Order(order));
        let pid = self.order_payment[id as usize - 1];
        if let Some(mut p) = self.payments[pid as usize - 1] {
            p.status = PAYMENT_REFUNDED;
            self.update(Row::Payment(p));
        }
        self.active_orders.swap_remove(i);
    }

    fn txn_customer_update(&mut self) {
        let id = self.pick_customer();
        let Some(mut c) = self.customers[id as usize - 1] else {
            return;
        };
        match self.rng.random_range(0..4) {
            0 => c.phone = Some(self.rng.random_range(0..10_000_000)),
            1 => c.is_active = !c.is_active,
            _ => c.loyalty_points += self.rng.random_range(1..250),
        }
        self.update(Row::Customer(c));
    }

    fn txn_product_update(&mut self) {
        let id = self.pick_product();
        let mut p = self.products[id as usize - 1];
        if self.rng.random_bool(0.8) {
            let pct = self.rng.random_range(-10..=10i64);
            p.price_cents = (p.price_cents + p.price_cents * pct / 100).max(99);
        } else {
            p.description = Some(self.rng.random_range(0..word_counts().descriptions) as u8);
        }
        self.update(Row::Product(p));
    }

    fn txn_restock(&mut self) {
        let id = self.rng.random_range(0..self.products.len()) as i64 + 1;
        let mut inv = self.inventory[id as usize - 1];
        inv.quantity += self.rng.random_range(50..500);
        inv.last_restock_date = Some(day(self.now_ms));
        self.update(Row::Inventory(inv));
    }

    fn txn_abandon_cart(&mut self) {
        let Some((i, cart_id)) = self.pick_open_cart(false) else {
            return;
        };
        self.open_carts.swap_remove(i);
        let items = self.cart_contents.remove(&cart_id).unwrap_or_default();
        for p in items {
            self.delete(Table::CartItems, Key::Pair(cart_id, p));
        }
        if self.rng.random_bool(0.5) {
            self.delete(Table::Carts, Key::Id(cart_id));
        } else {
            let mut cart = self.carts[cart_id as usize - 1].unwrap();
            cart.status = 2;
            cart.item_count = 0;
            self.update(Row::Cart(cart));
        }
    }

    fn txn_delete_customer(&mut self) {
        // Account deletions hit the long tail, not the hot customers.
        let n = self.customers.len();
        let i = self.rng.random_range(n / 2..n);
        if self.customers[i].is_some() {
            self.delete(Table::Customers, Key::Id(i as i64 + 1));
        }
    }

    /// An ordinary update of `key`, as the shop would make it.
    fn update_key(&mut self, table: Table, key: Key) {
        let Some(mut row) = self.get(table, key) else {
            return;
        };
        match &mut row {
            Row::Customer(c) => c.loyalty_points += 10,
            Row::Product(p) => p.price_cents += 100,
            Row::Inventory(i) => i.quantity -= 1,
            Row::Cart(_) => {}
            Row::CartItem(i) => i.quantity += 1,
            Row::Order(o) => {
                if o.status < ORDER_DELIVERED - 1 {
                    o.status += 1
                }
            }
            Row::Payment(p) => {
                if p.status == PAYMENT_AUTHORIZED {
                    p.status = PAYMENT_CAPTURED
                }
            }
        }
        self.update(row);
    }

    /// A row for `table` with primary key `id` that the primary never wrote (for `extra`).
    pub fn phantom_row(&mut self, table: Table, id: i64) -> Row {
        let template_key = self.random_key(table).unwrap_or(Key::Id(1));
        let template = self.get(table, template_key);
        let now_ms = self.now_ms;
        let now_us = self.now_us;
        let mut row = match template {
            Some(row) => row,
            None => Row::Customer(Customer {
                id,
                first: 0,
                last: 0,
                domain: 0,
                phone: None,
                loyalty_points: 0,
                is_active: true,
                birth_date: None,
                created_at_ms: now_ms,
                updated_at_us: now_us,
            }),
        };
        match &mut row {
            Row::Customer(r) => (r.id, r.created_at_ms, r.loyalty_points) = (id, now_ms, 0),
            Row::Product(r) => (r.id, r.created_at_ms) = (id, now_ms),
            Row::Inventory(r) => r.product_id = id,
            Row::Cart(r) => (r.id, r.created_at_ms, r.item_count) = (id, now_ms, 0),
            Row::CartItem(r) => (r.cart_id, r.added_at_ms) = (id, now_ms),
            Row::Order(r) => (r.id, r.created_at_ms, r.status) = (id, now_ms, ORDER_PENDING),
            Row::Payment(r) => (r.id, r.created_at_ms, r.status) = (id, now_ms, PAYMENT_AUTHORIZED),
        }
        row.touch(now_us);
        row
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
