//! Name tables for locations, channels and principals.
//!
//! Names are few (thousands) and read constantly, so lookups take a shared read lock and the
//! write lock is only taken to add a name. The lock is a leaf: nothing else is locked while it
//! is held, so it cannot take part in a deadlock. Ids are assigned in first-seen order, which
//! may differ between a live run and a replay, so nothing observable (digests, reports) may
//! depend on an id's value, only on its name. Both tables are behind the one lock, so a
//! reserve resolves its channel and all its locations in one acquisition (`get_reserve`), and
//! carries the ids from deciding to applying.

use crate::hold::PrincipalRef;
use crate::sync::RwLock;
use crate::types::PrincipalName;
use compact_str::CompactString;
use foldhash::fast::FixedState;
use smallvec::SmallVec;
use std::collections::HashMap;

/// Which table a name is in; each has its own ids.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Location = 0,
    Channel = 1,
    Principal = 2,
}

#[derive(Debug, Default)]
struct Names {
    ids: HashMap<CompactString, u32, FixedState>,
    names: Vec<CompactString>,
}

#[derive(Debug, Default)]
pub(crate) struct Interner {
    tables: RwLock<[Names; 3]>,
}

impl Interner {
    pub fn get(&self, kind: Kind, name: &str) -> Option<u32> {
        let tables = self.tables.read().expect("interner lock poisoned");
        tables[kind as usize].ids.get(name).copied()
    }

    /// The ids of a reserve's channel and line locations, under one read lock (`None` for a
    /// name never interned).
    pub fn get_reserve<'a>(
        &self,
        channel: &str,
        locations: impl Iterator<Item = &'a str>,
    ) -> (Option<u32>, SmallVec<[Option<u32>; 4]>) {
        let tables = self.tables.read().expect("interner lock poisoned");
        let [location_ids, channel_ids, _] = &*tables;
        let channel = channel_ids.ids.get(channel).copied();
        let locations = locations
            .map(|name| location_ids.ids.get(name).copied())
            .collect();
        (channel, locations)
    }

    pub fn intern(&self, kind: Kind, name: &str) -> u32 {
        if let Some(id) = self.get(kind, name) {
            return id;
        }
        let mut tables = self.tables.write().expect("interner lock poisoned");
        let table = &mut tables[kind as usize];
        if let Some(&id) = table.ids.get(name) {
            return id;
        }
        let id = u32::try_from(table.names.len()).expect("fewer than 2^32 names");
        table.names.push(CompactString::from(name));
        table.ids.insert(CompactString::from(name), id);
        id
    }

    /// A copy of every name of `kind`, indexed by id (for resolving many ids without the
    /// lock: ids are only ever appended, so an id seen earlier is always in it).
    pub fn names(&self, kind: Kind) -> Vec<CompactString> {
        let tables = self.tables.read().expect("interner lock poisoned");
        tables[kind as usize].names.clone()
    }

    /// The reference a hold entry keeps for `by`, interning its name.
    pub fn principal(&self, by: Option<&PrincipalName>) -> PrincipalRef {
        let Some(by) = by else {
            return PrincipalRef::NONE;
        };
        PrincipalRef::of(self.intern(Kind::Principal, by.as_str()))
    }

    /// The name `by` refers to; `None` for no principal, and for [`PrincipalRef::UNKNOWN`].
    pub fn principal_name(&self, by: PrincipalRef) -> Option<PrincipalName> {
        Some(PrincipalName(self.name(Kind::Principal, by.id()?)))
    }

    pub fn name(&self, kind: Kind, id: u32) -> CompactString {
        let tables = self.tables.read().expect("interner lock poisoned");
        tables[kind as usize].names[id as usize].clone()
    }
}
