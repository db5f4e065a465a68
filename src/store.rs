//! Every resource Herald runs, with Kubernetes-style metadata, and the ones registered through
//! the admin API persisted in `--data-dir/resources/{plural}/{namespace}/{name}.json`.
//!
//! Files from `--config` are loaded at each start (and again on a reload) and are read-only
//! here; objects from the API survive restarts. Each write goes to a temporary file that is synced and renamed into
//! place, so a crash leaves the old or the new object, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::config::{json_document, parse_json_document, ConfigError, Loaded, Resource};
use crate::kinds::{Kind, ObjectKey};

/// Who may change an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Declared in this `--config` file: read-only through the API.
    File(String),
    /// Registered through the admin API.
    Api,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub resource: Resource,
    pub owner: Owner,
}

/// What the store could not do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{key} is declared in {file} and was also registered through the admin API (stored in {stored}); remove one of them")]
    Duplicate {
        key: ObjectKey,
        file: String,
        stored: String,
    },
    #[error("{key} is declared twice: in {first} and in {second}; remove one of them")]
    DeclaredTwice {
        key: ObjectKey,
        first: String,
        second: String,
    },
}

impl StoreError {
    /// The data directory's disk (or the user's quota) is full: retrying after space is
    /// freed succeeds.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { error, .. } if matches!(
            error.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ))
    }
}

/// What a reload of the config files changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

#[derive(Clone)]
pub struct ResourceStore {
    dir: PathBuf,
    entries: BTreeMap<ObjectKey, Entry>,
    last_version: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.display().to_string(),
        error,
    }
}

impl ResourceStore {
    /// Loads the objects stored in `dir` and adds those of the config files.
    pub fn open(dir: &Path, files: Vec<Loaded>) -> Result<Self, StoreError> {
        let mut store = Self {
            dir: dir.to_owned(),
            entries: BTreeMap::new(),
            last_version: 0,
        };
        for path in stored_files(dir)? {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            // JSON's own parser: the YAML loader of config files refuses some of what
            // serde_json writes (found by fuzzing), and then Herald could not start.
            let loaded = parse_json_document(&path.display().to_string(), &text)?;
            let version = loaded
                .resource
                .meta()
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_default();
            store.last_version = store.last_version.max(version);
            store.entries.insert(
                ObjectKey::of(&loaded.resource),
                Entry {
                    resource: loaded.resource,
                    owner: Owner::Api,
                },
            );
        }
        store.replace_files(files)?;
        Ok(store)
    }

