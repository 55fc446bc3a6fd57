//! Registered resources: their CRUD, and the rules each write is judged
//! by, kept in a cache that every write checks against the database.
//!
//! A write names the version of its resource's rules it was judged by;
//! the store refuses it ('stale') when the resource has changed since, and
//! the write is judged again by the resource as it is. A write about to be
//! refused by the rules first reads them again. So a reserve stays one
//! round trip, and no write is ever judged by rules that are no longer the
//! resource's.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use abi::{
    AvailabilityAnswer, AvailabilityRequest, Error, MAX_PAGE_BYTES, Resource, ResourceAvailability,
    ResourceId, ResourceListing, ResourcePage, ResourcePatch, ResourceSpec, Result, Rules, SlotAsk,
    Timespan,
};
use chrono::TimeDelta;

use super::Engine;
use crate::dialect::Dialect;

/// The most slot starts one Availability request may have judged, over
/// all its resources (an answer listing that many would be far past the
/// 4 MiB an answer may take).
const MAX_SLOT_STARTS: i64 = 400_000;

/// How many resources' rules the cache keeps before it starts again.
const CACHED_RESOURCES: usize = 10_000;

/// A resource's rules, at a version of it (0: not registered).
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub version: i64,
    pub rules: Rules,
}

impl Known {
    fn unregistered() -> Arc<Known> {
        Arc::new(Known {
            version: 0,
            rules: Rules::default(),
        })
    }
}

/// The rules of the resources writes have touched.
#[derive(Default)]
pub(crate) struct RulesCache {
    known: RwLock<HashMap<ResourceId, Arc<Known>>>,
}

impl RulesCache {
    /// What is known of `id`; a resource not seen yet is taken to be
    /// unregistered (the store says otherwise if it is).
    pub fn get(&self, id: &ResourceId) -> Arc<Known> {
        self.known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .unwrap_or_else(Known::unregistered)
    }

    fn put(&self, id: ResourceId, known: Arc<Known>) {
        let mut map = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHED_RESOURCES && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, known);
    }
}

impl<D: Dialect> Engine<D> {
    /// Reads `id`'s rules from the store (after a write found them stale).
    pub(super) async fn refresh_rules(&self, id: &ResourceId) -> Result<Arc<Known>> {
        let known = match self.dialect.resource(id).await? {
            Some(r) => Arc::new(Known {
                version: r.version,
                rules: r.rules(),
            }),
            None => Known::unregistered(),
        };
        self.rules.put(id.clone(), known.clone());
        Ok(known)
    }

    /// The store's rules for `id` when they are other than `known`, those a
    /// write was about to be refused by (the cache takes them too, and the
    /// caller judges again): no write is refused by rules that are no
    /// longer its resource's.
    pub(super) async fn rules_changed(
        &self,
        id: &ResourceId,
        known: &Known,
    ) -> Result<Option<Arc<Known>>> {
        let fresh = self.refresh_rules(id).await?;
        Ok((fresh.version != known.version).then_some(fresh))
    }

    /// Whether the rules of any of `judged` (each resource with the rules
    /// it was judged by) changed, as [`Engine::rules_changed`].
    pub(super) async fn any_rules_changed(
        &self,
        judged: &[(ResourceId, Arc<Known>)],
    ) -> Result<bool> {
        let mut changed = false;
        for (id, known) in judged {
            changed |= self.rules_changed(id, known).await?.is_some();
        }
        Ok(changed)
    }

    fn remember(&self, r: &Resource) {
        self.rules.put(
            r.spec.id.clone(),
            Arc::new(Known {
                version: r.version,
                rules: r.rules(),
            }),
        );
    }

    pub(crate) async fn create_resource(&self, spec: ResourceSpec) -> Result<Resource> {
        let r = self.dialect.create_resource(&spec, self.now()).await?;
        self.remember(&r);
        Ok(r)
    }

    pub(crate) async fn get_resource(&self, id: ResourceId) -> Result<Resource> {
        let r = self
            .dialect
            .resource(&id)
            .await?
            .ok_or(Error::ResourceNotFound(id))?;
        self.remember(&r);
        Ok(r)
    }

    pub(crate) async fn update_resource(&self, patch: ResourcePatch) -> Result<Resource> {
        let change = |current: &Resource| -> Result<ResourceSpec> {
            // Deleted first: re-reading it would not help.
            if current.deleted_at.is_some() {
                return Err(Error::ResourceDeleted(current.spec.id.clone()));
            }
            if let Some(etag) = &patch.etag
                && *etag != current.etag()
            {
                return Err(Error::EtagMismatch {
                    given: etag.clone(),
                    current: current.etag(),
                });
            }
            patch.apply(&current.spec)
        };
        let r = self
            .dialect
            .update_resource(&patch.id, &change, self.now())
            .await?;
        self.remember(&r);
        Ok(r)
    }

    pub(crate) async fn delete_resource(&self, id: ResourceId, force: bool) -> Result<Resource> {
        let r = self.dialect.delete_resource(&id, force, self.now()).await?;
        self.remember(&r);
        Ok(r)
    }

