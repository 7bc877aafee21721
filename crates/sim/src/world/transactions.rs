//! The shop's business transactions, one chosen by weight at a time, and the single-row
//! updates a run asks for by table or by key.

use rand::Rng;

use super::{World, day};
use crate::model::*;
use crate::schema::Table;

impl World {
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
}