    /// Puts the objects of the config files in place of those loaded before. An object that
    /// did not change keeps its metadata; a changed one keeps its `uid` and creation time and
    /// gets a new `resourceVersion` (and `generation`, when its spec changed), as on
    /// Kubernetes. On an error the store may be half changed: reload into a clone.
    pub fn replace_files(&mut self, files: Vec<Loaded>) -> Result<FileChanges, StoreError> {
        let (before, api): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(_, entry)| matches!(entry.owner, Owner::File(_)));
        self.entries = api;
        let now = now();
        let mut changes = FileChanges::default();
        for loaded in files {
            let key = ObjectKey::of(&loaded.resource);
            match self.entries.get(&key).map(|e| &e.owner) {
                Some(Owner::Api) => {
                    return Err(StoreError::Duplicate {
                        stored: self.path_of(&key).display().to_string(),
                        key,
                        file: loaded.origin,
                    })
                }
                Some(Owner::File(first)) => {
                    return Err(StoreError::DeclaredTwice {
                        first: first.clone(),
                        key,
                        second: loaded.origin,
                    })
                }
                None => {}
            }
            let mut resource = loaded.resource;
            match before.get(&key) {
                Some(previous) => {
                    let old = previous.resource.meta();
                    let meta = resource.meta_mut();
                    meta.uid = meta.uid.take().or_else(|| old.uid.clone());
                    meta.creation_timestamp = meta
                        .creation_timestamp
                        .take()
                        .or_else(|| old.creation_timestamp.clone());
                    meta.generation = meta.generation.or(old.generation);
                    meta.resource_version = old.resource_version.clone();
                    if resource.to_json() != previous.resource.to_json() {
                        let spec_changed = resource.spec_json() != previous.resource.spec_json();
                        let version = self.next_version();
                        let meta = resource.meta_mut();
                        meta.generation =
                            Some(old.generation.unwrap_or(1) + i64::from(spec_changed));
                        meta.resource_version = Some(version);
                        changes.changed += 1;
                    }
                }
                None => {
                    let version = self.next_version();
                    let meta = resource.meta_mut();
                    meta.uid
                        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
                    meta.generation.get_or_insert(1);
                    meta.resource_version = Some(version);
                    meta.creation_timestamp.get_or_insert_with(|| now.clone());
                    changes.added += 1;
                }
            }
            self.entries.insert(
                key,
                Entry {
                    resource,
                    owner: Owner::File(loaded.origin),
                },
            );
        }
        changes.removed = before
            .keys()
            .filter(|key| !self.entries.contains_key(*key))
            .count();
        Ok(changes)
    }

    /// Every object, as the validation of the desired state takes them.
    pub fn loaded(&self) -> Vec<Loaded> {
        self.entries.values().map(entry_as_loaded).collect()
    }

    /// Every object but `key`, plus `replacement` if given: the state a change would make.
    pub fn loaded_with(&self, key: &ObjectKey, replacement: Option<&Resource>) -> Vec<Loaded> {
        let mut out: Vec<Loaded> = self
            .entries
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, entry)| entry_as_loaded(entry))
            .collect();
        if let Some(resource) = replacement {
            out.push(Loaded {
                origin: API_ORIGIN.to_owned(),
                resource: resource.clone(),
            });
        }
        out
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Objects of a kind, in one namespace or all, ordered by namespace and name.
    pub fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |(key, _)| {
                key.kind == kind.kind && namespace.is_none_or(|ns| key.namespace == ns)
            })
            .map(|(_, entry)| entry)
    }

    /// A new `resourceVersion`: a counter over the whole store.
    pub fn next_version(&mut self) -> String {
        self.last_version += 1;
        self.last_version.to_string()
    }

    /// Writes an API object durably, then keeps it.
    pub fn save(&mut self, resource: Resource) -> Result<(), StoreError> {
        let key = ObjectKey::of(&resource);
        let path = self.path_of(&key);
        let folder = path.parent().unwrap_or(&self.dir).to_owned();
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let text = json_document(&resource);
        let temporary = path.with_extension("json.tmp");
        let written = std::fs::File::create(&temporary)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .map_err(io(&temporary));
        if let Err(error) = written {
            // A full disk must not keep the half-written file: it holds the space it needs.
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        sync_dir(&folder)?;
        self.entries.insert(
            key,
            Entry {
                resource,
                owner: Owner::Api,
            },
        );
        Ok(())
    }

    /// Deletes an API object's file, then forgets it.
    pub fn delete(&mut self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path_of(key);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.dir))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&path)(error)),
        }
        self.entries.remove(key);
        Ok(())
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let plural = crate::kinds::KINDS
            .into_iter()
            .find(|k| k.kind == key.kind)
            .map(|k| k.plural)
            .unwrap_or("unknown");
        self.dir
            .join(plural)
            .join(&key.namespace)
            .join(format!("{}.json", key.name))
    }
}

fn entry_as_loaded(entry: &Entry) -> Loaded {
    let origin = match &entry.owner {
        Owner::File(file) => file.clone(),
        Owner::Api => API_ORIGIN.to_owned(),
    };
    Loaded {
        origin,
        resource: entry.resource.clone(),
    }
}

/// Where errors say an API object came from.
const API_ORIGIN: &str = "admin API";