    /// Segments and slots of every resource asked, from one snapshot,
    /// judged by the rules Reserve uses.
    pub(crate) async fn availability(
        &self,
        request: AvailabilityRequest,
    ) -> Result<AvailabilityAnswer> {
        // Every change up to this position committed before the read below
        // began, so the read reflects it.
        let as_of_change_id = self.feed().await?.delivered();
        let now = self.now();
        let window = request.window;
        let mut assumed: Vec<Arc<Known>> = request
            .resource_ids
            .iter()
            .map(|id| self.rules.get(id))
            .collect();
        // The usage is read over the window widened by each resource's
        // buffers (a slot's buffers reach past the window), as the cache
        // knows them; read again if a resource's buffers have grown since.
        for _ in 0..3 {
            let asks: Vec<(ResourceId, Timespan)> = request
                .resource_ids
                .iter()
                .zip(&assumed)
                .map(|(id, known)| (id.clone(), widened(window, &known.rules)))
                .collect();
            let read = self.dialect.usage(&asks, now).await?;
            let mut stale = false;
            for ((id, usage), known) in request.resource_ids.iter().zip(&read).zip(&mut assumed) {
                let current = usage.resource.as_ref().map_or(0, |r| r.version);
                if current != known.version {
                    if let Some(r) = &usage.resource {
                        self.remember(r);
                    }
                    let fresh = self.rules.get(id);
                    stale |= covers_less(&known.rules, &fresh.rules);
                    *known = fresh;
                }
            }
            if stale {
                continue;
            }
            if let Some((duration, step)) = request.slot {
                // A deleted resource lists no slots: it judges none.
                let starts: i64 = read
                    .iter()
                    .filter(|usage| {
                        usage
                            .resource
                            .as_ref()
                            .is_none_or(|r| r.deleted_at.is_none())
                    })
                    .map(|usage| {
                        let rules = usage
                            .resource
                            .as_ref()
                            .map_or_else(Rules::default, Resource::rules);
                        let step = step.unwrap_or_else(|| rules.slot_step(duration));
                        let micros = |d: TimeDelta| d.num_microseconds().unwrap_or(i64::MAX);
                        micros(window.end() - window.start()) / micros(step).max(1)
                    })
                    .sum();
                if starts > MAX_SLOT_STARTS {
                    return Err(Error::invalid(
                        "slot_step",
                        format!(
                            "the request would judge {starts} slot starts, more than \
                             {MAX_SLOT_STARTS}: ask for fewer resources, a shorter window or a \
                             longer slot_step"
                        ),
                    ));
                }
            }
            let resources = request
                .resource_ids
                .iter()
                .zip(read)
                .map(|(id, usage)| {
                    let rules = usage
                        .resource
                        .as_ref()
                        .map_or_else(Rules::default, Resource::rules);
                    let slots = request.slot.map(|(duration, step)| SlotAsk {
                        duration,
                        step: step.unwrap_or_else(|| rules.slot_step(duration)),
                        quantity: request.quantity,
                    });
                    ResourceAvailability {
                        resource_id: id.clone(),
                        capacity: rules.capacity,
                        deleted: rules.deleted,
                        availability: rules.availability(window, &usage.usage, slots, now),
                    }
                })
                .collect();
            return Ok(AvailabilityAnswer {
                resources,
                as_of_change_id,
            });
        }
        Err(Error::Unavailable(
            "the resources' rules kept changing while their availability was read; try again"
                .into(),
        ))
    }

    pub(crate) async fn list_resources(&self, listing: ResourceListing) -> Result<ResourcePage> {
        // Labels are matched here: resources are few next to reservations,
        // and read in batches until the page is full.
        let batch = (listing.page_size as i64 + 1).max(64);
        let mut after = listing.after.clone();
        let mut found: Vec<Resource> = Vec::new();
        // A page ends at its size, or earlier at MAX_PAGE_BYTES (never
        // empty): a resource's rules may take tens of KiB.
        let mut bytes = 0;
        loop {
            let rows = self
                .dialect
                .list_resources(after.as_ref(), batch, listing.show_deleted)
                .await?;
            let exhausted = (rows.len() as i64) < batch;
            for r in rows {
                after = Some(r.spec.id.clone());
                let matches = listing
                    .labels
                    .iter()
                    .all(|(k, v)| r.spec.labels.get(k) == Some(v));
                if matches {
                    let size = r.wire_size_bound();
                    if found.len() == listing.page_size
                        || (!found.is_empty() && bytes + size > MAX_PAGE_BYTES)
                    {
                        let next = found.last().map(|r| r.spec.id.clone());
                        return Ok(ResourcePage {
                            resources: found,
                            next_after: next,
                        });
                    }
                    bytes += size;
                    found.push(r);
                }
            }
            if exhausted {
                return Ok(ResourcePage {
                    resources: found,
                    next_after: None,
                });
            }
        }
    }
}

/// `window` widened by the buffers of `rules`.
fn widened(window: Timespan, rules: &Rules) -> Timespan {
    let (before, after) = rules.buffers();
    window
        .start()
        .checked_sub_signed(before)
        .zip(window.end().checked_add_signed(after))
        .and_then(|(start, end)| Timespan::new(start, end).ok())
        .unwrap_or(window)
}

/// Whether a read widened by `assumed`'s buffers misses some of what
/// `fresh`'s buffers need.
fn covers_less(assumed: &Rules, fresh: &Rules) -> bool {
    let (a, b) = (assumed.buffers(), fresh.buffers());
    b.0 > a.0 || b.1 > a.1
}
