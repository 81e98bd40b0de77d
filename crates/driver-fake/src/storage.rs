//! The fake [`StoragePool`]: volumes as records in a [`FakeWorld`], locked while a fake VM uses them.

use hafen_driver_api::storage::{
    CloneVolumeError, CreateVolume, CreateVolumeError, DeleteVolumeError, ListVolumesError,
    ResizeVolumeError, StoragePool, VolumeFormat, VolumeInfo, validate_volume_name,
};

use crate::{FakeVolume, FakeWorld, WorldState};

#[derive(Debug, Clone)]
pub struct FakeStoragePool {
    world: FakeWorld,
    name: String,
}

impl FakeStoragePool {
    pub(crate) fn new(world: FakeWorld, name: String) -> FakeStoragePool {
        FakeStoragePool { world, name }
    }

    fn info(name: &str, volume: &FakeVolume) -> VolumeInfo {
        VolumeInfo {
            name: name.to_string(),
            format: volume.format,
            size_bytes: volume.size_bytes,
            backing_volume: volume.backing_volume.clone(),
        }
    }

    fn volume<'a>(&self, state: &'a WorldState, name: &str) -> Option<&'a FakeVolume> {
        state.pools.get(&self.name)?.get(name)
    }

    fn insert(&self, state: &mut WorldState, name: &str, volume: FakeVolume) -> VolumeInfo {
        let info = Self::info(name, &volume);
        state
            .pools
            .entry(self.name.clone())
            .or_default()
            .insert(name.to_string(), volume);
        info
    }

    fn copy_checks(
        &self,
        state: &WorldState,
        source: &str,
        name: &str,
    ) -> Result<FakeVolume, CloneVolumeError> {
        validate_volume_name(name)?;
        let base = self
            .volume(state, source)
            .ok_or_else(|| CloneVolumeError::SourceMissing {
                name: source.to_string(),
            })?;
        if self.volume(state, name).is_some() {
            return Err(CloneVolumeError::AlreadyExists {
                name: name.to_string(),
            });
        }
        Ok(base.clone())
    }
}

impl StoragePool for FakeStoragePool {
    fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self, request: CreateVolume<'_>) -> Result<VolumeInfo, CreateVolumeError> {
        validate_volume_name(request.name)?;
        if request.size_bytes == 0 {
            return Err(CreateVolumeError::ZeroSize);
        }
        let mut state = self.world.lock();
        if self.volume(&state, request.name).is_some() {
            return Err(CreateVolumeError::AlreadyExists {
                name: request.name.to_string(),
            });
        }
        let volume = FakeVolume {
            format: request.format,
            size_bytes: request.size_bytes,
            backing_volume: None,
        };
        Ok(self.insert(&mut state, request.name, volume))
    }

    async fn clone_linked(&self, base: &str, name: &str) -> Result<VolumeInfo, CloneVolumeError> {
        let mut state = self.world.lock();
        let source = self.copy_checks(&state, base, name)?;
        let volume = FakeVolume {
            format: VolumeFormat::Qcow2,
            size_bytes: source.size_bytes,
            backing_volume: Some(base.to_string()),
        };
        Ok(self.insert(&mut state, name, volume))
    }

    async fn copy_full(
        &self,
        source: &str,
        name: &str,
        format: VolumeFormat,
    ) -> Result<VolumeInfo, CloneVolumeError> {
        let mut state = self.world.lock();
        let original = self.copy_checks(&state, source, name)?;
        let volume = FakeVolume {
            format,
            size_bytes: original.size_bytes,
            backing_volume: None,
        };
        Ok(self.insert(&mut state, name, volume))
    }

    async fn resize(&self, name: &str, size_bytes: u64) -> Result<VolumeInfo, ResizeVolumeError> {
        let mut state = self.world.lock();
        let current = self
            .volume(&state, name)
            .ok_or_else(|| ResizeVolumeError::NotFound {
                name: name.to_string(),
            })?
            .size_bytes;
        if size_bytes < current {
            return Err(ResizeVolumeError::Shrink {
                name: name.to_string(),
                current_bytes: current,
                requested_bytes: size_bytes,
            });
        }
        if state.volume_in_use(&self.name, name) {
            return Err(ResizeVolumeError::InUse {
                name: name.to_string(),
            });
        }
        let pool = state.pools.entry(self.name.clone()).or_default();
        let volume = pool
            .get_mut(name)
            .ok_or_else(|| ResizeVolumeError::NotFound {
                name: name.to_string(),
            })?;
        volume.size_bytes = size_bytes;
        Ok(Self::info(name, volume))
    }

    async fn delete(&self, name: &str) -> Result<(), DeleteVolumeError> {
        let mut state = self.world.lock();
        if self.volume(&state, name).is_none() {
            return Err(DeleteVolumeError::NotFound {
                name: name.to_string(),
            });
        }
        if state.volume_in_use(&self.name, name) {
            return Err(DeleteVolumeError::InUse {
                name: name.to_string(),
            });
        }
        let pool = state.pools.entry(self.name.clone()).or_default();
        let clones: Vec<String> = pool
            .iter()
            .filter(|(_, volume)| volume.backing_volume.as_deref() == Some(name))
            .map(|(clone, _)| clone.clone())
            .collect();
        if !clones.is_empty() {
            return Err(DeleteVolumeError::HasClones {
                name: name.to_string(),
                clones,
            });
        }
        pool.remove(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, ListVolumesError> {
        let state = self.world.lock();
        Ok(state
            .pools
            .get(&self.name)
            .map(|pool| {
                pool.iter()
                    .map(|(name, volume)| Self::info(name, volume))
                    .collect()
            })
            .unwrap_or_default())
    }
}
