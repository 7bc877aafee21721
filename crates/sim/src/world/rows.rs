//! New rows as the shop creates them — customers, products with their inventory, carts and
//! their items, orders with their payment — and rows the primary never wrote.

use rand::{Rng, RngCore};

use super::{World, day};
use crate::model::*;
use crate::schema::Table;

impl World {
    pub(super) fn new_customer(&mut self, emit: bool) -> i64 {
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

    pub(super) fn new_product(&mut self, emit: bool) -> i64 {
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

    pub(super) fn new_cart(&mut self, emit: bool) -> i64 {
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
    pub(super) fn add_item(&mut self, cart_id: i64, product_id: i64, emit: bool) {
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

    pub(super) fn place_order(
        &mut self,
        customer_id: i64,
        item_count: i32,
        subtotal: i64,
        emit: bool,
    ) -> i64 {
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
