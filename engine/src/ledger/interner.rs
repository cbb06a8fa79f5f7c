//! Name tables for locations and channels.
//!
//! Names are few (thousands) and read constantly, so lookups take a shared read lock and the
//! write lock is only taken to add a name. The lock is a leaf: nothing else is locked while it
//! is held, so it cannot take part in a deadlock. Ids are assigned in first-seen order, which
//! may differ between a live run and a replay, so nothing observable (digests, reports) may
//! depend on an id's value, only on its name.

use crate::sync::RwLock;
use compact_str::CompactString;
use foldhash::fast::FixedState;
use std::collections::HashMap;

#[derive(Debug, Default)]
struct Names {
    ids: HashMap<CompactString, u32, FixedState>,
    names: Vec<CompactString>,
}

#[derive(Debug, Default)]
pub(crate) struct Interner {
    table: RwLock<Names>,
}

impl Interner {
    pub fn get(&self, name: &str) -> Option<u32> {
        let table = self.table.read().expect("interner lock poisoned");
        table.ids.get(name).copied()
    }

    pub fn intern(&self, name: &str) -> u32 {
        if let Some(id) = self.get(name) {
            return id;
        }
        let mut table = self.table.write().expect("interner lock poisoned");
        if let Some(&id) = table.ids.get(name) {
            return id;
        }
        let id = u32::try_from(table.names.len()).expect("fewer than 2^32 names");
        table.names.push(CompactString::from(name));
        table.ids.insert(CompactString::from(name), id);
        id
    }

    pub fn name(&self, id: u32) -> CompactString {
        let table = self.table.read().expect("interner lock poisoned");
        table.names[id as usize].clone()
    }
}