/// `metadata.creationTimestamp` for objects created now.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// `{dir}/{plural}/{namespace}/{name}.json`, in a stable order.
fn stored_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for kind in crate::kinds::KINDS {
        let kind_dir = dir.join(kind.plural);
        if !kind_dir.is_dir() {
            continue;
        }
        for namespace in std::fs::read_dir(&kind_dir).map_err(io(&kind_dir))? {
            let namespace = namespace.map_err(io(&kind_dir))?.path();
            if !namespace.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&namespace).map_err(io(&namespace))? {
                let file = file.map_err(io(&namespace))?.path();
                if file.extension().and_then(|e| e.to_str()) == Some("json") {
                    out.push(file);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_with_any_character_are_read_back_as_written() {
        // Characters and a key that serde_json writes as they are and YAML would refuse.
        let yaml = format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: default\n  labels: {{odd: \"a\\x7f\\u0085\\u0092\\u2028\\u2029\\ufeff\\uffff\\ufffe\\u00a0z\"}}\n  annotations:\n    ? {}\n    : long\n",
            "k".repeat(1_100)
        );
        let resource = crate::config::parse_documents("f.yaml", &yaml)
            .unwrap()
            .remove(0)
            .resource;
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResourceStore::open(dir.path(), Vec::new()).unwrap();
        store.save(resource.clone()).unwrap();
        let reopened = ResourceStore::open(dir.path(), Vec::new()).unwrap();
        let key = ObjectKey::of(&resource);
        assert_eq!(
            reopened.entries.get(&key).map(|e| e.resource.to_json()),
            Some(resource.to_json())
        );
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use crate::config::parse_documents;

    fn files(yaml: &str) -> Vec<Loaded> {
        parse_documents("f.yaml", yaml).unwrap()
    }

    const BROKER: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n";

    /// A reload keeps an unchanged object as it was; a changed one keeps its uid, gets a new
    /// resourceVersion, and a new generation only when its spec changed.
    #[test]
    fn reloads_move_versions_as_kubernetes_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResourceStore::open(dir.path(), files(BROKER)).unwrap();
        let key = ObjectKey::new(&crate::kinds::BROKER, "default", "b");
        let first = store.get(&key).unwrap().resource.meta().clone();
        assert_eq!(first.generation, Some(1));
        let same = store.replace_files(files(BROKER)).unwrap();
        assert_eq!((same.added, same.changed, same.removed), (0, 0, 0));
        assert_eq!(store.get(&key).unwrap().resource.meta(), &first);

        let labelled = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, labels: {a: b}}\n";
        assert_eq!(store.replace_files(files(labelled)).unwrap().changed, 1);
        let meta = store.get(&key).unwrap().resource.meta().clone();
        assert_eq!(
            (meta.uid.as_ref(), meta.generation),
            (first.uid.as_ref(), Some(1))
        );
        assert_ne!(meta.resource_version, first.resource_version);

        let spec = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: {delivery: {retry: 2}}\n";
        store.replace_files(files(spec)).unwrap();
        assert_eq!(store.get(&key).unwrap().resource.meta().generation, Some(2));
        assert_eq!(store.replace_files(Vec::new()).unwrap().removed, 1);
    }

    /// API objects survive a reopen, deleted ones do not, and a file may not declare an
    /// object the API registered.
    #[test]
    fn api_objects_are_kept_and_never_shadowed_by_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResourceStore::open(dir.path(), Vec::new()).unwrap();
        let broker = files(BROKER).remove(0).resource;
        store.save(broker.clone()).unwrap();
        let reopened = ResourceStore::open(dir.path(), Vec::new()).unwrap();
        let key = ObjectKey::of(&broker);
        assert_eq!(
            reopened.get(&key).map(|e| e.owner.clone()),
            Some(Owner::Api)
        );
        let error = ResourceStore::open(dir.path(), files(BROKER))
            .err()
            .unwrap();
        assert!(matches!(error, StoreError::Duplicate { .. }), "{error}");
        store.delete(&key).unwrap();
        let reopened = ResourceStore::open(dir.path(), Vec::new()).unwrap();
        assert!(reopened.get(&key).is_none());
    }
}
